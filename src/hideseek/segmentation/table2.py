"""Table 2: lung segmentation quality on the test sets, beside the paper's.

Definitions (Sadre et al. 2021, Table 2): for each class c ∈ {background, lung}, with class c
as the positive class and counts over the pixels of one image, recall = TP/(TP+FN),
precision = TP/(TP+FP), Jaccard = TP/(TP+FP+FN), F1 = 2TP/(2TP+FP+FN) and pixel accuracy
= (TP+TN)/N (the same for both classes). Each metric is computed per image, then averaged
over the images of a test set. A ratio whose denominator is 0 (e.g. precision of an empty
prediction) is undefined for that image and left out of the average; ``n_undefined`` counts
such images and ``n_averaged`` the images a mean is over; the Markdown table gives that number
wherever it is not the whole set. Dice and the 95 % Hausdorff distance (in pixels of the test
image) come from MONAI. Masks are scored at the test image's own resolution, after the full inference
pipeline (resize back, largest components), as they are used downstream.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..data.decode import read_gray, read_mask
from ..io import read_table, write_csv_atomic, write_text_atomic
from ..stats import bootstrap_weights, mean_ci

log = logging.getLogger(__name__)

SEG_CLASSES = ("background", "lung")
METRICS = ("recall", "precision", "jaccard", "f1", "accuracy", "dice", "hd95")
MONAI_NAMES = dict(recall="sensitivity", precision="precision", jaccard="threat score", f1="f1 score",
                   accuracy="accuracy")
LABELS = dict(recall="Recall", precision="Precision", jaccard="Jaccard", f1="F1", accuracy="Accuracy",
              dice="Dice (MONAI)", hd95="HD95 (px, MONAI)")

# Sadre et al. 2021, Table 2 (U-Net at 512 px; NIH: 100 images, Cohen: 206 images).
PAPER_TABLE2 = {
    ("NIH", "background"): dict(recall=0.981, precision=0.991, jaccard=0.973, f1=0.986, accuracy=0.979),
    ("NIH", "lung"): dict(recall=0.968, precision=0.934, jaccard=0.906, f1=0.95, accuracy=0.979),
    ("Cohen", "background"): dict(recall=0.971, precision=0.971, jaccard=0.945, f1=0.971, accuracy=0.958),
    ("Cohen", "lung"): dict(recall=0.919, precision=0.923, jaccard=0.854, f1=0.918, accuracy=0.958),
}
PAPER_IMAGES = dict(NIH=100, Cohen=206)


def _one_hot(mask: np.ndarray):
    import torch

    lung = torch.from_numpy(np.asarray(mask, dtype=bool)).float()[None, None]
    return torch.cat([1 - lung, lung], dim=1)


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[tuple[str, str], float]:
    """Every Table 2 metric of one image: {(class, metric): value}; NaN where undefined."""
    import warnings

    from monai.metrics import DiceMetric, HausdorffDistanceMetric, compute_confusion_matrix_metric, get_confusion_matrix

    if pred.shape != truth.shape:
        raise ValueError(f"prediction is {pred.shape} but the truth is {truth.shape}")
    y_pred, y = _one_hot(pred), _one_hot(truth)
    matrix = get_confusion_matrix(y_pred, y, include_background=True)
    values = {}
    for name, monai_name in MONAI_NAMES.items():
        per_class = compute_confusion_matrix_metric(monai_name, matrix)[0]
        for index, cls in enumerate(SEG_CLASSES):
            values[(cls, name)] = float(per_class[index])
    dice = DiceMetric(include_background=True, reduction="none", ignore_empty=True)(y_pred, y)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns (and returns nan/inf) when a class is empty
        hd95 = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(y_pred, y)[0]
    for index, cls in enumerate(SEG_CLASSES):
        values[(cls, "dice")] = float(dice[index])
        distance = float(hd95[index])
        values[(cls, "hd95")] = distance if np.isfinite(distance) else float("nan")
    return values


def evaluate_sets(segmenter, pairs: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """Per-image metrics of `segmenter` on every test set in `pairs` (rows with set != train).

    One row per (set, image, class) with one column per metric.
    """
    from tqdm import tqdm

    test = pairs[pairs["set"] != "train"].reset_index(drop=True)
    images = (read_gray(path) for path in test["image"])
    rows = []
    predictions = segmenter.segment(images)
    for row, (_, pred) in tqdm(zip(test.itertuples(index=False), predictions), total=len(test),
                               desc="scoring test sets", unit="img", disable=not progress, mininterval=2.0):
        truth = read_mask(row.mask)
        values = image_metrics(pred, truth)
        for cls in SEG_CLASSES:
            rows.append(dict(set=row.set, image=row.image, height=truth.shape[0], width=truth.shape[1], **{
                "class": cls, **{metric: values[(cls, metric)] for metric in METRICS}}))
    return pd.DataFrame(rows, columns=["set", "image", "height", "width", "class", *METRICS])


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over images (NaNs dropped; each image is its own unit)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    weights = bootstrap_weights(np.arange(len(values)), np.zeros(len(values)), n_boot, seed)
    _, low, high = mean_ci(values, weights, level)
    return low, high


def summarize(per_image: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Table 2, long format: set, class, metric, mean (over images), 95 % bootstrap CI, counts."""
    rows = []
    for (set_name, cls), frame in per_image.groupby(["set", "class"], sort=False):
        for metric in METRICS:
            values = frame[metric].to_numpy(float)
            finite = np.isfinite(values)
            low, high = bootstrap_ci(values, seed=seed)
            rows.append(dict(set=set_name, **{"class": cls}, metric=metric,
                             value=float(values[finite].mean()) if finite.any() else float("nan"),
                             ci_low=low, ci_high=high, n_images=int(len(values)),
                             n_undefined=int((~finite).sum()), n_averaged=int(finite.sum())))
    return pd.DataFrame(rows)


def _paper_key(set_name: str) -> str | None:
    lowered = set_name.lower()
    return "NIH" if lowered.startswith("nih") else "Cohen" if lowered.startswith("cohen") else None


def table2_markdown(summary: pd.DataFrame, model_info: dict | None = None, dataset: str = "") -> str:
    """Our Table 2 with the paper's columns beside it."""
    sets = list(dict.fromkeys(summary["set"]))
    header = ["Metric"]
    for set_name in sets:
        header += [f"{set_name} background", f"{set_name} lung"]
    header += ["paper NIH background", "paper NIH lung", "paper Cohen background", "paper Cohen lung"]
    lookup = summary.set_index(["set", "class", "metric"])
    lines = ["# Table 2 — lung segmentation", ""]
    if dataset:
        lines += [f"Data: {dataset}.", ""]
    if model_info:
        lines += [_describe_model(model_info), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in METRICS:
        cells = [LABELS[metric]]
        for set_name in sets:
            cells += [_cell(lookup.loc[(set_name, cls, metric)], metric) for cls in SEG_CLASSES]
        for paper_set in ("NIH", "Cohen"):
            for cls in SEG_CLASSES:
                paper = PAPER_TABLE2[(paper_set, cls)].get(metric)
                cells.append("—" if paper is None else f"{paper:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    counts = ["Images (averaged unless a cell says n=…)"]
    for set_name in sets:
        n = int(lookup.loc[(set_name, "lung", "f1"), "n_images"])
        counts += [str(n), str(n)]
    for paper_set in ("NIH", "Cohen"):
        counts += [str(PAPER_IMAGES[paper_set])] * 2
    lines.append("| " + " | ".join(counts) + " |")
    lines += ["", "Each metric is computed per image with the class as the positive class, then averaged over the "
              "images (the paper's definition); pixel accuracy is the same for both classes. Dice and the 95 % "
              "Hausdorff distance (pixels of the test image) come from MONAI; the paper reports neither (—). "
              "95 % bootstrap confidence intervals are in `table2_segmentation.csv`."]
    lines += _count_notes(summary)
    matched = [s for s in sets if _paper_key(s)]
    if matched:
        lines += ["", "Paper columns: Sadre et al. 2021, Table 2 (U-Net at 512 px trained on Tang et al.'s "
                  "augmented set). Our sets named " + ", ".join(f"`{s}`" for s in matched)
                  + " stand in for theirs; on the built-in phantom they are synthetic, so the comparison is "
                  "of the pipeline, not of the data."]
    else:
        lines += ["", "Paper columns: Sadre et al. 2021, Table 2 (U-Net at 512 px, NIH and Cohen test sets), "
                  "for reference; our test sets are different images."]
    return "\n".join(lines) + "\n"


def _cell(row: pd.Series, metric: str) -> str:
    """One value, with the number of images it averages when that is not the whole set."""
    value = row["value"]
    text = "—" if not np.isfinite(value) else (f"{value:.2f}" if metric == "hd95" else f"{value:.3f}")
    n, total = int(row["n_averaged"]), int(row["n_images"])
    return text if n == total else f"{text} (n={n})"


def _count_notes(summary: pd.DataFrame) -> list[str]:
    """Notes on values that average fewer images than the set has, and on F1 and Dice averaging
    different images (MONAI's Dice leaves out an image without a true pixel of the class; F1 scores
    it 0 when the prediction has some) — per image the two are otherwise the same number."""
    notes = []
    if (summary["n_averaged"] < summary["n_images"]).any():
        notes += ["", "n=… in a cell: that mean is over n images only; the others' value is undefined "
                  "(denominator 0, e.g. the precision of an empty prediction or the HD95 of an empty mask) and "
                  "left out."]
    counts = summary.pivot_table(index=["set", "class"], columns="metric", values="n_averaged", sort=False)
    differ = counts[counts["f1"] != counts["dice"]]
    if len(differ):
        notes += ["", "F1 and Dice average different images on " + ", ".join(
            f"{s} {c} (F1 {int(r['f1'])}, Dice {int(r['dice'])})" for (s, c), r in differ.iterrows())
            + ": Dice (MONAI) leaves out an image whose true mask has no pixel of the class, F1 counts it "
            "(0 when the prediction has some), so the two columns are not comparable there."]
    return notes


def _describe_model(info: dict) -> str:
    network, meta = info.get("network", {}), info.get("meta", {})
    text = (f"U-Net (MONAI): channels {list(network.get('channels', []))}, {network.get('num_res_units')} residual "
            f"units per level, norm {network.get('norm')}, input {info.get('image_size')} px")
    if meta:
        text += (f"; trained {meta.get('epochs')} epochs on {meta.get('n_train')} images, epoch "
                 f"{meta.get('best_epoch')} selected on {meta.get('n_val')} validation images (lung Dice "
                 f"{meta.get('best_val_dice', float('nan')):.3f}); the test sets were not used for selection")
    return text + "."


def write_table2(per_image: pd.DataFrame, csv_path, md_path, per_image_path=None, model_info=None,
                 dataset: str = "") -> pd.DataFrame:
    summary = summarize(per_image)
    write_csv_atomic(summary, csv_path)
    write_text_atomic(md_path, table2_markdown(summary, model_info, dataset))
    if per_image_path is not None:
        write_csv_atomic(per_image, per_image_path)
    lung = summary[(summary["class"] == "lung") & (summary["metric"].isin(["f1", "dice"]))]
    for row in lung.itertuples():
        log.info("Table 2: %s lung %s = %.4f [%.4f, %.4f] (over %d images)", row.set, row.metric, row.value, row.ci_low,
                 row.ci_high, row.n_averaged)
    return summary


def evaluate_unet(sets_csv, model_path, inference: dict, out: dict, dataset: str = "", device: str = "auto",
                  threads: int = 1) -> pd.DataFrame:
    """The evaluate_unet job: Table 2 on every test set of `sets_csv` (seg_sets.csv). `out` holds
    the paths csv, md, per_image."""
    from .inference import LungSegmenter

    segmenter, info = LungSegmenter.from_file(model_path, inference, device, threads)
    per_image = evaluate_sets(segmenter, read_table(sets_csv))
    return write_table2(per_image, out["csv"], out["md"], out["per_image"], model_info=info, dataset=dataset)
