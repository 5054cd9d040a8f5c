"""Tables 3–7: one architecture, one row per representation, the paper's seven columns.

Metrics come from the 3 × 3 confusion matrix of the test predictions (rows = true class,
columns = predicted, in table order): accuracy, per-class sensitivity (recall) and per-class
PPV (precision). MONAI's ``ConfusionMatrixMetric`` is multi-label (one-vs-rest per channel)
and is not used.

Every cell carries a percentile bootstrap CI from :mod:`hideseek.stats`'s resampling
(patients with replacement within each class, the same resamples for every representation
and seed). With several seeds a cell is the mean over seeds, with the SD over seeds beside
it, and its CI is the CI of that mean. Each representation's accuracy is compared with the
``data`` row on the same test images
(:func:`hideseek.audit.comparisons.representation_comparison`: paired bootstrap difference,
exact McNemar on the first seed, Holm-adjusted), so a table and ``comparison_{arch}.csv``
always agree.

The CSV's columns are snake_case (``accuracy``, ``sens_covid_19``, ``accuracy_ci_low``,
``accuracy_sd_over_seeds``, ``mcnemar_p_vs_data_holm``, ...); the paper's labels
(``Sens COVID-19``) appear only in the Markdown.

The Markdown sets the paper's values (Sadre et al. 2021, COVIDx5 test set) beside ours; the
paper selected every model's epoch on its test set, ours on a validation split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import read_table, write_csv_atomic, write_text_atomic
from ..stats import bootstrap_weights, percentile_ci
from ..vocabulary import CLASSES, REPRESENTATIONS, TABLE_NUMBERS

# The seven metrics in table order: CSV column -> the paper's label (Markdown only).
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "sens_normal": "Sens normal", "sens_pneumonia": "Sens pneumonia", "sens_covid_19": "Sens COVID-19",
    "ppv_normal": "PPV normal", "ppv_pneumonia": "PPV pneumonia", "ppv_covid_19": "PPV COVID-19",
}
METRICS = tuple(METRIC_LABELS)
# CSV column <- representation_comparison column, for the accuracy comparison with `data`.
COMPARISON_COLUMNS = {
    "accuracy_diff_vs_data": "diff_vs_data", "diff_ci_low": "diff_ci_low", "diff_ci_high": "diff_ci_high",
    "mcnemar_p_vs_data": "mcnemar_p", "mcnemar_p_vs_data_holm": "mcnemar_p_holm",
}
ARCH_TITLES = {
    "covidnet_cxr3a": "COVID-Net CXR3-A (PEPX re-implementation)",
    "covidnet_cxr4a": "COVID-Net CXR4-A (PEPX re-implementation)",
    "alexnet": "AlexNet",
    "vgg11": "VGG-11 (vgg11_bn)",
    "resnet50": "ResNet-50",
}
# Sadre et al. 2021, Tables 3–7 (COVIDx5 test set, 100 images per class; epoch chosen on test).
PAPER = {
    "covidnet_cxr3a": {
        "data": (0.91, 0.95, 0.91, 0.87, 0.896, 0.867, 0.978),
        "lungs_isolated": (0.89, 0.94, 0.82, 0.91, 0.803, 0.943, 0.948),
        "lungs_removed": (0.903, 0.96, 0.81, 0.94, 0.842, 0.931, 0.949),
        "lungs_framed": (0.917, 0.92, 0.92, 0.91, 0.868, 0.929, 0.958),
        "lungs_boxed_out": (0.847, 0.84, 0.82, 0.88, 0.8, 0.812, 0.936),
    },
    "covidnet_cxr4a": {
        "data": (0.913, 0.96, 0.89, 0.89, 0.857, 0.937, 0.957),
        "lungs_isolated": (0.903, 0.95, 0.85, 0.91, 0.848, 0.966, 0.91),
        "lungs_removed": (0.913, 0.95, 0.85, 0.94, 0.856, 0.924, 0.969),
        "lungs_framed": (0.897, 0.91, 0.89, 0.89, 0.858, 0.899, 0.937),
        "lungs_boxed_out": (0.863, 0.84, 0.83, 0.92, 0.832, 0.83, 0.929),
    },
    "alexnet": {
        "data": (0.917, 0.95, 0.89, 0.91, 0.88, 0.927, 0.948),
        "lungs_isolated": (0.887, 0.9, 0.87, 0.89, 0.857, 0.906, 0.899),
        "lungs_removed": (0.873, 0.87, 0.9, 0.85, 0.837, 0.841, 0.955),
        "lungs_framed": (0.91, 0.92, 0.9, 0.91, 0.893, 0.882, 0.958),
        "lungs_boxed_out": (0.817, 0.84, 0.76, 0.85, 0.785, 0.817, 0.85),
    },
    "vgg11": {
        "data": (0.93, 0.94, 0.92, 0.93, 0.913, 0.92, 0.959),
        "lungs_isolated": (0.92, 0.99, 0.89, 0.88, 0.868, 0.957, 0.946),
        "lungs_removed": (0.91, 0.91, 0.9, 0.92, 0.892, 0.9, 0.939),
        "lungs_framed": (0.917, 0.92, 0.89, 0.94, 0.911, 0.918, 0.922),
        "lungs_boxed_out": (0.893, 0.89, 0.88, 0.91, 0.864, 0.871, 0.948),
    },
    "resnet50": {
        "data": (0.933, 0.95, 0.93, 0.92, 0.905, 0.921, 0.979),
        "lungs_isolated": (0.917, 0.96, 0.89, 0.9, 0.873, 0.957, 0.928),
        "lungs_removed": (0.927, 0.93, 0.92, 0.93, 0.93, 0.902, 0.949),
        "lungs_framed": (0.92, 0.99, 0.87, 0.9, 0.884, 0.956, 0.928),
        "lungs_boxed_out": (0.897, 0.94, 0.86, 0.89, 0.832, 0.925, 0.947),
    },
}


def confusion(true, predicted) -> np.ndarray:
    """3 × 3 confusion matrix, rows = true class, columns = predicted, in table order."""
    return _confusion_onehot(_codes(true), _codes(predicted)).sum(0).reshape(len(CLASSES), len(CLASSES))


def metrics_from_confusion(cm: np.ndarray) -> dict:
    """The seven table columns from a confusion matrix (NaN where a denominator is 0)."""
    return dict(zip(METRICS, _metrics_from_counts(np.asarray(cm, dtype=float).reshape(1, -1))[0].tolist()))


def _codes(values) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(CLASSES)}
    try:
        return np.array([lookup[v] for v in values], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"unknown class {err.args[0]!r} in predictions; expected one of {list(CLASSES)}") from None


def _confusion_onehot(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(n, 9) one-hot of each image's confusion-matrix cell: weights @ it = resampled matrices."""
    k = len(CLASSES)
    onehot = np.zeros((len(true), k * k))
    onehot[np.arange(len(true)), true * k + predicted] = 1.0
    return onehot


def _metrics_from_counts(counts: np.ndarray) -> np.ndarray:
    """(R, 9) flattened confusion matrices -> (R, 7) metrics in METRICS order."""
    k = len(CLASSES)
    cm = counts.reshape(-1, k, k)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = diag.sum(1) / cm.sum((1, 2))
        sens = diag / cm.sum(2)
        ppv = diag / cm.sum(1)
    return np.column_stack([acc, sens, ppv])


def table_rows(predictions: pd.DataFrame, representations=REPRESENTATIONS, n_boot: int = 1000,
               boot_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per representation (trained and tested on it): metrics (mean over seeds), their
    SD over seeds, patient-bootstrap CIs, and the accuracy comparison with the ``data`` row."""
    from ..audit.comparisons import representation_comparison

    own = predictions[predictions["train_rep"] == predictions["test_rep"]]
    rows, weights, reference = [], None, None
    for rep in representations:
        sub = own[own["train_rep"] == rep]
        if sub.empty:
            continue
        seeds = sorted(sub["seed"].unique())
        per_seed = [sub[sub["seed"] == s].sort_values("image_id") for s in seeds]
        ids = per_seed[0]["image_id"].to_numpy()
        for seed, frame in zip(seeds[1:], per_seed[1:]):
            if not np.array_equal(frame["image_id"].to_numpy(), ids):
                raise ValueError(f"{rep}: seed {seed} was evaluated on other test images than seed {seeds[0]}")
        if weights is None:
            reference = (rep, ids)
            weights = bootstrap_weights(per_seed[0]["patient_id"], per_seed[0]["true"], n_boot, boot_seed)
        elif not np.array_equal(ids, reference[1]):
            raise ValueError(f"{rep}: evaluated on other test images than {reference[0]}; the rows of one "
                             "table must share a test set")
        onehots = [_confusion_onehot(_codes(f["true"]), _codes(f["predicted"])) for f in per_seed]
        points = np.stack([_metrics_from_counts(o.sum(0, keepdims=True))[0] for o in onehots])  # (S, 7)
        boot = np.nanmean(np.stack([_metrics_from_counts(weights @ o) for o in onehots]), axis=0)  # (R, 7)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(points, axis=0)
            sd = np.nanstd(points, axis=0, ddof=1) if len(seeds) > 1 else np.full(len(METRICS), np.nan)
        low, high = zip(*(percentile_ci(boot[:, j], level) for j in range(len(METRICS))))
        row = {"representation": rep, "n_seeds": len(seeds), "n_test": len(ids),
               "n_patients": per_seed[0]["patient_id"].nunique()}
        for name, m, s, lo, hi in zip(METRICS, mean, sd, low, high):
            row.update({name: m, f"{name}_sd_over_seeds": s, f"{name}_ci_low": lo, f"{name}_ci_high": hi})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    comparison = representation_comparison(predictions, list(table["representation"]), n_boot=n_boot,
                                            seed=boot_seed, level=level).set_index("train_rep")
    for ours, theirs in COMPARISON_COLUMNS.items():
        table[ours] = comparison.loc[table["representation"], theirs].to_numpy()
    return table


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def cell(value: float, low: float, high: float, sd: float = float("nan"), digits: int = 2) -> str:
    """``0.91 [0.87, 0.94]``; with several seeds ``0.91 ± 0.02 [0.87, 0.94]``."""
    if value is None or not np.isfinite(value):
        return "–"
    spread = f" ± {sd:.{digits}f}" if np.isfinite(sd) else ""
    return f"{value:.{digits}f}{spread} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _bold_best(frame: pd.DataFrame, columns, digits: int = 3, text=None) -> pd.DataFrame:
    """Format a table; the best (highest) value of each column, at the shown precision, in bold
    (ties all bold). `text(row, column)` renders a cell (default: the number)."""
    out = frame.copy().astype(object)
    for col in columns:
        values = np.round(frame[col].to_numpy(dtype=float), digits)
        best = np.nanmax(values) if np.isfinite(values).any() else np.nan
        for i, (index, v) in enumerate(zip(frame.index, values)):
            shown = text(frame.loc[index], col) if text else _fmt(frame.loc[index, col], digits)
            out.loc[index, col] = f"**{shown}**" if np.isfinite(v) and v == best else shown
    return out


def render_markdown(arch: str, table: pd.DataFrame, dataset: str, run_note: str = "", n_boot: int = 1000,
                    level: float = 0.95) -> str:
    number = TABLE_NUMBERS.get(arch)
    title = ARCH_TITLES.get(arch, arch)
    lines = [f"# Table {number} — {title}" if number else f"# {title}", ""]
    lines.append(f"Ours: trained and tested on each representation of {dataset}; epoch selected on the "
                 "validation split; test metrics from the 3 × 3 confusion matrix. **Bold**: best per column.")
    if arch.startswith("covidnet"):
        lines.append("")
        lines.append("Our COVID-Net models are PEPX re-implementations (the design of Wang et al. 2020), "
                     "not the proprietary GenSynth graphs the paper retrained.")
    if run_note:
        lines += ["", run_note]
    lines.append("")
    if table.empty:
        lines += ["No predictions.", ""]
        return "\n".join(lines)
    n_seeds = int(table["n_seeds"].max())

    def ci_cell(row, metric):
        return cell(row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], row[f"{metric}_sd_over_seeds"])

    ours = _bold_best(table, METRICS, digits=2, text=ci_cell)[["representation", *METRICS]]
    ours = ours.rename(columns=METRIC_LABELS)
    ours["p vs data (Holm)"] = [_fmt(v) for v in table["mcnemar_p_vs_data_holm"]]
    lines += [ours.to_markdown(index=False), ""]
    first = table.iloc[0]
    pct = f"{level:.0%}"
    lines.append(f"{int(first['n_test'])} test images of {int(first['n_patients'])} patients"
                 + (f"; each value is the mean ± SD over {n_seeds} seeds" if n_seeds > 1 else "")
                 + f". Brackets: {pct} bootstrap CI ({n_boot} resamples of patients, drawn with replacement "
                 "within each class; the same resamples for every row"
                 + ("; the CI of the seed mean" if n_seeds > 1 else "")
                 + "). p vs data: exact McNemar test of accuracy against the `data` row on the same test "
                 "images (first seed), Holm-adjusted over the rows; the paired CIs of the differences are in "
                 f"the CSV and in `comparison_{arch}.csv`.")
    paper = PAPER.get(arch)
    if paper:
        side = []
        for rep in table["representation"]:
            ours_row = table[table["representation"] == rep].iloc[0]
            side.append({"representation": rep, "run": "ours", **{m: ours_row[m] for m in METRICS}})
            if rep in paper:
                side.append({"representation": rep, "run": "paper †", **dict(zip(METRICS, paper[rep]))})
        side = pd.DataFrame(side)
        formatted = side.astype(object)
        for run in ("ours", "paper †"):
            mask = side["run"] == run
            formatted.loc[mask, list(METRICS)] = _bold_best(side[mask], METRICS)[list(METRICS)].to_numpy()
        lines += ["", f"## Beside the paper (Sadre et al. 2021, Table {number})", "",
                  formatted.rename(columns=METRIC_LABELS).to_markdown(index=False), "",
                  "† The paper's values: COVIDx5 test set (100 images per class), each model's epoch "
                  "**selected on the test set** (the seed code's model selection), one run, no CIs. Bold: best "
                  "per column within each run. Ours differ in data"
                  + (" (the built-in phantom, not COVIDx5)" if "phantom" in dataset else "")
                  + ", scale and selection; compare the pattern across rows, not the numbers.", ""]
    return "\n".join(lines)


def write_classifier_table(arch: str, prediction_files, out_csv, out_md, dataset: str,
                           representations=REPRESENTATIONS, run_note: str = "", n_boot: int = 1000,
                           boot_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    predictions = pd.concat([read_table(path) for path in prediction_files], ignore_index=True)
    predictions = predictions[predictions["arch"] == arch]
    table = table_rows(predictions, representations, n_boot, boot_seed, level)
    write_csv_atomic(table, out_csv)
    write_text_atomic(out_md, render_markdown(arch, table, dataset, run_note, n_boot, level))
    return table
