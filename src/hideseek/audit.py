"""Audit statistics and the verdict: uncertainty that a reviewer can check.

Bootstrap
---------
Every CI here is a percentile bootstrap (95 % by default) that resamples **patients, with
replacement, within each class** (a patient's class is the label of its first image): a
patient's images enter or leave a resample together, so images of one patient never count as
independent evidence, and every resample keeps the test set's class sizes in patients. A
resample is represented as integer weights on the images (how often its patient was drawn),
so any mean or ratio statistic is a matrix product (:func:`bootstrap_weights`).

Tables 3-7 (:mod:`hideseek.classifier_tables`) use these resamples for every metric and
:func:`representation_comparison` for their comparison with ``data``; this module also holds
per-source accuracy, per-class AUROC, the test-time hiding table, the source probe and the
verdict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import CLASSES

PROB_COLUMNS = {"normal": "p_normal", "pneumonia": "p_pneumonia", "COVID-19": "p_covid"}


# ---------------------------------------------------------------------------------------------
# Bootstrap machinery
# ---------------------------------------------------------------------------------------------
def bootstrap_weights(patients, labels, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_images) integer weights: patients resampled with replacement within class.

    A patient's class is the label of its first image; each class keeps its number of
    patients in every resample. Weight = how many times the image's patient was drawn.
    """
    patients = np.asarray(patients).astype(str)
    labels = np.asarray(labels).astype(str)
    n = len(patients)
    rng = np.random.default_rng(seed)
    unique, first, inverse = np.unique(patients, return_index=True, return_inverse=True)
    patient_class = labels[first]
    patient_counts = np.zeros((n_boot, len(unique)), dtype=np.int64)
    for cls in np.unique(patient_class):
        members = np.flatnonzero(patient_class == cls)
        draws = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_boot)
        patient_counts[:, members] = draws
    weights = patient_counts[:, inverse] if n else np.zeros((n_boot, 0), dtype=np.int64)
    return weights


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def ratio_ci(numerator, denominator, weights: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Point value sum(num)/sum(den) and its bootstrap CI under `weights` (n_boot, n)."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = num.sum() / den.sum() if den.sum() > 0 else float("nan")
        boot = (weights @ num) / (weights @ den)
    return (float(point), *percentile_ci(boot, level))


def mean_ci(values, weights: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-image `values` with its bootstrap CI."""
    values = np.asarray(values, dtype=float)
    return ratio_ci(values, np.ones_like(values), weights, level)


def accuracy_ci(true, predicted, patients, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """(accuracy, CI low, CI high) with patients resampled within class."""
    true = np.asarray(true).astype(str)
    correct = (true == np.asarray(predicted).astype(str)).astype(float)
    return mean_ci(correct, bootstrap_weights(patients, true, n_boot, seed), level)


def paired_difference_ci(correct_a, correct_b, weights: np.ndarray, level: float = 0.95):
    """Accuracy of b minus accuracy of a on the same images, with a paired bootstrap CI
    (the same resample for both)."""
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    return mean_ci(b - a, weights, level)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def mcnemar_exact(correct_a, correct_b) -> float:
    """Exact (binomial) two-sided McNemar p-value of two classifiers on the same images."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN entries stay NaN and are
    not counted as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out


# ---------------------------------------------------------------------------------------------
# Per-source accuracy, per-class AUROC
# ---------------------------------------------------------------------------------------------
def per_source_accuracy(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> pd.DataFrame:
    """Accuracy per (true class, source) of one prediction frame (columns true, predicted,
    patient_id, source), with patient-bootstrap CIs; a pooled number hides which source
    carries it."""
    rows = []
    source = frame["source"].fillna("unknown").astype(str)
    for (label, src), sub in frame.groupby([frame["true"], source], sort=True):
        acc, lo, hi = accuracy_ci(sub["true"], sub["predicted"], sub["patient_id"], n_boot, seed, level)
        rows.append(dict(true=label, source=src, n_images=len(sub), n_patients=sub["patient_id"].nunique(),
                         accuracy=acc, ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows, columns=["true", "source", "n_images", "n_patients", "accuracy", "ci_low", "ci_high"])


def weighted_auroc(y, score, weights) -> np.ndarray:
    """AUROC of binary `y` (1 = positive) under each row of `weights` (n_boot, n), vectorised;
    ties count 1/2 (equal to sklearn's ``roc_auc_score(..., sample_weight=w)``)."""
    y = np.asarray(y).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    unique, inverse = np.unique(np.asarray(score, dtype=float), return_inverse=True)
    onehot = np.zeros((len(y), len(unique)))
    onehot[np.arange(len(y)), inverse] = 1.0
    pos = (weights * y) @ onehot          # (n_boot, U) positive weight per distinct score
    neg = (weights * ~y) @ onehot
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def per_class_auroc(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One-vs-rest AUROC per class from the softmax columns (point value: sklearn
    ``roc_auc_score``), with patient-bootstrap CIs (:func:`weighted_auroc` on the resample weights)."""
    from sklearn.metrics import roc_auc_score

    true = frame["true"].astype(str).to_numpy()
    weights = bootstrap_weights(frame["patient_id"], true, n_boot, seed)
    rows = []
    for cls in CLASSES:
        y = (true == cls).astype(int)
        score = frame[PROB_COLUMNS[cls]].to_numpy(dtype=float)
        if y.min() == y.max():
            rows.append(dict(cls=cls, auroc=np.nan, ci_low=np.nan, ci_high=np.nan))
            continue
        point = roc_auc_score(y, score)
        lo, hi = percentile_ci(weighted_auroc(y, score, weights), level)
        rows.append(dict(cls=cls, auroc=float(point), ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows).rename(columns={"cls": "class"})


# ---------------------------------------------------------------------------------------------
# Representation comparisons and test-time hiding
# ---------------------------------------------------------------------------------------------
def _first_seed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["seed"] == sorted(frame["seed"].unique())[0]]


def _per_seed_correct(frame: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """(n_seeds, n_images) correctness, rows aligned to `ids`."""
    out = []
    for _, sub in frame.groupby("seed", sort=True):
        sub = sub.set_index("image_id").loc[ids]
        out.append((sub["true"] == sub["predicted"]).to_numpy(dtype=float))
    return np.stack(out)


def accuracy_rows(frame: pd.DataFrame, key: str, keys, reference: str = "data", n_boot: int = 1000,
                  seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per value of `key` (``train_rep`` or ``test_rep``): accuracy (mean over seeds)
    with a patient-bootstrap CI, SD over seeds, the paired bootstrap CI of the difference to
    `reference`, exact McNemar p (first seed) and Holm-adjusted p over the comparisons."""
    base = frame[frame[key] == reference] if reference in set(frame[key]) else None
    rows, correct = [], {}
    ids_all = None
    for value in keys:
        sub = frame[frame[key] == value]
        if sub.empty:
            continue
        ids = np.sort(sub["image_id"].unique())
        first = _first_seed(sub).set_index("image_id").loc[ids]
        if ids_all is None:
            ids_all, weights = ids, bootstrap_weights(first["patient_id"], first["true"], n_boot, seed)
        if not np.array_equal(ids, ids_all):
            raise ValueError(f"{key}={value}: evaluated on different test images than {keys[0]}")
        per_seed = _per_seed_correct(sub, ids)
        correct[value] = per_seed
        acc, lo, hi = mean_ci(per_seed.mean(0), weights, level)
        row = {key: value, "n_test": len(ids), "n_patients": first["patient_id"].nunique(),
               "n_seeds": per_seed.shape[0], "accuracy": acc, "ci_low": lo, "ci_high": hi,
               "sd_over_seeds": float(per_seed.mean(1).std(ddof=1)) if per_seed.shape[0] > 1 else np.nan}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    diffs, p = [], []
    for value in table[key]:
        if base is None or value == reference or reference not in correct:
            diffs.append((np.nan, np.nan, np.nan))
            p.append(np.nan)
            continue
        ref = correct[reference]
        diffs.append(paired_difference_ci(ref.mean(0), correct[value].mean(0), weights, level))
        p.append(mcnemar_exact(ref[0] > 0.5, correct[value][0] > 0.5))
    table[f"diff_vs_{reference}"] = [d[0] for d in diffs]
    table[f"diff_ci_low"] = [d[1] for d in diffs]
    table[f"diff_ci_high"] = [d[2] for d in diffs]
    table["mcnemar_p"] = p
    table["mcnemar_p_holm"] = holm(p)
    return table


def test_time_hiding(predictions: pd.DataFrame, test_reps, train_rep: str = "data", n_boot: int = 1000,
                     seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Models trained on `train_rep`, evaluated on every representation's test set."""
    frame = predictions[predictions["train_rep"] == train_rep]
    table = accuracy_rows(frame, "test_rep", list(test_reps), reference=train_rep, n_boot=n_boot,
                          seed=seed, level=level)
    if not table.empty:
        table.insert(0, "train_rep", train_rep)
    return table


def representation_comparison(predictions: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0,
                              level: float = 0.95) -> pd.DataFrame:
    """Each representation's model on its own test set vs the data model (patient bootstrap)."""
    own = predictions[predictions["train_rep"] == predictions["test_rep"]]
    return accuracy_rows(own, "train_rep", list(reps), reference="data", n_boot=n_boot, seed=seed, level=level)


# ---------------------------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------------------------
def chance_level(true) -> float:
    """The majority-class rate of the test set (what always answering one class scores)."""
    values = pd.Series(np.asarray(true).astype(str))
    return float(values.value_counts(normalize=True).max()) if len(values) else float("nan")


def fmt_ci(value, low, high, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def verdict_row(arch: str, own: pd.DataFrame, chance: float, margin: float, learned_margin: float,
                attention: dict | None = None, probe: dict | None = None) -> dict:
    """One architecture's verdict from its representation comparison (`own`, the output of
    :func:`representation_comparison`)."""
    def get(rep):
        hit = own[own["train_rep"] == rep]
        if hit.empty:
            return (np.nan, np.nan, np.nan)
        r = hit.iloc[0]
        return float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])

    row = {"arch": arch, "chance": chance, "margin": margin}
    for rep in ("data", "lungs_removed", "lungs_boxed_out", "lungs_isolated", "lungs_framed"):
        acc, lo, hi = get(rep)
        row.update({f"acc_{rep}": acc, f"acc_{rep}_ci_low": lo, f"acc_{rep}_ci_high": hi})
    row["learned"] = bool(np.isfinite(row["acc_data_ci_low"]) and row["acc_data_ci_low"] >= chance + learned_margin)
    boxed_lo = row["acc_lungs_boxed_out_ci_low"]
    row["non_lung_signal"] = bool(np.isfinite(boxed_lo) and boxed_lo > chance + margin)
    attention = attention or {}
    row["lung_attention_data"] = attention.get("ratio", np.nan)
    row["lung_attention_data_ci_low"] = attention.get("ci_low", np.nan)
    row["lung_attention_data_ci_high"] = attention.get("ci_high", np.nan)
    row["lung_energy_share_data"] = attention.get("share", np.nan)
    probe = probe or {}
    # The probe trains with a source-balanced sampler, so it is judged by balanced accuracy
    # (mean recall over a class's sources) against 1 / n_sources; its plain accuracy and the
    # within-class majority baseline stay in source_probe.csv.
    row["source_probe_balanced_accuracy"] = probe.get("balanced_accuracy", np.nan)
    row["source_probe_balanced_chance"] = probe.get("balanced_chance", np.nan)
    row["paragraph"] = verdict_paragraph(row)
    return row


def verdict_paragraph(row: dict) -> str:
    arch, chance, margin = row["arch"], row["chance"], row["margin"]
    data = fmt_ci(row["acc_data"], row["acc_data_ci_low"], row["acc_data_ci_high"])
    boxed = fmt_ci(row["acc_lungs_boxed_out"], row["acc_lungs_boxed_out_ci_low"], row["acc_lungs_boxed_out_ci_high"])
    removed = fmt_ci(row["acc_lungs_removed"], row["acc_lungs_removed_ci_low"], row["acc_lungs_removed_ci_high"])
    parts = [f"**{arch}** reaches accuracy {data} on the full images (chance, the majority-class rate: "
             f"{chance:.3f})."]
    if not row["learned"]:
        parts.append("That is not clearly above chance, so the model has not learned the task well enough "
                     "for the rest of the audit to mean much.")
    if row["non_lung_signal"]:
        parts.append(f"Trained and tested with both lungs boxed out it still reaches {boxed}: the lower CI "
                     f"bound is more than {margin:.2f} above chance, so **the images carry label information "
                     "outside the lungs** (a shortcut such as the hospital or scanner), and an accurate model "
                     "may be using it.")
    else:
        parts.append(f"With both lungs boxed out it reaches {boxed}, not more than {margin:.2f} above chance "
                     "with confidence: no evidence of label information outside the lungs.")
    parts.append(f"With the lungs removed (mask only): {removed}.")
    ratio = row.get("lung_attention_data", np.nan)
    if np.isfinite(ratio):
        parts.append(f"On the full images, {row['lung_energy_share_data']:.0%} of its Grad-CAM energy lies inside "
                     f"the lung mask: {ratio:.2f}× the mask's share of the image area "
                     f"(CI {row['lung_attention_data_ci_low']:.2f}–{row['lung_attention_data_ci_high']:.2f}; "
                     "1 = no preference for the lungs; read it with the CAM's coarse native grid in mind).")
    if np.isfinite(row.get("source_probe_balanced_accuracy", np.nan)):
        parts.append(f"A source probe trained on the full images predicts the data source within each class "
                     f"with balanced accuracy {row['source_probe_balanced_accuracy']:.3f} (chance "
                     f"{row['source_probe_balanced_chance']:.3f}): the further above chance, the more the "
                     "images say where they came from.")
    return " ".join(parts)


VERDICT_COLUMNS = [
    "arch", "chance", "margin", "learned", "non_lung_signal",
    "acc_data", "acc_data_ci_low", "acc_data_ci_high",
    "acc_lungs_removed", "acc_lungs_removed_ci_low", "acc_lungs_removed_ci_high",
    "acc_lungs_boxed_out", "acc_lungs_boxed_out_ci_low", "acc_lungs_boxed_out_ci_high",
    "acc_lungs_isolated", "acc_lungs_isolated_ci_low", "acc_lungs_isolated_ci_high",
    "acc_lungs_framed", "acc_lungs_framed_ci_low", "acc_lungs_framed_ci_high",
    "lung_attention_data", "lung_attention_data_ci_low", "lung_attention_data_ci_high", "lung_energy_share_data",
    "source_probe_balanced_accuracy", "source_probe_balanced_chance", "paragraph",
]


def summary_markdown(verdict: pd.DataFrame, dataset: str, notes=()) -> str:
    lines = ["# Audit summary", "", f"Data: {dataset}.", "",
             "`non_lung_signal`: the accuracy of a model trained and tested with both lungs boxed out "
             "has a 95 % CI (patients resampled within class) whose lower bound exceeds chance (the "
             "majority-class rate of the test set) by more than the margin. `learned`: the accuracy on "
             "the full images has a CI lower bound at least `learned_margin` above chance.", ""]
    table = pd.DataFrame({
        "architecture": verdict["arch"],
        "data": [fmt_ci(r.acc_data, r.acc_data_ci_low, r.acc_data_ci_high) for r in verdict.itertuples()],
        "lungs_removed": [fmt_ci(r.acc_lungs_removed, r.acc_lungs_removed_ci_low, r.acc_lungs_removed_ci_high)
                          for r in verdict.itertuples()],
        "lungs_boxed_out": [fmt_ci(r.acc_lungs_boxed_out, r.acc_lungs_boxed_out_ci_low,
                                   r.acc_lungs_boxed_out_ci_high) for r in verdict.itertuples()],
        "chance": [f"{c:.3f}" for c in verdict["chance"]],
        "lung attention (data)": [f"{v:.2f}" if np.isfinite(v) else "–" for v in verdict["lung_attention_data"]],
        "source probe (balanced acc.)": [f"{v:.3f}" if np.isfinite(v) else "–"
                                         for v in verdict["source_probe_balanced_accuracy"]],
        "learned": verdict["learned"],
        "non_lung_signal": verdict["non_lung_signal"],
    })
    lines += [table.to_markdown(index=False), ""]
    for row in verdict.itertuples():
        lines += [f"## {row.arch}", "", row.paragraph, ""]
    for note in notes:
        lines += [f"- {note}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Source probe
# ---------------------------------------------------------------------------------------------
def probe_skip_reason(index: pd.DataFrame) -> str | None:
    """Why the source probe cannot run on this data (None if it can)."""
    if "source" not in index.columns or index["source"].isna().all():
        return "the data carry no source column"
    test = index[index["partition"] == "test"]
    per_class = test.dropna(subset=["source"]).groupby("label")["source"].nunique()
    if per_class.empty or (per_class < 2).all():
        return "every class's test images come from a single source"
    return None


def probe_rows(frame: pd.DataFrame, rep: str, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Within-class source accuracy of one probe's test predictions (columns true_class,
    source, predicted_source, patient_id) against the within-class majority baseline, and
    balanced accuracy (mean recall over the class's sources) against 1 / n_sources.

    A probe that only knew the class could do no better than the baseline within a class."""
    rows = []
    usable = []
    for cls in CLASSES:
        sub = frame[frame["true_class"] == cls]
        k = sub["source"].nunique()
        if k < 2:
            rows.append(dict(representation=rep, true_class=cls, n_images=len(sub), n_sources=int(k),
                             note="single source in this class: skipped"))
            continue
        usable.append(sub)
        rows.append(_probe_row(sub, rep, cls, n_boot, seed, level))
    if usable:
        rows.append(_probe_row(pd.concat(usable), rep, "all", n_boot, seed, level))
    return rows


def _probe_row(sub: pd.DataFrame, rep: str, cls: str, n_boot: int, seed: int, level: float) -> dict:
    correct = (sub["source"] == sub["predicted_source"]).to_numpy(dtype=float)
    weights = bootstrap_weights(sub["patient_id"], sub["true_class"], n_boot, seed)
    acc, lo, hi = mean_ci(correct, weights, level)
    # within-class majority baseline (per class, pooled over the classes in `sub`)
    majority = sub.groupby("true_class")["source"].transform(lambda s: s.value_counts().idxmax())
    baseline = float((sub["source"] == majority).mean())
    recalls = sub.assign(c=correct).groupby(["true_class", "source"])["c"].mean()
    balanced = float(recalls.groupby(level=0).mean().mean())
    chance_bal = float((1.0 / sub.groupby("true_class")["source"].nunique()).mean())
    return dict(representation=rep, true_class=cls, n_images=len(sub), n_sources=int(sub["source"].nunique()),
                accuracy=acc, ci_low=lo, ci_high=hi, baseline=baseline, above_baseline=bool(lo > baseline),
                balanced_accuracy=balanced, balanced_chance=chance_bal, note="")


def run_source_probe(arch: str, recipe: dict, stores: dict, *, seed: int = 0, device: str = "auto",
                     threads: int = 1, n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95,
                     checkpoint_root=None) -> pd.DataFrame:
    """For each representation (`stores`: rep -> (pixels, index)), train `arch` to predict the
    data source (training.py's loop; sources as the targets, a source-balanced sampler), then
    score it within each class on the test images."""
    import tempfile

    import torch

    from . import training
    from .models import build_model

    rows = []
    for rep, (pixels, index_path) in stores.items():
        index = pd.read_csv(index_path)
        sources = sorted(index["source"].dropna().astype(str).unique())
        code = {s: i for i, s in enumerate(sources)}
        splits = {}
        for part in ("train", "val", "test"):
            split = training.load_split(pixels, index_path, part, recipe["input_size"],
                                        per_class=recipe.get("train_images_per_class") if part == "train" else None)
            keep = split.frame["source"].notna().to_numpy()
            split.images = split.images[torch.from_numpy(keep)]
            split.frame = split.frame[keep].reset_index(drop=True)
            split.labels = torch.tensor([code[s] for s in split.frame["source"].astype(str)], dtype=torch.int64)
            splits[part] = split
        probe_recipe = dict(recipe, class_weights=[1.0] * len(sources), sampler="balanced")

        def build(arch_, num_classes, width, pretrained_weights=None):
            return build_model(arch_, num_classes=len(sources), width=width)

        ckpt = checkpoint_root or tempfile.mkdtemp(prefix="source_probe_")
        result = training.train_classifier(arch, probe_recipe, splits["train"], splits["val"], seed,
                                           f"{ckpt}/{rep}", device=device, threads=threads, build=build,
                                           progress=False, checkpoint_every=0)
        model = build(arch, len(sources), probe_recipe["width"])
        model.load_state_dict(result.best_state)
        dev = training.resolve_device(device)
        perf = training.performance_settings(probe_recipe, dev)
        model = model.to(dev)
        test = splits["test"]
        predicted = training.predict_logits(model, test.images, perf, probe_recipe["eval_batch_size"]).argmax(1).numpy()
        frame = pd.DataFrame(dict(true_class=test.frame["label"], source=test.frame["source"].astype(str),
                                  predicted_source=[sources[i] for i in predicted], patient_id=test.frame["patient_id"]))
        rows += probe_rows(frame, rep, n_boot, boot_seed, level)
    return pd.DataFrame(rows)
