"""Representation comparisons, test-time hiding, per-source accuracy and per-class AUROC.

Every CI is the patient bootstrap of :mod:`hideseek.stats` (patients resampled with
replacement within each class). Tables 3-7 (:mod:`hideseek.classification.tables`) use
:func:`representation_comparison` for their comparison with ``data``, so a table and
``comparison_{arch}.csv`` always agree.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..io import read_table, write_csv_atomic
from ..stats import accuracy_ci, bootstrap_weights, holm, mcnemar_exact, mean_ci, paired_difference_ci, percentile_ci, weighted_auroc
from ..vocabulary import CLASSES, PROB_COLUMNS

log = logging.getLogger(__name__)


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


def per_class_auroc(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One-vs-rest AUROC per class from the softmax columns (point value: sklearn
    ``roc_auc_score``), with patient-bootstrap CIs (:func:`hideseek.stats.weighted_auroc` on
    the resample weights)."""
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
    table["diff_ci_low"] = [d[1] for d in diffs]
    table["diff_ci_high"] = [d[2] for d in diffs]
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


def own_model_tables(predictions: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-source accuracy, per-class AUROC) of each representation's model on its own test
    set, first seed only, one block per representation present (column ``representation``)."""
    own = predictions[predictions["train_rep"] == predictions["test_rep"]]
    first_seed = _first_seed(own)
    per_source, auroc = [], []
    for rep in reps:
        sub = first_seed[first_seed["train_rep"] == rep]
        if sub.empty:
            continue
        per_source.append(per_source_accuracy(sub, n_boot, seed, level).assign(representation=rep))
        auroc.append(per_class_auroc(sub, n_boot, seed, level).assign(representation=rep))
    return pd.concat(per_source, ignore_index=True), pd.concat(auroc, ignore_index=True)


def write_audit_tables(prediction_files, reps, out_hiding, out_comparison, out_per_source, out_auroc, *,
                       n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95) -> dict[str, pd.DataFrame]:
    """One architecture's uncertainty tables from its per-image prediction CSVs: test-time
    hiding, the representation comparison, per-source accuracy and per-class AUROC."""
    predictions = pd.concat([read_table(path) for path in prediction_files], ignore_index=True)
    kw = dict(n_boot=n_boot, seed=boot_seed, level=level)
    tables = dict(hiding=test_time_hiding(predictions, reps, **kw),
                  comparison=representation_comparison(predictions, reps, **kw))
    tables["per_source"], tables["auroc"] = own_model_tables(predictions, reps, **kw)
    for name, path in zip(tables, (out_hiding, out_comparison, out_per_source, out_auroc)):
        write_csv_atomic(tables[name], path)
    log.info("test-time hiding:\n%s", tables["hiding"].to_string())
    return tables
