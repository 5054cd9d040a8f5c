"""External-set tables: each architecture's models on an external set, and the cross-site table.

``external_{name}_{arch}.csv``: one row per representation (the model trained on it, tested on
the external set's same representation): Tables 3-7's columns (accuracy, per-class sensitivity
and PPV, :func:`hideseek.classification.tables.table_rows`) with patient-bootstrap CIs, the
paired comparison with the ``data`` model on the same external images, and the one-vs-rest
AUROC per class (:func:`hideseek.audit.comparisons.per_class_auroc`, first seed).

An imported model (``imported_models``) gets the same two tables: its external table has one row
per test representation (the one model tested on each, test-time hiding), its cross-site rows
only the full images' (``origin: imported``).

``external_generalisation.csv``: one row per external set × architecture × representation:
the internal (own test split) and the external accuracy, each with its patient bootstrap, and
the generalisation gap (external − internal). Internal and external are different images of
different patients, so the gap's CI is **unpaired**: the percentile CI of the difference of two
independent bootstraps (each resampling its own patients within class; the external one with
``boot_seed + 1``), not the paired bootstrap the within-test-set comparisons use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..audit.comparisons import per_class_auroc
from ..classification.tables import METRICS, table_rows
from ..io import read_table, write_csv_atomic, write_text_atomic
from ..stats import bootstrap_weights, percentile_ci
from ..vocabulary import CLASS_KEYS, REPRESENTATIONS

EXTERNAL_SEED_OFFSET = 1  # the external bootstrap's seed is boot_seed + 1: independent of the internal one
GAP_COLUMNS = [
    "external_set", "arch", "origin", "representation", "n_seeds",
    "internal_n_test", "internal_n_patients", "internal_accuracy", "internal_ci_low", "internal_ci_high",
    "external_n_test", "external_n_patients", "external_accuracy", "external_ci_low", "external_ci_high",
    "gap", "gap_ci_low", "gap_ci_high", "drop",
]
GAP_METHOD = ("gap = external − internal accuracy (each the mean over seeds of the per-image correctness); "
              "CI: percentile of the difference of two independent patient bootstraps (patients resampled with "
              "replacement within class, {n_boot} resamples each), unpaired because the internal and external "
              "test sets are different images of different patients; drop: the gap's CI lies below 0")


def as_own_rows(predictions: pd.DataFrame, imported_reps=None) -> pd.DataFrame:
    """Predictions with an imported model's rows (``train_rep`` ``imported``: one model tested on
    each representation, :mod:`hideseek.imported.predict`) relabelled as if each test
    representation had its own model, so the own-representation tables read them; trained-here
    rows are unchanged. `imported_reps` keeps only those test representations of an imported
    model (the cross-site gap: only the full images are in its training distribution)."""
    from ..imported.predict import TRAIN_REP

    imported = predictions["train_rep"] == TRAIN_REP
    if not imported.any():
        return predictions
    if imported_reps is not None:
        keep = ~imported | predictions["test_rep"].isin(list(imported_reps))
        predictions, imported = predictions[keep], imported[keep]
    predictions = predictions.copy()
    predictions.loc[imported, "train_rep"] = predictions.loc[imported, "test_rep"]
    return predictions


def imported_names(predictions: pd.DataFrame) -> set[str]:
    from ..imported.predict import TRAIN_REP

    return set(predictions.loc[predictions["train_rep"] == TRAIN_REP, "arch"])


def own_predictions(predictions: pd.DataFrame, arch: str | None = None) -> pd.DataFrame:
    """Each model's predictions on its own representation (train_rep == test_rep), one architecture."""
    own = predictions[predictions["train_rep"] == predictions["test_rep"]]
    return own if arch is None else own[own["arch"] == arch]


def external_table(predictions: pd.DataFrame, representations=REPRESENTATIONS, n_boot: int = 1000,
                   boot_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One architecture's rows on one external set: Tables 3-7's columns and per-class AUROC."""
    seed = boot_seed + EXTERNAL_SEED_OFFSET
    table = table_rows(predictions, representations, n_boot, seed, level)
    if table.empty:
        return table
    own = own_predictions(predictions)
    first = own[own["seed"] == own["seed"].min()]
    for position, rep in enumerate(table["representation"]):
        auroc = per_class_auroc(first[first["train_rep"] == rep], n_boot, seed, level).set_index("class")
        for cls, key in CLASS_KEYS.items():
            for column, name in (("auroc", f"auroc_{key}"), ("ci_low", f"auroc_{key}_ci_low"),
                                 ("ci_high", f"auroc_{key}_ci_high")):
                table.loc[table.index[position], name] = auroc.at[cls, column]
    return table


def _accuracy_samples(frame: pd.DataFrame, n_boot: int, seed: int) -> tuple[float, np.ndarray, int, int, int]:
    """(accuracy, bootstrap accuracies, images, patients, seeds): per-image correctness averaged
    over seeds, patients resampled within class."""
    correct = (frame["true"] == frame["predicted"]).astype(float)
    per_image = frame.assign(correct=correct).groupby("image_id", sort=True).agg(
        correct=("correct", "mean"), patient_id=("patient_id", "first"), true=("true", "first"))
    weights = bootstrap_weights(per_image["patient_id"], per_image["true"], n_boot, seed)
    values = per_image["correct"].to_numpy()
    return (float(values.mean()), (weights @ values) / weights.sum(1), len(per_image),
            per_image["patient_id"].nunique(), frame["seed"].nunique())


def generalisation_rows(internal: pd.DataFrame, external: dict[str, pd.DataFrame], archs, reps,
                        n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The cross-site table (GAP_COLUMNS) from the internal predictions (every architecture's
    prediction files, and each imported model's) and each external set's predictions, by set
    name. `archs` may name imported models (``origin: imported``): their one row per set is the
    full images' (:func:`as_own_rows`)."""
    imported = imported_names(internal)
    internal = as_own_rows(internal, imported_reps=("data",))
    external = {name: as_own_rows(ext, imported_reps=("data",)) for name, ext in external.items()}
    rows = []
    for name, ext in external.items():
        for arch in archs:
            for rep in reps:
                inside = own_predictions(internal, arch)
                inside, outside = inside[inside["train_rep"] == rep], own_predictions(ext, arch)
                outside = outside[outside["train_rep"] == rep]
                if inside.empty or outside.empty:
                    continue
                acc_in, boot_in, n_in, p_in, seeds = _accuracy_samples(inside, n_boot, boot_seed)
                acc_out, boot_out, n_out, p_out, _ = _accuracy_samples(outside, n_boot,
                                                                       boot_seed + EXTERNAL_SEED_OFFSET)
                gap_low, gap_high = percentile_ci(boot_out - boot_in, level)
                rows.append(dict(
                    external_set=name, arch=arch, origin="imported" if arch in imported else "trained_here",
                    representation=rep, n_seeds=seeds,
                    internal_n_test=n_in, internal_n_patients=p_in, internal_accuracy=acc_in,
                    internal_ci_low=percentile_ci(boot_in, level)[0], internal_ci_high=percentile_ci(boot_in, level)[1],
                    external_n_test=n_out, external_n_patients=p_out, external_accuracy=acc_out,
                    external_ci_low=percentile_ci(boot_out, level)[0], external_ci_high=percentile_ci(boot_out, level)[1],
                    gap=acc_out - acc_in, gap_ci_low=gap_low, gap_ci_high=gap_high, drop=bool(gap_high < 0)))
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def _ci(value, low, high) -> str:
    return "–" if not np.isfinite(value) else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def external_markdown(name: str, arch: str, table: pd.DataFrame, description: str, n_boot: int, level: float,
                      imported: bool = False) -> str:
    what = ("The imported model (trained elsewhere) tested on each representation of the "
            f"{description} (test-time hiding: the hidden representations are outside what it was trained on)"
            if imported else
            f"Each representation's model (trained on the internal data) tested on the same representation of "
            f"the {description}")
    lines = [f"# External set {name}: {arch}", "",
             f"{what}. {level:.0%} CIs: {n_boot} patient bootstrap resamples within class; diff vs data: "
             "paired bootstrap on the same external images. AUROC: one-vs-rest, first seed.", ""]
    if table.empty:
        return "\n".join(lines + ["No predictions.", ""])
    shown = pd.DataFrame({"representation": table["representation"]})
    for metric in (*METRICS, *(f"auroc_{key}" for key in CLASS_KEYS.values())):
        shown[metric] = [_ci(r[metric], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"]) for _, r in table.iterrows()]
    return "\n".join(lines + [shown.to_markdown(index=False), ""])


def generalisation_markdown(table: pd.DataFrame, descriptions: dict[str, str], n_boot: int, level: float) -> str:
    lines = ["# Generalisation to external sites", "",
             "Internal: each model on its own test split; external: the same model on an external set's same "
             "representation. " + GAP_METHOD.format(n_boot=n_boot) + f"; {level:.0%} CIs.", ""]
    lines += [f"- {description}" for description in descriptions.values()]
    lines.append("")
    if table.empty:
        return "\n".join(lines + ["No predictions.", ""])
    shown = pd.DataFrame({
        "external set": table["external_set"], "model": table["arch"], "origin": table["origin"],
        "representation": table["representation"],
        "internal": [_ci(r.internal_accuracy, r.internal_ci_low, r.internal_ci_high) for r in table.itertuples()],
        "external": [_ci(r.external_accuracy, r.external_ci_low, r.external_ci_high) for r in table.itertuples()],
        "gap": [_ci(r.gap, r.gap_ci_low, r.gap_ci_high) for r in table.itertuples()],
        "drop": table["drop"]})
    return "\n".join(lines + [shown.to_markdown(index=False), ""])


def _read(paths) -> pd.DataFrame:
    return pd.concat([read_table(path) for path in paths], ignore_index=True)


def write_external_table(name: str, arch: str, prediction_csv, out_csv, out_md, description: str,
                         representations=REPRESENTATIONS, n_boot: int = 1000, boot_seed: int = 0,
                         level: float = 0.95) -> pd.DataFrame:
    """The external_table job: external_{name}_{arch}.csv and its Markdown."""
    predictions = read_table(prediction_csv)
    imported = arch in imported_names(predictions)
    predictions = as_own_rows(predictions)
    table = external_table(predictions[predictions["arch"] == arch], representations, n_boot, boot_seed, level)
    if not table.empty:
        table.insert(0, "external_set", name)
    write_csv_atomic(table, out_csv)
    write_text_atomic(out_md, external_markdown(name, arch, table, description, n_boot, level, imported))
    return table


def write_generalisation_table(internal_csvs, external_csvs: dict, archs, reps, out_csv, out_md,
                               descriptions: dict[str, str], n_boot: int = 1000, boot_seed: int = 0,
                               level: float = 0.95) -> pd.DataFrame:
    """The external_generalisation job. `external_csvs`: set name -> its prediction files."""
    table = generalisation_rows(_read(internal_csvs), {name: _read(paths) for name, paths in external_csvs.items()},
                                archs, reps, n_boot, boot_seed, level)
    write_csv_atomic(table, out_csv)
    write_text_atomic(out_md, generalisation_markdown(table, descriptions, n_boot, level))
    return table
