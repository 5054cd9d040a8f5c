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
from hideseek.audit.verdict import (VERDICT_COLUMNS, build_verdict, chance_level, probe_evidence, shortcut_evidence,
                                    summary_markdown, verdict_row, write_verdict)
from hideseek.data.table1 import source_shortcut
from hideseek.stats import accuracy_power, bootstrap_weights, holm, mcnemar_exact, mean_ci, weighted_auroc


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
    assert [r["verdict"] for r in (row, row2)] == ["non_lung_signal", "no_evidence"]
    md = summary_markdown(pd.DataFrame([row, row2, row3])[VERDICT_COLUMNS], "test data")
    assert "| non_lung_signal" in md and "| no_evidence" in md and "| alexnet" in md and "0.930" in md


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
    assert probe_evidence(skipped) == {"skipped": "x"}


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
    shortcut_csv = _shortcut_csv(tmp_path / "table1_shortcut.csv", accuracy=0.8, chance=0.5)
    verdict = build_verdict(index, comparisons, attention, [probe], ["alexnet", "vgg11"], margin=0.1,
                            learned_margin=0.2, shortcut_csv=shortcut_csv)
    assert list(verdict.columns) == VERDICT_COLUMNS and list(verdict["arch"]) == ["alexnet", "vgg11"]
    assert (verdict["chance"] == 0.5).all()  # the test images' majority class, not train's
    assert verdict["learned"].all() and verdict["non_lung_signal"].tolist() == [True, False]
    assert verdict["verdict"].tolist() == ["non_lung_signal", "no_evidence"]
    assert (verdict["n_test_images"] == 120).all() and (verdict["n_test_patients"] == 60).all()
    assert (verdict["source_only_accuracy"] == 0.8).all() and (verdict["source_only_chance"] == 0.5).all()
    assert verdict["lung_attention_data"].tolist() == [1.5, 0.8]
    assert verdict["lung_attention_data_ci_low"].tolist() == pytest.approx([1.4, 0.7])
    assert (verdict["source_probe_balanced_accuracy"] == 0.93).all()
    assert verdict.loc[0, "acc_data"] == pytest.approx(shortcut.set_index("train_rep").loc["data", "accuracy"])

    without = build_verdict(index, comparisons, attention, [], ["alexnet", "vgg11"], 0.1, 0.2)
    assert without["source_probe_balanced_accuracy"].isna().all() and without["source_only_accuracy"].isna().all()
    assert "source probe" not in without.loc[0, "paragraph"] and "source probe" in verdict.loc[0, "paragraph"]
    write_verdict(verdict, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data", ["a note"])
    written = pd.read_csv(tmp_path / "verdict.csv")
    assert list(written.columns) == VERDICT_COLUMNS and written["non_lung_signal"].tolist() == [True, False]
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# Audit summary\n\nData: test data.\n\n## The data\n")
    assert "## vgg11" in md and "- a note" in md


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
    assert len(table) == 2 and probe_evidence(out) == {"skipped": "the data carry no source column"}
    # the summary names the reason, not "disabled or skipped"
    index = tmp_path / "index.csv"
    pd.DataFrame(dict(label=["normal", "pneumonia", "COVID-19"] * 4, partition="test")).to_csv(index, index=False)
    comparison = tmp_path / "c_alexnet.csv"
    representation_comparison(_rep_predictions({"data": 0.95, "lungs_removed": 0.5, "lungs_boxed_out": 0.5}), REPS,
                              n_boot=50).to_csv(comparison, index=False)
    verdict = build_verdict(index, [comparison], [_attention_csv(tmp_path / "a.csv", 1.0)], [out], ["alexnet"],
                            0.1, 0.2)
    assert verdict.loc[0, "source_probe_skipped"] == "the data carry no source column"
    write_verdict(verdict, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data", [])
    md = (tmp_path / "summary.md").read_text()
    assert "- Source probe (`results/tables/source_probe.csv`): skipped — the data carry no source column" in md
    not_run = build_verdict(index, [comparison], [_attention_csv(tmp_path / "a.csv", 1.0)], [], ["alexnet"], 0.1, 0.2)
    write_verdict(not_run, tmp_path / "verdict.csv", tmp_path / "summary.md", "test data", [])
    assert "- Source probe: not run (`audit.source_probe`" in (tmp_path / "summary.md").read_text()


def _shortcut_csv(path, accuracy, chance):
    """A table1_shortcut.csv with Table 1's metric names."""
    pd.DataFrame([dict(metric="source-only accuracy", value=accuracy, n=120),
                  dict(metric="chance (majority class of test)", value=chance, n=120),
                  dict(metric="unknown-source share", value=0.0, n=300)]).to_csv(path, index=False)
    return path


def test_shortcut_evidence_reads_table1(tmp_path):
    fit = [("rsna", "normal"), ("rsna", "pneumonia"), ("sirm", "COVID-19")] * 4
    test = [("rsna", "normal")] * 4 + [("rsna", "pneumonia")] * 2 + [("sirm", "COVID-19")] * 4
    index = pd.DataFrame([dict(source=s, label=label, partition=part) for part, rows in (("train", fit), ("test", test))
                          for s, label in rows])
    source_shortcut(index).to_csv(tmp_path / "table1_shortcut.csv", index=False)
    # rsna -> normal (the tie is broken by class order), sirm -> COVID-19: 8 of 10 right
    assert shortcut_evidence([tmp_path / "table1_shortcut.csv"]) == dict(accuracy=0.8, chance=0.4)
    assert shortcut_evidence(None) == {} and shortcut_evidence([]) == {}


def test_accuracy_power_by_hand_and_by_the_patient_bootstrap():
    power = accuracy_power(100, chance=1 / 3, margin=0.1, level=0.95)
    t = 1 / 3 + 0.1
    assert power["threshold"] == pytest.approx(t)
    assert power["half_width"] == pytest.approx(1.959964 * np.sqrt(t * (1 - t) / 100), rel=1e-6)
    assert power["half_width"] == pytest.approx(0.097, abs=5e-4)
    a = power["detectable_accuracy"]
    assert a - 1.959964 * np.sqrt(a * (1 - a) / 100) == pytest.approx(t, abs=1e-6)  # its Wald CI low is t
    assert a == pytest.approx(0.531, abs=1e-3)
    # the bootstrap every table uses, one image per patient: at the threshold its CI is about as
    # wide, and an accuracy of `a` has a CI low at about t
    weights = bootstrap_weights(np.arange(100), np.zeros(100), n_boot=4000, seed=0)
    _, lo, hi = mean_ci((np.arange(100) < round(100 * t)).astype(float), weights)
    assert (hi - lo) / 2 == pytest.approx(power["half_width"], abs=0.01)
    _, lo, _ = mean_ci((np.arange(100) < round(100 * a)).astype(float), weights)
    assert lo == pytest.approx(t, abs=0.015)
    assert np.isnan(accuracy_power(0, 1 / 3, 0.1)["half_width"])
    assert np.isnan(accuracy_power(50, np.nan, 0.1)["detectable_accuracy"])


def _comparison(accuracies: dict, n_test=120, n_patients=100, half_width=0.05) -> pd.DataFrame:
    """A representation comparison (only the columns the verdict reads) with given accuracies."""
    return pd.DataFrame([dict(train_rep=rep, n_test=n_test, n_patients=n_patients, accuracy=acc,
                              ci_low=acc - half_width, ci_high=acc + half_width) for rep, acc in accuracies.items()])


CONFOUNDED = dict(shortcut=dict(accuracy=0.9, chance=1 / 3), probe=dict(balanced_accuracy=0.93, balanced_chance=0.5))


def _verdict(arch, data, boxed, **kw):
    accuracies = {"data": data, "lungs_removed": 0.5, "lungs_boxed_out": boxed}
    kw = {**CONFOUNDED, **kw}
    comparison = _comparison({k: v for k, v in accuracies.items() if np.isfinite(v)}, **kw.pop("size", {}))
    return verdict_row(arch, comparison, 1 / 3, margin=0.1, learned_margin=0.2, **kw)


def test_three_way_verdict_and_its_reasons():
    flagged = _verdict("alexnet", 0.9, 0.7)
    assert flagged["verdict"] == "non_lung_signal" and flagged["learned"] and flagged["non_lung_signal"]
    assert "CI lower bound 0.650 exceeds chance + margin (0.333 + 0.10 = 0.433)" in flagged["verdict_reason"]
    assert "outside the lungs" in flagged["paragraph"] and "Verdict **non_lung_signal**" in flagged["paragraph"]
    # flagged whether or not the full-image model learned: the boxed-out model found it itself
    unlearned_flagged = _verdict("alexnet", 0.4, 0.7)
    assert unlearned_flagged["verdict"] == "non_lung_signal" and not unlearned_flagged["learned"]
    assert "did not clearly learn" in unlearned_flagged["verdict_reason"]
    honest = _verdict("vgg11", 0.9, 0.4)
    assert honest["verdict"] == "no_evidence"
    assert "CI lower bound 0.350 does not exceed chance + margin = 0.433" in honest["verdict_reason"]
    assert f"about {honest['boxed_out_detectable_accuracy']:.3f}" in honest["verdict_reason"]
    at_chance = _verdict("resnet50", 0.35, 0.34)
    assert at_chance["verdict"] == "inconclusive" and not at_chance["non_lung_signal"]
    assert "did not learn (accuracy CI lower bound 0.300, below chance + learned margin = 0.533)" in \
        at_chance["verdict_reason"]
    assert "ImageNet-pretrained" in at_chance["verdict_reason"] and "no evidence" not in at_chance["paragraph"]
    small = _verdict("alexnet", 0.9, 0.7, size=dict(n_test=20, n_patients=20))
    assert small["verdict"] == "inconclusive" and small["non_lung_signal"]  # the flag alone, without the power
    assert small["verdict_reason"].startswith("the test set has 20 images; at least 30 are needed")
    assert _verdict("alexnet", 0.9, 0.7, min_test_images=10, size=dict(n_test=20))["verdict"] == "non_lung_signal"
    missing = _verdict("alexnet", 0.9, np.nan)
    assert missing["verdict"] == "inconclusive" and "no lungs_boxed_out model" in missing["verdict_reason"]
    # power: 100 test patients at chance 1/3 + 0.1
    assert honest["ci_half_width_at_threshold"] == pytest.approx(0.0971, abs=1e-4)
    assert honest["boxed_out_detectable_accuracy"] == pytest.approx(0.531, abs=1e-3)


def _table_line(md, arch):
    return next(line for line in md.splitlines() if line.startswith(f"| {arch} "))


def test_summary_opens_with_the_data_and_never_calls_an_unlearned_model_not_flagged():
    rows = [_verdict("alexnet", 0.9, 0.7), _verdict("vgg11", 0.9, 0.4), _verdict("resnet50", 0.35, 0.34)]
    md = summary_markdown(pd.DataFrame(rows)[VERDICT_COLUMNS], "test data")
    opening = md[:md.index("## Verdicts")]
    assert opening.startswith("# Audit summary\n\nData: test data.\n\n## The data\n")
    assert "scores accuracy **0.900** on the test set, against chance 0.333" in opening
    assert "balanced accuracy **0.930**, against chance 0.500" in opening
    assert "**Warning: the data source predicts the label**" in opening
    assert ("The data carry a shortcut that 1 of 3 models (resnet50) did not learn enough to test: their verdict "
            "is `inconclusive`") in opening and "ImageNet-pretrained" in opening
    assert md.index("**Power.**") < md.index("| architecture")
    assert ("The test set has 120 images from 100 patients; chance (the majority class's share) is 0.333" in md
            and "95 % CI of about ±0.097" in md and "accuracy of about 0.531 on" in md)
    assert _table_line(md, "alexnet").rstrip(" |").endswith("non_lung_signal")
    assert _table_line(md, "vgg11").rstrip(" |").endswith("no_evidence")
    assert _table_line(md, "resnet50").rstrip(" |").endswith("inconclusive")
    assert "not flagged" not in md and "| False " in _table_line(md, "resnet50")

    every = summary_markdown(pd.DataFrame([_verdict("resnet50", 0.35, 0.34)])[VERDICT_COLUMNS], "test data")
    assert "The data carry a shortcut that every model (resnet50) did not learn enough to test" in every
    clean = dict(shortcut=dict(accuracy=0.35, chance=1 / 3), probe=dict(balanced_accuracy=0.55, balanced_chance=0.5))
    unconfounded = summary_markdown(pd.DataFrame([_verdict("resnet50", 0.35, 0.34, **clean)])[VERDICT_COLUMNS], "x")
    assert "Warning" not in unconfounded and "does not predict the label" in unconfounded
    assert "Every model (resnet50) did not learn the task well enough to test" in unconfounded
    # the negative control: the images reveal their source, but the source is independent of the label
    recognisable = dict(shortcut=dict(accuracy=0.337, chance=1 / 3), probe=dict(balanced_accuracy=0.655, balanced_chance=1 / 3))
    independent = summary_markdown(pd.DataFrame([_verdict("resnet50", 0.35, 0.34, **recognisable)])[VERDICT_COLUMNS], "x")
    assert "Warning" not in independent and "The data carry a shortcut" not in independent
    assert "the images reveal their source" in independent and "here that would not score" in independent
    no_evidence = summary_markdown(pd.DataFrame([_verdict("vgg11", 0.9, 0.4, probe=None, shortcut=None)])[
        VERDICT_COLUMNS], "x")
    assert "Source only: no Table 1 source-only rule" in no_evidence
    assert "Source probe: not run (`audit.source_probe`" in no_evidence
    small = _verdict("alexnet", 0.9, 0.7, size=dict(n_test=20, n_patients=20))
    assert "every verdict is `inconclusive`; a larger test set is needed" in summary_markdown(
        pd.DataFrame([small])[VERDICT_COLUMNS], "x")
