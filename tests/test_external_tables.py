"""External tables on constructed predictions: a shortcut model drops on the reversed site mix, a
lung-reading model does not; the gap's unpaired CI; the verdict's generalisation-gap hook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hideseek.audit.verdict import VERDICT_COLUMNS, build_verdict, write_verdict
from hideseek.external.gap import add_generalisation_gap, gap_columns
from hideseek.external.tables import (GAP_COLUMNS, external_table, generalisation_rows, write_external_table,
                                      write_generalisation_table)
from hideseek.io import read_table

CLASSES = ("normal", "pneumonia", "COVID-19")
SITES = ("hospital_a", "hospital_b", "hospital_c")


def _test_set(n_per_class: int, reversed_sites: bool, seed: int, prefix: str) -> pd.DataFrame:
    """Images (a third of the patients with two) with the phantom's site rule: class i at site i
    (or i + 1 when reversed) with probability 0.9."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, label in enumerate(CLASSES):
        for k in range(n_per_class):
            site = (i + reversed_sites) % 3 if rng.random() < 0.9 else int(rng.integers(0, 3))
            for shot in range(1 + (k % 3 == 0)):
                rows.append(dict(image_id=f"{prefix}{i}_{k}_{shot}.png", patient_id=f"{prefix}{i}_{k}", true=label,
                                 source=SITES[site]))
    return pd.DataFrame(rows)


def _predict(images: pd.DataFrame, rep: str, seed: int) -> pd.DataFrame:
    """`data`: a shortcut model (the class of the site); `lungs_isolated`: reads the lungs (right
    with probability 0.85, whatever the site)."""
    rng = np.random.default_rng(seed)
    if rep == "data":
        predicted = [CLASSES[SITES.index(s)] for s in images["source"]]
    else:
        wrong = [CLASSES[(CLASSES.index(t) + 1 + int(rng.integers(0, 2))) % 3] for t in images["true"]]
        predicted = np.where(rng.random(len(images)) < 0.85, images["true"], wrong)
    probs = np.full((len(images), 3), 0.1)
    probs[np.arange(len(images)), [CLASSES.index(p) for p in predicted]] = 0.8
    probs += rng.uniform(0, 0.05, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    return images.assign(arch="alexnet", train_rep=rep, seed=0, test_rep=rep, predicted=predicted,
                         p_normal=probs[:, 0], p_pneumonia=probs[:, 1], p_covid=probs[:, 2])


REPS = ["data", "lungs_isolated"]


@pytest.fixture(scope="module")
def predictions():
    internal = pd.concat([_predict(_test_set(40, False, 0, "i"), rep, 1 + j) for j, rep in enumerate(REPS)])
    external = pd.concat([_predict(_test_set(40, True, 5, "e"), rep, 7 + j) for j, rep in enumerate(REPS)])
    return internal, external


def test_a_shortcut_model_drops_and_a_lung_model_does_not(predictions):
    internal, external = predictions
    table = generalisation_rows(internal, {"reversed": external}, ["alexnet"], REPS, n_boot=500)
    assert list(table.columns) == GAP_COLUMNS and list(table["representation"]) == REPS
    table = table.set_index("representation")
    data, lungs = table.loc["data"], table.loc["lungs_isolated"]
    assert data["internal_accuracy"] > 0.85 and data["external_accuracy"] < 0.15
    assert data["gap"] == pytest.approx(data["external_accuracy"] - data["internal_accuracy"])
    assert data["gap_ci_high"] < 0 and data["drop"]
    assert abs(lungs["gap"]) < 0.1 and lungs["gap_ci_low"] < 0 < lungs["gap_ci_high"] and not lungs["drop"]
    assert data["internal_n_test"] == data["external_n_test"] == 162 and data["internal_n_patients"] == 120


def test_the_gap_ci_is_the_unpaired_difference_of_two_bootstraps(predictions):
    internal, external = predictions
    row = generalisation_rows(internal, {"reversed": external}, ["alexnet"], ["lungs_isolated"], n_boot=2000).iloc[0]
    widths = {k: row[f"{k}_ci_high"] - row[f"{k}_ci_low"] for k in ("internal", "external", "gap")}
    # independent samples: the variances add, so the gap's CI is about sqrt(w_in² + w_ext²) wide
    assert widths["gap"] == pytest.approx(np.hypot(widths["internal"], widths["external"]), rel=0.2)
    assert widths["gap"] > max(widths["internal"], widths["external"])
    # a paired bootstrap would be wrong here: the two sets share no image
    assert not set(internal["image_id"]) & set(external["image_id"])
    with_seed = generalisation_rows(internal, {"reversed": external}, ["alexnet"], ["lungs_isolated"], n_boot=2000,
                                    boot_seed=0).iloc[0]
    assert with_seed["gap_ci_low"] == row["gap_ci_low"]  # seeded


def test_external_table_has_the_metrics_auroc_and_ci(predictions, tmp_path):
    _, external = predictions
    table = external_table(external, REPS, n_boot=300)
    assert list(table["representation"]) == REPS
    data = table.set_index("representation").loc["data"]
    assert data["accuracy"] < 0.15 and data["accuracy_ci_low"] <= data["accuracy"] <= data["accuracy_ci_high"]
    for column in ("sens_normal", "ppv_covid_19", "auroc_normal", "auroc_covid_19_ci_high", "accuracy_diff_vs_data"):
        assert column in table
    lungs = table.set_index("representation").loc["lungs_isolated"]
    assert lungs["auroc_pneumonia"] > 0.8 and lungs["sens_covid_19"] > 0.7
    assert lungs["accuracy_diff_vs_data"] > 0.6  # paired comparison with the data model on the external images
    path = tmp_path / "ext.csv"
    external.to_csv(path, index=False)
    written = write_external_table("reversed", "alexnet", path, tmp_path / "t.csv", tmp_path / "t.md",
                                   "external set 'reversed'", REPS, n_boot=300)
    assert (written["external_set"] == "reversed").all()
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("# External set reversed: alexnet") and "auroc_normal" in md


def _verdict_inputs(tmp_path, internal):
    index = internal.drop_duplicates("image_id").rename(columns={"true": "label"}).assign(partition="test")
    index[["image_id", "patient_id", "label", "partition"]].to_csv(tmp_path / "images.csv", index=False)
    pd.DataFrame([dict(train_rep=rep, n_test=160, n_patients=120, accuracy=acc, ci_low=acc - 0.05, ci_high=acc + 0.05)
                  for rep, acc in (("data", 0.92), ("lungs_removed", 0.9), ("lungs_boxed_out", 0.88))]
                 ).to_csv(tmp_path / "comparison.csv", index=False)
    pd.DataFrame([dict(representation="data", true_class="all", mask_ratio=1.0, mask_ratio_ci_low=0.9,
                       mask_ratio_ci_high=1.1, mask_energy_share=0.3)]).to_csv(tmp_path / "attention.csv", index=False)


def test_the_verdict_adds_the_generalisation_gap(predictions, tmp_path):
    internal, external = predictions
    for name, frame in (("internal", internal), ("external", external)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    table = write_generalisation_table([tmp_path / "internal.csv"], {"reversed": [tmp_path / "external.csv"]},
                                       ["alexnet"], REPS, tmp_path / "gen.csv", tmp_path / "gen.md",
                                       {"reversed": "external set 'reversed'"}, n_boot=300)
    assert "unpaired" in (tmp_path / "gen.md").read_text()
    columns = gap_columns("alexnet", table)
    assert columns["external_drop_reversed"] and columns["external_gap_reversed_ci_high"] < 0
    _verdict_inputs(tmp_path, internal)
    args = (tmp_path / "images.csv", [tmp_path / "comparison.csv"], [tmp_path / "attention.csv"], None, ["alexnet"],
            0.1, 0.2)
    verdict = build_verdict(*args, n_boot=100, generalisation_csv=[tmp_path / "gen.csv"])
    row = verdict.iloc[0]
    assert list(verdict.columns[:len(VERDICT_COLUMNS)]) == VERDICT_COLUMNS
    assert row["external_gap_reversed"] == pytest.approx(columns["external_gap_reversed"])
    assert "On the external set `reversed` the data model's accuracy goes from" in row["paragraph"]
    assert "a drop" in row["paragraph"] and "lungs_isolated model's gap" in row["paragraph"]
    write_verdict(verdict, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data")
    assert "external set `reversed`" in (tmp_path / "summary.md").read_text()
    assert "external_gap_reversed" in read_table(tmp_path / "verdict.csv")
    without = build_verdict(*args, n_boot=100, generalisation_csv=[])  # no external sets: unchanged
    assert list(without.columns) == VERDICT_COLUMNS and "external set" not in without.iloc[0]["paragraph"]


def test_no_drop_sentence_and_missing_data_row():
    table = pd.DataFrame([dict(external_set="s", arch="vgg11", representation="data", internal_accuracy=0.8,
                               external_accuracy=0.78, gap=-0.02, gap_ci_low=-0.1, gap_ci_high=0.06, drop=False)])
    verdict = pd.DataFrame({"arch": ["vgg11", "alexnet"], "paragraph": ["V.", "A."]})
    out = add_generalisation_gap(verdict, table)
    assert "no clear drop" in out.loc[0, "paragraph"] and out.loc[1, "paragraph"] == "A."
    assert np.isnan(out.loc[1, "external_gap_s"])


def _as_imported(frame: pd.DataFrame, name: str = "theirs") -> pd.DataFrame:
    """One model tested on each representation, as hideseek.imported.predict writes it."""
    return frame.assign(arch=name, train_rep="imported")


def test_an_imported_model_gets_its_full_image_gap_and_a_table_per_representation(predictions, tmp_path):
    internal, external = predictions
    mixed_internal = pd.concat([internal, _as_imported(internal)], ignore_index=True)
    mixed_external = pd.concat([external, _as_imported(external)], ignore_index=True)
    table = generalisation_rows(mixed_internal, {"rev": mixed_external}, ["alexnet", "theirs"], REPS, n_boot=200)
    # the imported model: one row, the full images (the hidden ones are outside what it was trained on)
    theirs = table[table["arch"] == "theirs"]
    assert list(theirs["representation"]) == ["data"] and list(theirs["origin"]) == ["imported"]
    assert set(table.loc[table["arch"] == "alexnet", "origin"]) == {"trained_here"}
    ours = table[(table["arch"] == "alexnet") & (table["representation"] == "data")].iloc[0]
    # the same predictions as alexnet's data model, so the same gap (the shortcut model's drop)
    assert theirs.iloc[0]["gap"] == pytest.approx(ours["gap"]) and bool(theirs.iloc[0]["drop"])
    # its external table: one row per test representation, said to be test-time hiding
    path = tmp_path / "theirs.csv"
    mixed_external.to_csv(path, index=False)
    rows = write_external_table("rev", "theirs", path, tmp_path / "t.csv", tmp_path / "t.md", "a test", REPS,
                                n_boot=100)
    assert list(rows["representation"]) == REPS
    assert rows.set_index("representation").loc["lungs_isolated", "accuracy"] == pytest.approx(
        (external[external["test_rep"] == "lungs_isolated"].eval("true == predicted")).mean())
    assert "imported model" in (tmp_path / "t.md").read_text() and "test-time hiding" in (tmp_path / "t.md").read_text()
    # the verdict's imported rows: the gap columns and a sentence about the full images
    from hideseek.imported.verdict import with_imported_rows

    gap_csv = tmp_path / "gen.csv"
    table.to_csv(gap_csv, index=False)
    trained = add_generalisation_gap(pd.DataFrame({"arch": ["alexnet"], "paragraph": ["ours."]}), table)
    imported_row = tmp_path / "row.csv"
    pd.DataFrame({"arch": ["theirs"], "paragraph": ["theirs."], "origin": ["imported"], "imported_format": ["onnx"],
                  "ood_representations": [""], "prediction_mix_lungs_boxed_out": [""], "cam_status": ["ok"]}
                 ).to_csv(imported_row, index=False)
    both = with_imported_rows(trained, [imported_row], [gap_csv]).set_index("arch")
    assert both.loc["theirs", "external_gap_rev"] == pytest.approx(ours["gap"])
    assert "its accuracy on the full images goes from" in both.loc["theirs", "paragraph"]
    assert "the data model's accuracy goes from" in both.loc["alexnet", "paragraph"]
