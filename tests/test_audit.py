"""Audit statistics: patient bootstrap, McNemar, Holm, per-source accuracy, AUROC, verdict,
and the audit jobs (tables, verdict, source probe) on small files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hideseek.audit import comparisons
from hideseek.audit.comparisons import (per_class_auroc, per_source_accuracy, representation_comparison,
                                        write_audit_tables)
from hideseek.audit.source_probe import probe_rows, probe_skip_reason, representation_stores, write_source_probe
from hideseek.audit.verdict import (VERDICT_COLUMNS, build_verdict, chance_level, probe_evidence, summary_markdown,
                                    verdict_row, write_verdict)
from hideseek.stats import bootstrap_weights, holm, mcnemar_exact, mean_ci, weighted_auroc


def test_bootstrap_weights_resample_patients_within_class():
    patients = ["a", "a", "b", "c", "d", "d", "d", "e"]
    labels = ["x", "x", "x", "x", "y", "y", "y", "y"]
    w = bootstrap_weights(patients, labels, n_boot=200, seed=1)
    assert w.shape == (200, 8)
    # images of one patient always share a weight
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 4] == w[:, 5]).all() and (w[:, 5] == w[:, 6]).all()
    # class x has 3 patients, class y has 2: patient draws per class are preserved
    draws_x = w[:, 0] + w[:, 2] + w[:, 3]
    draws_y = w[:, 4] + w[:, 7]
    assert (draws_x == 3).all() and (draws_y == 2).all()
    again = bootstrap_weights(patients, labels, n_boot=200, seed=1)
    assert (w == again).all()


def test_bootstrap_ci_covers_known_binomial_at_about_nominal_rate():
    """95 % CIs of a binomial proportion (one image per patient) cover p about 95 % of the time."""
    p, n, trials = 0.7, 150, 300
    rng = np.random.default_rng(123)
    patients = np.arange(n)
    labels = np.zeros(n, dtype=int)
    weights = bootstrap_weights(patients, labels, n_boot=500, seed=7)
    covered = 0
    for _ in range(trials):
        x = (rng.random(n) < p).astype(float)
        _, lo, hi = mean_ci(x, weights)
        covered += lo <= p <= hi
    rate = covered / trials
    # binomial SE at 0.95 with 300 trials is 0.0126; percentile bootstrap runs a bit narrow
    assert 0.90 <= rate <= 0.99, rate


def test_mcnemar_exact_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.random(120) < rng.uniform(0.4, 0.9)
        b = rng.random(120) < rng.uniform(0.4, 0.9)
        table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
        ref = mcnemar(table, exact=True).pvalue
        assert mcnemar_exact(a, b) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == 1.0


def test_holm_matches_statsmodels_and_skips_nan():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    out = holm(p)
    ref = multipletests(p[[0, 2, 3, 4]], method="holm")[1]
    assert np.isnan(out[1])
    assert np.allclose(out[[0, 2, 3, 4]], ref)
    # by hand: sorted 0.01*4, 0.03*3, 0.04*2, 0.2*1 with monotonicity
    assert np.allclose(out[[0, 3, 2, 4]], [0.04, 0.09, 0.09, 0.2])


def _predictions(n_per_class=20, seed=0, acc=0.8):
    rng = np.random.default_rng(seed)
    rows = []
    classes = ["normal", "pneumonia", "COVID-19"]
    for ci, cls in enumerate(classes):
        for i in range(n_per_class):
            correct = rng.random() < acc
            pred = cls if correct else classes[(ci + 1) % 3]
            probs = np.full(3, 0.1)
            probs[classes.index(pred)] = 0.8
            rows.append(dict(image_id=f"{cls}{i:03d}", patient_id=f"{cls}{i // 2:03d}", true=cls, predicted=pred,
                             source="rsna" if cls != "COVID-19" else ("cohen" if i % 2 else "sirm"),
                             p_normal=probs[0], p_pneumonia=probs[1], p_covid=probs[2], seed=0))
    return pd.DataFrame(rows)


def test_per_source_accuracy_and_auroc():
    frame = _predictions()
    table = per_source_accuracy(frame, n_boot=200)
    assert set(table["source"]) == {"rsna", "cohen", "sirm"}
    covid = table[table["true"] == "COVID-19"]
    assert covid["n_images"].sum() == 20
    for row in table.itertuples():
        sub = frame[(frame["true"] == row.true) & (frame["source"] == row.source)]
        assert row.accuracy == pytest.approx((sub["true"] == sub["predicted"]).mean())
        assert row.ci_low <= row.accuracy <= row.ci_high

    from sklearn.metrics import roc_auc_score

    auc = per_class_auroc(frame, n_boot=100)
    assert list(auc["class"]) == ["normal", "pneumonia", "COVID-19"]
    ref = roc_auc_score((frame["true"] == "COVID-19").astype(int), frame["p_covid"])
    assert auc.iloc[2]["auroc"] == pytest.approx(ref)
    assert (auc["ci_low"] <= auc["auroc"]).all() and (auc["auroc"] <= auc["ci_high"]).all()


def test_test_time_hiding_and_verdict():
    frames = []
    for rep, acc in [("data", 0.95), ("lungs_removed", 0.9), ("lungs_boxed_out", 0.85)]:
        f = _predictions(n_per_class=40, seed=1, acc=acc)
        f["train_rep"], f["test_rep"] = "data", rep
        frames.append(f)
        g = f.copy()
        g["train_rep"] = rep
        frames.append(g)
    pred = pd.concat(frames, ignore_index=True).drop_duplicates(["train_rep", "test_rep", "image_id"])
    table = comparisons.test_time_hiding(pred, ["data", "lungs_removed", "lungs_boxed_out"], n_boot=200)
    assert list(table["test_rep"]) == ["data", "lungs_removed", "lungs_boxed_out"]
    assert np.isnan(table.iloc[0]["mcnemar_p"])
    assert (table["ci_low"] <= table["accuracy"]).all()
    own = representation_comparison(pred, ["data", "lungs_removed", "lungs_boxed_out"], n_boot=200)
    chance = chance_level(pred[pred["test_rep"] == "data"]["true"])
    assert chance == pytest.approx(1 / 3)
    row = verdict_row("alexnet", own, chance, margin=0.1, learned_margin=0.2)
    assert row["learned"] and row["non_lung_signal"]
    assert "outside the lungs" in row["paragraph"]
    # a model at chance on boxed_out is not flagged
    chance_frame = _predictions(n_per_class=40, seed=2, acc=1 / 3)
    chance_frame["train_rep"] = chance_frame["test_rep"] = "lungs_boxed_out"
    pred2 = pd.concat([pred[pred["train_rep"] != "lungs_boxed_out"], chance_frame], ignore_index=True)
    own2 = representation_comparison(pred2, ["data", "lungs_removed", "lungs_boxed_out"], n_boot=200)
    row2 = verdict_row("alexnet", own2, chance, margin=0.1, learned_margin=0.2)
    assert row2["learned"] and not row2["non_lung_signal"]
    row3 = verdict_row("alexnet", own2, chance, margin=0.1, learned_margin=0.2,
                             probe=dict(balanced_accuracy=0.93, balanced_chance=1 / 3))
    assert row3["source_probe_balanced_accuracy"] == 0.93
    assert "balanced accuracy 0.930 (chance 0.333)" in row3["paragraph"]
    md = summary_markdown(pd.DataFrame([row, row2, row3])[VERDICT_COLUMNS], "test data")
    assert "non_lung_signal" in md and "| alexnet" in md and "0.930" in md


def test_source_probe_rows_and_skip_reason():
    rows = []
    for i in range(40):
        cls = ["normal", "COVID-19"][i % 2]
        src = "rsna" if cls == "normal" else ("cohen" if i % 4 == 1 else "sirm")
        rows.append(dict(true_class=cls, source=src, predicted_source=src, patient_id=f"p{i}"))
    frame = pd.DataFrame(rows)
    out = pd.DataFrame(probe_rows(frame, "data", n_boot=100))
    normal = out[out["true_class"] == "normal"].iloc[0]
    assert "single source" in normal["note"]
    covid = out[out["true_class"] == "COVID-19"].iloc[0]
    assert covid["accuracy"] == 1.0 and covid["baseline"] == 0.5 and covid["above_baseline"]
    assert covid["balanced_chance"] == 0.5
    # a probe that only knows the class predicts the class's majority source: never above baseline
    frame["predicted_source"] = frame["true_class"].map({"normal": "rsna", "COVID-19": "sirm"})
    covid = pd.DataFrame(probe_rows(frame, "data", n_boot=100)).query("true_class == 'COVID-19'").iloc[0]
    assert covid["accuracy"] == covid["baseline"] and not covid["above_baseline"]

    index = pd.DataFrame(dict(label=["normal", "COVID-19"], source=["rsna", "cohen"], partition="test"))
    assert "single source" in probe_skip_reason(index)
    assert "no source" in probe_skip_reason(index.drop(columns="source"))
    index2 = pd.DataFrame(dict(label=["COVID-19", "COVID-19"], source=["sirm", "cohen"], partition="test"))
    assert probe_skip_reason(index2) is None


def test_weighted_auroc_matches_sklearn_with_sample_weights():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.random(80) < 0.4
    score = np.round(rng.random(80) + 0.3 * y, 2)  # rounded: ties
    weights = rng.integers(0, 3, size=(5, 80))
    ours = weighted_auroc(y, score, weights)
    for w, value in zip(weights, ours):
        assert value == pytest.approx(roc_auc_score(y, score, sample_weight=w))
    assert weighted_auroc(y, score, np.ones(80))[0] == pytest.approx(roc_auc_score(y, score))


REPS = ["data", "lungs_removed", "lungs_boxed_out"]


def _rep_predictions(accuracies: dict, seeds=(0,), n_per_class=40) -> pd.DataFrame:
    """Own-test-set predictions per representation (train_rep == test_rep) for each seed, plus
    the data model on every representation's test set."""
    frames = []
    for seed in seeds:
        for k, (rep, acc) in enumerate(accuracies.items()):
            f = _predictions(n_per_class=n_per_class, seed=10 * seed + k, acc=acc).assign(seed=seed)
            frames.append(f.assign(train_rep=rep, test_rep=rep))
            if rep != "data":
                frames.append(f.assign(train_rep="data", test_rep=rep))
    return pd.concat(frames, ignore_index=True)


def test_write_audit_tables_from_prediction_files(tmp_path):
    pred = _rep_predictions({"data": 0.95, "lungs_removed": 0.8, "lungs_boxed_out": 0.6}, seeds=(0, 1))
    files = []
    for (rep, seed), sub in pred.groupby(["train_rep", "seed"]):
        files.append(tmp_path / f"{rep}_seed{seed}.csv")
        sub.to_csv(files[-1], index=False)
    out = {name: tmp_path / f"{name}.csv" for name in ("hiding", "comparison", "per_source", "auroc")}
    tables = write_audit_tables(files, REPS, *out.values(), n_boot=100, boot_seed=3)
    for name, path in out.items():
        pd.testing.assert_frame_equal(pd.read_csv(path), tables[name], check_dtype=False)
    kw = dict(n_boot=100, seed=3)
    assert list(tables["hiding"]["test_rep"]) == REPS and (tables["hiding"]["train_rep"] == "data").all()
    pd.testing.assert_frame_equal(tables["comparison"], representation_comparison(pred, REPS, **kw))
    # per-source and AUROC: each model on its own test set, first seed only
    assert list(dict.fromkeys(tables["per_source"]["representation"])) == REPS
    own = pred[(pred["train_rep"] == "lungs_removed") & (pred["test_rep"] == "lungs_removed") & (pred["seed"] == 0)]
    removed = tables["per_source"].query("representation == 'lungs_removed'").drop(columns="representation")
    pd.testing.assert_frame_equal(removed.reset_index(drop=True), per_source_accuracy(own, **kw))
    auroc = tables["auroc"].query("representation == 'lungs_removed'")
    assert auroc["auroc"].tolist() == pytest.approx(per_class_auroc(own, **kw)["auroc"].tolist())


def _write_probe(path, balanced=0.9, rep="data", cls="all"):
    pd.DataFrame([dict(arch="alexnet", representation="lungs_removed", true_class="all", balanced_accuracy=0.2,
                       balanced_chance=0.5),
                  dict(arch="alexnet", representation=rep, true_class="COVID-19", balanced_accuracy=0.1,
                       balanced_chance=0.5),
                  dict(arch="alexnet", representation=rep, true_class=cls, balanced_accuracy=balanced,
                       balanced_chance=0.5)]).to_csv(path, index=False)
    return path


def test_probe_evidence_reads_data_over_all_classes(tmp_path):
    probe = _write_probe(tmp_path / "probe.csv")
    expected = dict(balanced_accuracy=0.9, balanced_chance=0.5)
    assert probe_evidence(probe) == expected
    assert probe_evidence(str(probe)) == expected and probe_evidence([str(probe)]) == expected
    # probe disabled (no input), no data/all row, no value, or a skipped probe: no evidence
    assert probe_evidence(None) == {} and probe_evidence([]) == {}
    assert probe_evidence(_write_probe(tmp_path / "other.csv", cls="normal")) == {}
    assert probe_evidence(_write_probe(tmp_path / "nan.csv", balanced=np.nan)) == {}
    skipped = tmp_path / "skipped.csv"
    pd.DataFrame([dict(arch="alexnet", representation="data", true_class="all", note="skipped: x")]).to_csv(
        skipped, index=False)
    assert probe_evidence(skipped) == {}


def _attention_csv(path, ratio):
    rows = [dict(arch="alexnet", representation=rep, true_class=cls, mask_ratio=ratio if (rep, cls) == ("data", "all")
                 else 9.0, mask_ratio_ci_low=ratio - 0.1, mask_ratio_ci_high=ratio + 0.1, mask_energy_share=0.6)
            for rep in ("data", "lungs_removed") for cls in ("normal", "all")]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_build_and_write_verdict(tmp_path):
    index = tmp_path / "images.csv"
    labels = ["normal"] * 6 + ["pneumonia"] * 3 + ["COVID-19"] * 3
    pd.DataFrame(dict(label=labels + ["COVID-19"] * 20, partition=["test"] * 12 + ["train"] * 20)).to_csv(
        index, index=False)
    shortcut = representation_comparison(_rep_predictions({"data": 0.95, "lungs_removed": 0.9,
                                                           "lungs_boxed_out": 0.9}), REPS, n_boot=200)
    honest = representation_comparison(_rep_predictions({"data": 0.95, "lungs_removed": 0.5,
                                                         "lungs_boxed_out": 0.5}), REPS, n_boot=200)
    comparisons = [tmp_path / "c_alexnet.csv", tmp_path / "c_vgg11.csv"]
    shortcut.to_csv(comparisons[0], index=False)
    honest.to_csv(comparisons[1], index=False)
    attention = [_attention_csv(tmp_path / "a_alexnet.csv", 1.5), _attention_csv(tmp_path / "a_vgg11.csv", 0.8)]
    probe = _write_probe(tmp_path / "probe.csv", balanced=0.93)
    verdict = build_verdict(index, comparisons, attention, [probe], ["alexnet", "vgg11"], margin=0.1,
                            learned_margin=0.2)
    assert list(verdict.columns) == VERDICT_COLUMNS and list(verdict["arch"]) == ["alexnet", "vgg11"]
    assert (verdict["chance"] == 0.5).all()  # the test images' majority class, not train's
    assert verdict["learned"].all() and verdict["non_lung_signal"].tolist() == [True, False]
    assert verdict["lung_attention_data"].tolist() == [1.5, 0.8]
    assert verdict["lung_attention_data_ci_low"].tolist() == pytest.approx([1.4, 0.7])
    assert (verdict["source_probe_balanced_accuracy"] == 0.93).all()
    assert verdict.loc[0, "acc_data"] == pytest.approx(shortcut.set_index("train_rep").loc["data", "accuracy"])

    without = build_verdict(index, comparisons, attention, [], ["alexnet", "vgg11"], 0.1, 0.2)
    assert without["source_probe_balanced_accuracy"].isna().all()
    assert "source probe" not in without.loc[0, "paragraph"] and "source probe" in verdict.loc[0, "paragraph"]
    write_verdict(verdict, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data", ["a note"])
    assert pd.read_csv(tmp_path / "verdict.csv")["non_lung_signal"].tolist() == [True, False]
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# Audit summary") and "Data: test data." in md and "## vgg11" in md and "- a note" in md


def test_write_source_probe_skips_without_sources(tmp_path):
    index = pd.DataFrame(dict(image_id=["a", "b"], label=["normal", "COVID-19"], partition="test"))
    index.to_csv(tmp_path / "images.csv", index=False)
    files = {f"{kind}_{rep}": str(tmp_path / ("pixels.npy" if kind == "pixels" else "images.csv"))
             for kind in ("pixels", "index") for rep in ("data", "lungs_removed")}
    assert representation_stores(files, ["data"]) == {"data": (files["pixels_data"], files["index_data"])}
    out = tmp_path / "source_probe.csv"
    table = write_source_probe("alexnet", {}, files, ["data", "lungs_removed"], out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["arch", "representation", "true_class", "note"]
    assert list(written["representation"]) == ["data", "lungs_removed"] and (written["arch"] == "alexnet").all()
    assert (written["note"] == "skipped: the data carry no source column").all()
    assert len(table) == 2 and probe_evidence(out) == {}
