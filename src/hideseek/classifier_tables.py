"""Tables 3–7: one architecture, one row per representation, the paper's seven columns.

Metrics come from the 3 × 3 confusion matrix of the test predictions (rows = true class,
columns = predicted; scikit-learn's ``confusion_matrix`` with the labels in table order):
accuracy, per-class sensitivity (recall) and per-class PPV (precision). MONAI's
``ConfusionMatrixMetric`` is multi-label (one-vs-rest per channel) and is not used.

With several seeds, a table cell is the mean over seeds. Every cell also gets a percentile
bootstrap 95 % CI (test images resampled with replacement, the same resample for every
seed), and each representation's accuracy is compared with the ``data`` row by an exact
McNemar test on the same test images (discordant pairs pooled over seeds).

The Markdown sets the paper's values (Sadre et al. 2021, COVIDx5 test set) beside ours; the
paper selected every model's epoch on its test set, ours on a validation split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import CLASSES
from .io import write_csv_atomic, write_text_atomic

REPRESENTATIONS = ("data", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out")
METRICS = ("Accuracy", "Sens normal", "Sens pneumonia", "Sens COVID-19",
           "PPV normal", "PPV pneumonia", "PPV COVID-19")
TABLE_NUMBERS = {"covidnet_cxr3a": 3, "covidnet_cxr4a": 4, "alexnet": 5, "vgg11": 6, "resnet50": 7}
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
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(list(true), list(predicted), labels=list(CLASSES))


def metrics_from_confusion(cm: np.ndarray) -> dict:
    """The seven table columns from a confusion matrix (NaN where a denominator is 0)."""
    cm = np.asarray(cm, dtype=float)
    diag = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = diag / cm.sum(axis=1)
        ppv = diag / cm.sum(axis=0)
        accuracy = diag.sum() / cm.sum()
    out = {"Accuracy": float(accuracy)}
    out.update({f"Sens {c}": float(v) for c, v in zip(CLASSES, sens)})
    out.update({f"PPV {c}": float(v) for c, v in zip(CLASSES, ppv)})
    return out


def _codes(values) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(CLASSES)}
    return np.array([lookup[v] for v in values], dtype=np.int64)


def _batched_metrics(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Metrics for many resamples at once: true/pred (R, N) class codes -> (R, 7)."""
    k = len(CLASSES)
    flat = true * k + pred + (np.arange(true.shape[0]) * k * k)[:, None]
    cm = np.bincount(flat.ravel(), minlength=true.shape[0] * k * k).reshape(-1, k, k).astype(float)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = diag.sum(1) / cm.sum((1, 2))
        sens = diag / cm.sum(2)
        ppv = diag / cm.sum(1)
    return np.column_stack([acc, sens, ppv])


def table_rows(predictions: pd.DataFrame, representations=REPRESENTATIONS, n_boot: int = 1000,
               boot_seed: int = 0) -> pd.DataFrame:
    """One row per representation (trained and tested on it): mean metrics over seeds,
    bootstrap 95 % CIs and the McNemar p-value of accuracy against the ``data`` row."""
    own = predictions[predictions["train_rep"] == predictions["test_rep"]]
    rows, correct_by_rep = [], {}
    rng = np.random.default_rng(boot_seed)
    resample = None
    for rep in representations:
        sub = own[own["train_rep"] == rep]
        if sub.empty:
            continue
        seeds = sorted(sub["seed"].unique())
        per_seed = [sub[sub["seed"] == s].sort_values("image_id") for s in seeds]
        ids = per_seed[0]["image_id"].to_numpy()
        for frame in per_seed[1:]:
            if not np.array_equal(frame["image_id"].to_numpy(), ids):
                raise ValueError(f"{rep}: seeds were evaluated on different test images")
        point = np.nanmean([list(metrics_from_confusion(confusion(f["true"], f["predicted"])).values())
                            for f in per_seed], axis=0)
        if resample is None or resample.shape[1] != len(ids):
            resample = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        boot = np.nanmean([_batched_metrics(_codes(f["true"])[resample], _codes(f["predicted"])[resample])
                           for f in per_seed], axis=0)
        with np.errstate(invalid="ignore"):
            low, high = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)
        row = {"representation": rep, "n_seeds": len(seeds), "n_test": len(ids)}
        row.update(dict(zip(METRICS, point)))
        for name, lo, hi in zip(METRICS, low, high):
            row[f"{name} CI low"], row[f"{name} CI high"] = lo, hi
        rows.append(row)
        correct_by_rep[rep] = (ids, np.stack([(f["true"] == f["predicted"]).to_numpy() for f in per_seed]))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["McNemar p vs data"] = [mcnemar_vs(correct_by_rep, rep) for rep in table["representation"]]
    return table


def mcnemar_vs(correct_by_rep: dict, rep: str, reference: str = "data") -> float:
    """Exact McNemar p-value (two-sided binomial test on discordant pairs) of `rep` vs `reference`."""
    from scipy.stats import binomtest

    if rep == reference or reference not in correct_by_rep:
        return float("nan")
    ids_a, a = correct_by_rep[reference]
    ids_b, b = correct_by_rep[rep]
    if not np.array_equal(ids_a, ids_b) or a.shape != b.shape:
        return float("nan")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def _fmt(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def _bold_best(frame: pd.DataFrame, columns) -> pd.DataFrame:
    """Format numbers; the best (highest) value of each column in bold, ties all bold."""
    out = frame.copy()
    for col in columns:
        values = frame[col].astype(float)
        best = np.round(values.max(), 3) if values.notna().any() else None
        out[col] = [f"**{_fmt(v)}**" if best is not None and not np.isnan(v) and np.round(v, 3) == best else _fmt(v)
                    for v in values]
    return out


def render_markdown(arch: str, table: pd.DataFrame, dataset: str, run_note: str = "") -> str:
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
    ours = _bold_best(table, METRICS)
    ours = ours[["representation", *METRICS]]
    ci = [f"{_fmt(r['Accuracy CI low'])}–{_fmt(r['Accuracy CI high'])}" for _, r in table.iterrows()]
    ours.insert(2, "Accuracy 95% CI", ci)
    ours["p vs data"] = [_fmt(v) for v in table["McNemar p vs data"]]
    lines += [ours.to_markdown(index=False), ""]
    n_seeds = int(table["n_seeds"].max())
    lines.append(f"{int(table['n_test'].iloc[0])} test images"
                 + (f"; mean of {n_seeds} seeds" if n_seeds > 1 else "")
                 + ". CI: bootstrap over test images (1000 resamples). p vs data: exact McNemar test of "
                 "accuracy against the `data` row on the same test images.")
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
                  formatted.to_markdown(index=False), "",
                  "† The paper's values: COVIDx5 test set (100 images per class), each model's epoch "
                  "**selected on the test set** (the seed code's model selection), one run. Bold: best per "
                  "column within each run. Ours differ in data"
                  + (" (the built-in phantom, not COVIDx5)" if "phantom" in dataset else "")
                  + ", scale and selection; compare the pattern across rows, not the numbers.", ""]
    return "\n".join(lines)


def write_classifier_table(arch: str, prediction_files, out_csv, out_md, dataset: str,
                           representations=REPRESENTATIONS, run_note: str = "") -> pd.DataFrame:
    predictions = pd.concat([pd.read_csv(path) for path in prediction_files], ignore_index=True)
    predictions = predictions[predictions["arch"] == arch]
    table = table_rows(predictions, representations)
    write_csv_atomic(table, out_csv)
    write_text_atomic(out_md, render_markdown(arch, table, dataset, run_note))
    return table
