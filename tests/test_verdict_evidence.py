"""The verdict's evidence beyond the accuracies: the lung masks by class (flag rate, area), the
sources the boxed-out model is most accurate on, and the CAM randomisation test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact, kruskal

from hideseek.audit.evidence import MIN_SOURCE_IMAGES, attention_evidence, source_evidence
from hideseek.audit.mask_evidence import mask_evidence, mask_section
from hideseek.audit.verdict import VERDICT_COLUMNS, build_verdict, summary_markdown, verdict_row, write_verdict
from hideseek.io import read_table
from hideseek.segmentation.masks import (flag_rate_difference, lung_fraction_difference, masks_by_class,
                                         summarize_masks)
from hideseek.segmentation.masks import summary_markdown as mask_summary_markdown

CLASSES = ("normal", "pneumonia", "COVID-19")


def _qc(flagged: dict, fractions: dict | None = None, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """A mask QC table: `n` images per class, the first flagged[cls] of them flagged (and replaced
    by the mean mask), lung fraction ~ N(fractions[cls], 0.02)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in CLASSES:
        centre = (fractions or {}).get(cls, 0.3)
        for i in range(n):
            flag = "too_small" if i < flagged.get(cls, 0) else ""
            rows.append(dict(image_id=f"{cls}{i}", patient_id=f"{cls}{i // 2}", label=cls, source="site",
                             partition="test" if i % 4 == 0 else "train", lung_fraction=rng.normal(centre, 0.02),
                             flag=flag, action="replaced_by_mean_mask" if flag else "kept"))
    return pd.DataFrame(rows)


def _comparison(data=0.9, boxed=0.7, n_test=120) -> pd.DataFrame:
    return pd.DataFrame([dict(train_rep=rep, n_test=n_test, n_patients=100, accuracy=acc, ci_low=acc - 0.05,
                              ci_high=acc + 0.05)
                         for rep, acc in (("data", data), ("lungs_removed", 0.5), ("lungs_boxed_out", boxed))])


def _summary(rows) -> str:
    return summary_markdown(pd.DataFrame(rows)[VERDICT_COLUMNS], "test data")


# ----------------------------------------------------------------------------- masks by class

def test_class_dependent_flag_rate_warns_before_the_models():
    qc = _qc({"pneumonia": 8})  # 8 of 40 pneumonia masks flagged, none of the others
    masks = mask_evidence(qc, None, 0.05, n_boot=200)
    assert masks["masks_differ_by_class"] and masks["mask_flag_p"] < 0.01
    assert masks["mask_n_flagged_pneumonia"] == 8 and masks["mask_flag_rate_pneumonia"] == pytest.approx(0.2)
    assert masks["mask_flag_rate_normal"] == 0 and masks["mask_flag_action"] == "replaced_by_mean_mask"
    assert masks["mask_flag_test"] == "Fisher's exact test, Monte Carlo p over 9999 tables"
    assert flag_rate_difference(qc) == flag_rate_difference(qc)  # seeded: the same p on every run
    md = _summary([verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, masks=masks)])
    warning = md.index("**Warning: the lung masks differ by class.**")
    assert md.index("## The lung masks") < warning < md.index("## alexnet")
    assert "The share of flagged masks differs by class" in md and "which images carry its shape is a class cue" in md
    assert "`audit.mask_difference_alpha` = 0.05" in md
    row = verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, masks=masks)
    assert row["verdict"] == "non_lung_signal" and "The lung masks differ by class" in row["paragraph"]


def test_two_classes_use_fishers_exact_test():
    qc = _qc({"pneumonia": 6})
    qc = qc[qc["label"] != "COVID-19"]
    name, p = flag_rate_difference(qc)
    assert name == "Fisher's exact test"
    assert p == pytest.approx(fisher_exact([[40, 0], [34, 6]]).pvalue)


def test_equal_flag_rate_and_area_give_no_warning():
    qc = _qc({cls: 2 for cls in CLASSES})
    masks = mask_evidence(qc, None, 0.05, n_boot=200)
    assert masks["mask_flag_p"] > 0.5 and masks["mask_area_p"] > 0.05 and not masks["masks_differ_by_class"]
    md = _summary([verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, masks=masks)])
    assert "Warning: the lung masks" not in md and "At p < 0.05 neither test finds the masks differing" in md
    none_flagged = mask_evidence(_qc({}), None, 0.05, n_boot=50)
    assert np.isnan(none_flagged["mask_flag_p"]) and none_flagged["mask_flag_test"] == "not tested (no mask flagged)"
    assert none_flagged["mask_flag_action"] == "none" and not none_flagged["masks_differ_by_class"]


def test_area_difference_is_found_by_kruskal_wallis_at_the_configured_alpha():
    qc = _qc({}, fractions={"pneumonia": 0.27})
    h, p = lung_fraction_difference(qc)
    expected = kruskal(*(qc.loc[qc["label"] == cls, "lung_fraction"] for cls in CLASSES))
    assert (h, p) == pytest.approx((expected.statistic, expected.pvalue))
    masks = mask_evidence(qc, None, 0.05, n_boot=500)
    assert masks["masks_differ_by_class"] and masks["mask_area_p"] == pytest.approx(p)
    # the bootstrap CIs of the class means separate pneumonia from normal
    assert masks["lung_fraction_pneumonia_ci_high"] < masks["lung_fraction_normal_ci_low"]
    md = "\n".join(mask_section(pd.Series(masks)))
    assert f"The lung fraction differs by class (Kruskal–Wallis H = {h:.2f}, p = {p:.3g} < 0.05)." in md
    # the threshold is the config's: the same p, judged at an alpha below it, is no difference
    strict = mask_evidence(qc, None, p / 2, n_boot=50)
    assert not strict["masks_differ_by_class"] and f"`audit.mask_difference_alpha` = {p / 2:g}" in "\n".join(
        mask_section(pd.Series(strict)))


def test_class_means_and_their_patient_bootstrap_ci():
    qc = _qc({"normal": 4}, fractions={"COVID-19": 0.35})
    table = masks_by_class(qc, n_boot=300).set_index("label")
    assert list(table.index) == list(CLASSES)
    means = qc.groupby("label")["lung_fraction"].mean()
    assert table["lung_fraction_mean"].to_dict() == pytest.approx(means.to_dict())
    assert ((table["lung_fraction_ci_low"] < table["lung_fraction_mean"])
            & (table["lung_fraction_mean"] < table["lung_fraction_ci_high"])).all()
    assert table.loc["normal", "n_flagged"] == 4 and table.loc["normal", "flag_rate"] == pytest.approx(0.1)


def test_mask_summary_states_its_tests_without_an_unstated_cut_off():
    qc = _qc({"pneumonia": 8}, fractions={"pneumonia": 0.29})
    cfg = dict(masks="predicted", qc=dict(on_flagged="mean_mask"))
    md = mask_summary_markdown(qc, summarize_masks(qc), cfg)
    h, p = lung_fraction_difference(qc)
    assert f"Kruskal–Wallis H = {h:.2f}, p = {p:.3g}" in md and "does not differ detectably" not in md
    assert "flag rate, Fisher's exact test, Monte Carlo p over 9999 tables: p = " in md
    assert "`audit.mask_difference_alpha`" in md
    assert "| pneumonia | 40 |" in md and "| 8 (20.0%) |" in md


# ----------------------------------------------------------------------------- per-source evidence

def _per_source(cells) -> pd.DataFrame:
    return pd.DataFrame([dict(true=true, source=source, n_images=n, n_patients=n, accuracy=acc, ci_low=acc - 0.05,
                              ci_high=min(acc + 0.05, 1.0), representation=rep) for rep, true, source, n, acc in cells])


def test_the_boxed_out_models_best_sources_are_named_with_enough_images():
    table = _per_source([("lungs_boxed_out", "COVID-19", "sirm", 40, 0.95),
                         ("lungs_boxed_out", "COVID-19", "fig1", MIN_SOURCE_IMAGES - 1, 1.0),  # too few to name
                         ("lungs_boxed_out", "normal", "rsna", 100, 0.6),
                         ("lungs_boxed_out", "pneumonia", "rsna", 100, 0.5),
                         ("lungs_boxed_out", "COVID-19", "cohen", 30, 0.4),
                         ("data", "COVID-19", "actmed", 50, 0.99)])  # another representation's model
    cells = source_evidence(table)
    assert [(c["source"], c["true"]) for c in cells] == [("sirm", "COVID-19"), ("rsna", "normal"),
                                                         ("rsna", "pneumonia")]
    row = verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, sources=cells)
    assert row["boxed_out_best_source"] == "sirm (COVID-19)" and row["boxed_out_best_source_accuracy"] == 0.95
    assert "most accurate on sirm (COVID-19) 0.950 [0.900, 1.000], 40 images; rsna (normal)" in row["paragraph"]
    assert "fig1" not in row["paragraph"] and f"at least {MIN_SOURCE_IMAGES} test images" in row["paragraph"]
    few = verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, sources=source_evidence(table, min_images=500))
    assert few["boxed_out_top_sources"] == "" and "No class × source cell" in few["paragraph"]
    absent = verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2)
    assert "most accurate on" not in absent["paragraph"] and "No class × source" not in absent["paragraph"]


# ----------------------------------------------------------------------------- CAM randomisation test

def _attention(depends=None, rho=0.1) -> pd.DataFrame:
    """A lung attention table; `depends` None: an older table without the randomisation columns."""
    rows = [dict(representation=rep, true_class=cls, mask_ratio=1.4, mask_ratio_ci_low=1.2, mask_ratio_ci_high=1.6,
                 mask_energy_share=0.5) for rep in ("data", "lungs_removed") for cls in ("normal", "all")]
    table = pd.DataFrame(rows)
    if depends is not None:
        on_row = (table["representation"] == "data") & (table["true_class"] == "all")
        table.loc[on_row, "randomisation_spearman"] = rho
        table.loc[on_row, "randomisation_spearman_ci_low"] = rho - 0.05
        table.loc[on_row, "randomisation_spearman_ci_high"] = rho + 0.05
        table["cam_depends_on_weights"] = pd.Series([None] * len(table), dtype=object)
        table.loc[on_row, "cam_depends_on_weights"] = depends
    return table


def test_attention_is_void_when_the_cam_does_not_depend_on_the_weights(tmp_path):
    _attention(depends=False, rho=0.97).to_csv(tmp_path / "a.csv", index=False)
    evidence = attention_evidence(read_table(tmp_path / "a.csv"))  # a CSV round trip: the bool column has gaps
    assert evidence["depends_on_weights"] is False and evidence["randomisation_spearman"] == pytest.approx(0.97)
    void = verdict_row("alexnet", _comparison(), 1 / 3, 0.1, 0.2, attention=evidence)
    assert "lung attention evidence is void" in void["paragraph"] and "Adebayo et al. 2018" in void["paragraph"]
    assert "0.97 [0.92, 1.02]" in void["paragraph"] and "× the mask's share" not in void["paragraph"]
    passed = verdict_row("vgg11", _comparison(), 1 / 3, 0.1, 0.2, attention=attention_evidence(_attention(True)))
    assert "1.40× the mask's share" in passed["paragraph"] and "depends on the weights" in passed["paragraph"]
    older = verdict_row("vgg11", _comparison(), 1 / 3, 0.1, 0.2, attention=attention_evidence(_attention()))
    assert "1.40× the mask's share" in older["paragraph"] and "rank correlation" not in older["paragraph"]
    assert np.isnan(older["cam_depends_on_weights"])
    md = _summary([void, passed])
    assert "| void " in next(line for line in md.splitlines() if line.startswith("| alexnet "))
    assert "| 1.40 " in next(line for line in md.splitlines() if line.startswith("| vgg11 "))


# ----------------------------------------------------------------------------- the verdict job's files

def test_build_verdict_reads_masks_and_per_source_tables(tmp_path):
    qc = _qc({"pneumonia": 8})
    index = qc[["image_id", "patient_id", "label", "partition"]]
    index.to_csv(tmp_path / "images.csv", index=False)
    qc.drop(columns="patient_id").to_csv(tmp_path / "mask_qc.csv", index=False)  # as segment_images writes it
    _comparison().to_csv(tmp_path / "c.csv", index=False)
    _attention(False).to_csv(tmp_path / "a.csv", index=False)
    _per_source([("lungs_boxed_out", "COVID-19", "sirm", 40, 0.95)]).to_csv(tmp_path / "s.csv", index=False)
    verdict = build_verdict(tmp_path / "images.csv", [tmp_path / "c.csv"], [tmp_path / "a.csv"], None, ["alexnet"],
                            0.1, 0.2, per_source_csvs=[tmp_path / "s.csv"], mask_qc_csv=tmp_path / "mask_qc.csv",
                            mask_difference_alpha=0.05, n_boot=100)
    row = verdict.iloc[0]
    assert row["masks_differ_by_class"] and row["boxed_out_best_source"] == "sirm (COVID-19)"
    assert pd.notna(row["cam_depends_on_weights"]) and not row["cam_depends_on_weights"]
    # the bootstrap resamples the index's patients (the QC table has none)
    by_patient = masks_by_class(qc, n_boot=100).set_index("label")
    assert row["lung_fraction_normal_ci_low"] == pytest.approx(by_patient.loc["normal", "lung_fraction_ci_low"])
    write_verdict(verdict, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data")
    written = read_table(tmp_path / "verdict.csv")
    assert list(written.columns) == VERDICT_COLUMNS and bool(written.loc[0, "masks_differ_by_class"])
    md = (tmp_path / "summary.md").read_text()
    assert md.index("## The data") < md.index("**Warning: the lung masks differ by class.**") < md.index("## alexnet")
    without = build_verdict(tmp_path / "images.csv", [tmp_path / "c.csv"], [tmp_path / "a.csv"], None, ["alexnet"],
                            0.1, 0.2)
    assert not without.loc[0, "masks_differ_by_class"] and np.isnan(without.loc[0, "mask_flag_p"])
    assert "No mask QC table" in summary_markdown(without, "test data")
