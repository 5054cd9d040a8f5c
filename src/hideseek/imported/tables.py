"""The hide-at-test-time tables of one imported model, from its per-image predictions.

All reuse the audit's own functions on the prediction CSV (:mod:`.predict`): accuracy per
representation with the patient-bootstrap CI, its paired difference to ``data`` and exact
McNemar (:func:`hideseek.audit.comparisons.accuracy_rows`, keyed by ``test_rep``); accuracy,
per-class sensitivity and PPV with CIs (:func:`hideseek.classification.tables.table_rows`, fed
the test representation as the row key: one model tested on each representation); per-source
accuracy and per-class AUROC per representation. New here: the **prediction distribution** per
representation — the share of each predicted class — because a model that answers one class
for (almost) every image with the lungs hidden is out of distribution, and its accuracy there
(that class's share of the test set) says nothing about what it reads.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..audit.comparisons import accuracy_rows, per_class_auroc, per_source_accuracy
from ..classification.tables import table_rows
from ..io import read_table, write_csv_atomic
from ..vocabulary import CLASS_KEYS, CLASSES

log = logging.getLogger(__name__)

# Representations with the lungs (or their boxes) hidden: where a collapse means out of distribution.
LUNGS_HIDDEN = ("lungs_removed", "lungs_boxed_out")


def present(predictions: pd.DataFrame, reps) -> list[str]:
    return [rep for rep in reps if rep in set(predictions["test_rep"])]


def hiding_table(predictions: pd.DataFrame, reps, **stats) -> pd.DataFrame:
    """Accuracy per test representation vs ``data`` (CI, paired difference, McNemar, Holm)."""
    table = accuracy_rows(predictions, "test_rep", present(predictions, reps), reference="data", **stats)
    table.insert(0, "model", predictions["arch"].iloc[0])
    return table


def metrics_table(predictions: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> pd.DataFrame:
    """Accuracy, sensitivity and PPV per class with CIs and the comparison with ``data``, one row
    per test representation (Tables 3-7's columns, for one model tested on each)."""
    as_own = predictions.assign(train_rep=predictions["test_rep"])
    table = table_rows(as_own, present(predictions, reps), n_boot=n_boot, boot_seed=seed, level=level)
    table = table.drop(columns=[c for c in table.columns if c.endswith("_sd_over_seeds") or c == "n_seeds"])
    table.insert(0, "model", predictions["arch"].iloc[0])
    return table.rename(columns={"representation": "test_rep"})


def per_source_table(predictions: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Accuracy per (true class, source) on each test representation (``representation`` column,
    the layout of per_source_accuracy_{arch}.csv that :func:`hideseek.audit.evidence.source_evidence` reads)."""
    return pd.concat([per_source_accuracy(predictions[predictions["test_rep"] == rep], n_boot, seed, level)
                      .assign(representation=rep) for rep in present(predictions, reps)], ignore_index=True)


def auroc_table(predictions: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    return pd.concat([per_class_auroc(predictions[predictions["test_rep"] == rep], n_boot, seed, level)
                      .assign(representation=rep) for rep in present(predictions, reps)], ignore_index=True)


def prediction_distribution(predictions: pd.DataFrame, reps, collapse_share: float = 0.9) -> pd.DataFrame:
    """Per test representation: the share of images predicted as each class (beside the true
    class mix), the most predicted class and its share, and ``collapsed`` (that share is at
    least `collapse_share`). ``out_of_distribution`` is ``collapsed`` on a representation with
    the lungs hidden (:data:`LUNGS_HIDDEN`) while the model does not collapse on ``data``."""
    rows = []
    for rep in present(predictions, reps):
        sub = predictions[predictions["test_rep"] == rep]
        shares = sub["predicted"].value_counts(normalize=True).reindex(list(CLASSES), fill_value=0.0)
        truth = sub["true"].value_counts(normalize=True).reindex(list(CLASSES), fill_value=0.0)
        top = str(shares.idxmax())
        row = dict(model=sub["arch"].iloc[0], test_rep=rep, n_images=len(sub),
                   **{f"predicted_share_{CLASS_KEYS[c]}": float(shares[c]) for c in CLASSES},
                   **{f"true_share_{CLASS_KEYS[c]}": float(truth[c]) for c in CLASSES},
                   top_predicted=top, top_share=float(shares[top]), collapse_share=collapse_share)
        row["collapsed"] = bool(row["top_share"] >= collapse_share)
        rows.append(row)
    table = pd.DataFrame(rows)
    data_collapsed = bool(table.loc[table["test_rep"] == "data", "collapsed"].any())
    table["lungs_hidden"] = table["test_rep"].isin(LUNGS_HIDDEN)
    table["out_of_distribution"] = table["collapsed"] & table["lungs_hidden"] & (not data_collapsed)
    return table


def write_imported_tables(predictions_csv, reps, out: dict, *, collapse_share: float = 0.9, n_boot: int = 1000,
                          boot_seed: int = 0, level: float = 0.95) -> dict[str, pd.DataFrame]:
    """The imported_tables job: `out` maps hiding, metrics, per_source, auroc, distribution to paths."""
    predictions = read_table(predictions_csv)
    kw = dict(n_boot=n_boot, seed=boot_seed, level=level)
    tables = dict(hiding=hiding_table(predictions, reps, **kw), metrics=metrics_table(predictions, reps, **kw),
                  per_source=per_source_table(predictions, reps, **kw), auroc=auroc_table(predictions, reps, **kw),
                  distribution=prediction_distribution(predictions, reps, collapse_share))
    for key, table in tables.items():
        write_csv_atomic(table, out[key])
    log.info("test-time hiding:\n%s", tables["hiding"].to_string())
    log.info("prediction distribution:\n%s", tables["distribution"].to_string())
    if np.any(tables["distribution"]["out_of_distribution"]):
        log.warning("%s collapses onto one class with the lungs hidden: out of distribution there",
                    predictions["arch"].iloc[0])
    return tables
