"""Lung masks for every classification image: predicted or ground truth, with QC.

Output: a mask store in the image store's format (same rows, order and shapes as
``results/data/images.csv``; values 0/255), a QC table per image and a summary of mask area
by class and source. A mask whose area differs by class is itself a leak: the summary tests it.

QC flags (``flag`` column, ``;``-separated, empty when the mask looks like a pair of lungs):

* ``empty``          -- no lung pixel;
* ``too_small`` / ``too_large`` -- lung fraction outside [min_lung_fraction, max_lung_fraction];
* ``one_component``  -- a single lung-like component;
* ``unbalanced``     -- the smaller lung is below min_component_ratio × the larger.

What happens to a flagged mask is the config's ``qc.on_flagged`` policy:

* ``keep``       -- use it as it is (an empty mask hides nothing in lungs_removed);
* ``mean_mask``  -- replace it by the mean of the unflagged masks (in the image's own frame,
  each mask stretched to a unit square), so the representations still hide a plausible lung
  region (default);
* ``fail``       -- stop and list the flagged images.

More than ``qc.max_flagged_fraction`` flagged images stops the run whatever the policy: the
segmenter is not fit for these images.

Why the replacement can still leak the class: the mean mask averages every unflagged mask of
every class and partition, so the mask itself is computed without a label. But *which* images
get it follows the flags, and the substitute is one smooth, identical shape a classifier can
recognise: if the flag rate differs by class (on a real mini set, 7 of 8 flagged masks were
paediatric pneumonia), "has the mean mask" is a class cue in every masked representation. No
label-free substitute avoids that (``keep`` leaks through the implausible shapes instead), so
the masks are tested instead: :func:`flag_rate_difference` (flag rate by class) and
:func:`lung_fraction_difference` (area by class) here, judged at ``audit.mask_difference_alpha``
by the audit verdict, which warns before any model is judged when either differs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.decode import read_mask
from ..data.store import ImageStore, write_derived_store
from ..errors import InputError, format_problems
from ..io import write_csv_atomic, write_text_atomic
from ..resize import resize
from ..stats import bootstrap_weights, ratio_ci
from ..vocabulary import CLASSES
from .components import label_components

log = logging.getLogger(__name__)

QC_COLUMNS = ["image_id", "label", "source", "partition", "height", "width", "lung_fraction", "raw_lung_fraction",
              "n_components", "n_kept", "component_ratio", "flag", "action"]
TEMPLATE_SIDE = 64
# Random tables of the Monte Carlo Fisher test with more than two classes (p resolution 1e-4).
FLAG_TEST_RESAMPLES = 9999


def mask_qc(raw: np.ndarray, mask: np.ndarray, qc_cfg: dict) -> dict:
    """QC numbers and flags of one final mask (`raw`: before component selection)."""
    _, raw_areas = label_components(raw)
    _, areas = label_components(mask)
    areas = np.sort(areas)[::-1]
    fraction = float(mask.mean())
    ratio = float(areas[1] / areas[0]) if len(areas) >= 2 else 0.0
    flags = []
    if fraction == 0:
        flags.append("empty")
    else:
        if fraction < qc_cfg["min_lung_fraction"]:
            flags.append("too_small")
        if fraction > qc_cfg["max_lung_fraction"]:
            flags.append("too_large")
        if len(areas) < 2:
            flags.append("one_component")
        elif ratio < qc_cfg["min_component_ratio"]:
            flags.append("unbalanced")
    return dict(lung_fraction=fraction, raw_lung_fraction=float(raw.mean()), n_components=int(len(raw_areas)),
                n_kept=int(len(areas)), component_ratio=ratio, flag=";".join(flags))


def _to_template(mask: np.ndarray) -> np.ndarray:
    return resize(mask.astype(np.float32), TEMPLATE_SIDE, TEMPLATE_SIDE)


def _from_template(template: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return resize(template, shape[0], shape[1]) >= 0.5


def ground_truth_masks(index: pd.DataFrame, mask_dir: str | Path):
    """The phantom's true masks for each store image, resized (nearest) to the store shape."""
    mask_dir = Path(mask_dir)
    missing = [name for name in index["filename"] if not (mask_dir / name).is_file()]
    if missing:
        raise InputError(format_problems([f"{mask_dir / n}: ground-truth mask not found" for n in missing],
                                         "segmentation.masks is ground_truth but masks are missing"))
    for row in index.itertuples(index=False):
        truth = read_mask(mask_dir / row.filename)
        shape = (int(row.height), int(row.width))
        if truth.shape != shape:
            truth = resize(truth.astype(np.uint8), shape[0], shape[1], nearest=True) > 0
        yield truth, truth


def _qc_row(meta, raw: np.ndarray, mask: np.ndarray, qc_cfg: dict, truth: np.ndarray | None) -> dict:
    """One image's QC row; with `truth`, the mask's Dice against it."""
    if mask.shape != (int(meta["height"]), int(meta["width"])):
        raise ValueError(f"mask of {meta['image_id']} is {mask.shape}, image is {(meta['height'], meta['width'])}")
    row = dict(image_id=meta["image_id"], label=meta["label"], source=meta["source"], partition=meta["partition"],
               height=int(meta["height"]), width=int(meta["width"]), **mask_qc(raw, mask, qc_cfg))
    if truth is not None:
        total = int(truth.sum()) + int(mask.sum())
        row["dice_vs_truth"] = 2.0 * int((truth & mask).sum()) / total if total else 1.0
    row["action"] = "kept" if not row["flag"] else "pending"
    return row


def _apply_flag_policy(qc: pd.DataFrame, index: pd.DataFrame, template: np.ndarray | None, qc_cfg: dict,
                       out_pixels, out_index) -> None:
    """Stop (policy fail, or too many flagged), or keep the flagged masks, or overwrite them in
    the written store with the mean mask `template` (None: no unflagged mask to average)."""
    flagged = qc["flag"] != ""
    if not flagged.any():
        return
    share = float(flagged.mean())
    problems = [f"{r.image_id}: {r.flag} (lung fraction {r.lung_fraction:.3f})" for r in qc[flagged].itertuples()]
    policy = qc_cfg["on_flagged"]
    if policy == "fail" or share > qc_cfg["max_flagged_fraction"]:
        Path(out_pixels).unlink(missing_ok=True)
        Path(out_index).unlink(missing_ok=True)
        why = ("segmentation.qc.on_flagged is fail" if policy == "fail" else
               f"{share:.1%} of the masks are flagged, more than segmentation.qc.max_flagged_fraction "
               f"({qc_cfg['max_flagged_fraction']:.0%}): the segmenter does not fit these images")
        raise InputError(format_problems(problems, f"implausible lung masks ({why})"))
    if policy == "mean_mask" and template is None:
        raise InputError("every lung mask is flagged, so there is no mean mask to substitute "
                         "(set segmentation.qc.on_flagged: keep to use them anyway)")
    log.warning("%d of %d lung masks flagged (%s): %s", int(flagged.sum()), len(qc), policy,
                "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    if policy != "mean_mask":
        qc.loc[flagged, "action"] = "kept"
        return
    pixels = np.load(out_pixels, mmap_mode="r+")
    for position in np.flatnonzero(flagged.to_numpy()):
        meta = index.iloc[position]
        shape = (int(meta["height"]), int(meta["width"]))
        start = int(meta["offset"])
        pixels[start:start + shape[0] * shape[1]] = (_from_template(template, shape).astype(np.uint8) * 255).ravel()
    pixels.flush()
    del pixels
    qc.loc[flagged, "action"] = "replaced_by_mean_mask"


def segment_store(store: ImageStore, masks_iter, cfg: dict, out_pixels, out_index, out_qc, out_summary,
                  out_summary_md, progress: bool = True, truth_dir: str | Path | None = None) -> pd.DataFrame:
    """Write the mask store, the QC table and the summary; apply the flagged-mask policy.

    `masks_iter` yields (raw, final) bool masks in store order (from
    :meth:`hideseek.segmentation.inference.LungSegmenter.segment` or :func:`ground_truth_masks`).
    With `truth_dir` (the phantom's true masks), each predicted mask's Dice against the truth is
    added (``dice_vs_truth``) and summarised by class and source: a segmenter that is worse on
    one class is a bias the audit must know about.
    """
    index = store.index
    truths = ground_truth_masks(index, truth_dir) if truth_dir is not None else None
    rows, template_sum, n_template = [], np.zeros((TEMPLATE_SIDE, TEMPLATE_SIDE), np.float64), 0

    def finals():
        nonlocal template_sum, n_template
        for position, (raw, mask) in enumerate(masks_iter):
            row = _qc_row(index.iloc[position], raw, mask, cfg["qc"], next(truths)[1] if truths is not None else None)
            if not row["flag"]:  # the mean mask averages the unflagged ones
                template_sum += _to_template(mask)
                n_template += 1
            rows.append(row)
            yield mask.astype(np.uint8) * 255

    write_derived_store(index, finals(), out_pixels, out_index, progress=progress, desc="lung masks")
    qc = pd.DataFrame(rows, columns=QC_COLUMNS + (["dice_vs_truth"] if truths is not None else []))
    _apply_flag_policy(qc, index, template_sum / n_template if n_template else None, cfg["qc"], out_pixels, out_index)
    write_csv_atomic(qc, out_qc)
    summary = summarize_masks(qc)
    write_csv_atomic(summary, out_summary)
    write_text_atomic(out_summary_md, summary_markdown(qc, summary, cfg))
    log.info("lung masks: %d images, %d flagged, mean lung fraction %.3f", len(qc), int((qc["flag"] != "").sum()),
             qc["lung_fraction"].mean() if len(qc) else float("nan"))
    return qc


def summarize_masks(qc: pd.DataFrame) -> pd.DataFrame:
    """Mask area by class × source: images, mean/sd/median lung fraction, flagged masks."""
    grouped = qc.groupby(["label", "source"], sort=True)
    summary = grouped.agg(
        n_images=("image_id", "size"),
        lung_fraction_mean=("lung_fraction", "mean"),
        lung_fraction_sd=("lung_fraction", "std"),
        lung_fraction_median=("lung_fraction", "median"),
        n_flagged=("flag", lambda f: int((f != "").sum())),
        **({"dice_vs_truth_mean": ("dice_vs_truth", "mean")} if "dice_vs_truth" in qc else {}),
    ).reset_index()
    order = {c: i for i, c in enumerate(CLASSES)}
    return summary.sort_values(["label", "source"], key=lambda s: s.map(order) if s.name == "label" else s,
                               kind="stable").reset_index(drop=True)


def _class_order(labels) -> list[str]:
    """The classes present in `labels`: the project's order first, then any other, sorted."""
    present = set(labels)
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def _flagged(qc: pd.DataFrame) -> pd.Series:
    return qc["flag"].fillna("") != ""  # a QC table read back has NaN for an empty flag


def lung_fraction_difference(qc: pd.DataFrame) -> tuple[float, float]:
    """Kruskal-Wallis test of lung fraction across classes: (H, p). NaN if it cannot be computed."""
    from scipy.stats import kruskal

    groups = [g["lung_fraction"].to_numpy() for _, g in qc.groupby("label") if len(g) > 1]
    if len(groups) < 2 or all(np.ptp(g) == 0 for g in groups):
        return float("nan"), float("nan")
    statistic, p_value = kruskal(*groups)
    return float(statistic), float(p_value)


def flag_rate_difference(qc: pd.DataFrame, seed: int = 0) -> tuple[str, float]:
    """Fisher's test of flagged against unflagged masks across classes: (test, p). With two
    classes the exact 2 × 2 test; with more, scipy's Monte Carlo p over
    :data:`FLAG_TEST_RESAMPLES` random tables with the observed margins (a few flagged masks
    make the χ² approximation unreliable). p is NaN when nothing can differ: fewer than two
    classes, or no mask (or every mask) flagged."""
    from scipy.stats import MonteCarloMethod, fisher_exact

    table = pd.crosstab(qc["label"], _flagged(qc)).reindex(columns=[False, True], fill_value=0)
    if len(table) <= 2:
        name, method = "Fisher's exact test", None
    else:
        name = f"Fisher's exact test, Monte Carlo p over {FLAG_TEST_RESAMPLES} tables"
        method = MonteCarloMethod(n_resamples=FLAG_TEST_RESAMPLES, rng=np.random.default_rng(seed))
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return name, float("nan")
    return name, float(fisher_exact(table.to_numpy(), method=method).pvalue)


def masks_by_class(qc: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per class (every partition: the masks shape training and test images alike): images,
    flagged masks and their share, and the mean lung fraction of the segmenter's masks (before
    any replacement) with its bootstrap CI, patients resampled within class (each image its own
    patient when `qc` has no ``patient_id``)."""
    labels = qc["label"].astype(str).to_numpy()
    patients = qc["patient_id"] if "patient_id" in qc else qc["image_id"]
    weights = bootstrap_weights(patients, labels, n_boot, seed)
    fraction, flagged = qc["lung_fraction"].to_numpy(float), _flagged(qc).to_numpy()
    rows = []
    for cls in _class_order(labels):
        member = labels == cls
        mean, low, high = ratio_ci(fraction * member, member.astype(float), weights, level)
        rows.append(dict(label=cls, n_images=int(member.sum()), n_flagged=int(flagged[member].sum()),
                         flag_rate=float(flagged[member].mean()), lung_fraction_mean=mean,
                         lung_fraction_ci_low=low, lung_fraction_ci_high=high))
    return pd.DataFrame(rows)


def untested_flag_rate(qc: pd.DataFrame) -> str:
    """Why :func:`flag_rate_difference` has no p for `qc`."""
    flagged = _flagged(qc)
    if not flagged.any():
        return "no mask flagged"
    return "every mask flagged" if flagged.all() else "a single class"


def _class_tests(qc: pd.DataFrame, by_class: pd.DataFrame) -> list[str]:
    """The summary's two tests across classes, as clauses with their statistics."""
    h, p = lung_fraction_difference(qc)
    if np.isfinite(p):
        spread = (by_class["mean"].max() - by_class["mean"].min()) / max(float(qc["lung_fraction"].std()), 1e-12)
        area = f"lung fraction, Kruskal–Wallis H = {h:.2f}, p = {p:.3g} (class means {spread:.2f} pooled SD apart)"
    else:
        area = "lung fraction, Kruskal–Wallis: not computable (fewer than two classes with varying areas)"
    name, p = flag_rate_difference(qc)
    flags = f"flag rate, {name}: p = {p:.3g}" if np.isfinite(p) else f"flag rate: not tested ({untested_flag_rate(qc)})"
    return [area, flags]


def summary_markdown(qc: pd.DataFrame, summary: pd.DataFrame, cfg: dict) -> str:
    flagged = _flagged(qc)
    lines = ["# Lung masks: quality control", "",
             f"Masks: {cfg['masks']}. {len(qc)} images; {int(flagged.sum())} flagged "
             f"(policy: {cfg['qc']['on_flagged']}).", ""]
    by_class = qc.assign(flagged=flagged).groupby("label").agg(
        size=("lung_fraction", "size"), mean=("lung_fraction", "mean"), median=("lung_fraction", "median"),
        flagged=("flagged", "sum"))
    by_class = by_class.reindex(_class_order(by_class.index))
    lines += ["## Lung area by class", "",
              "| class | images | mean lung fraction | median | flagged |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {int(r['size'])} | {r['mean']:.3f} | {r['median']:.3f} | {int(r['flagged'])} "
              f"({r['flagged'] / r['size']:.1%}) |" for label, r in by_class.iterrows()]
    lines += ["", "Tests across classes (every partition): " + "; ".join(_class_tests(qc, by_class)) + ". No "
              "threshold is applied here: the audit summary (`results/audit/summary.md`) judges both at "
              "`audit.mask_difference_alpha` and warns when the masks differ by class. A mask whose area differs "
              "by class, or a flag rate that does (the flagged masks get one substitute shape under `mean_mask`, "
              "or keep implausible ones under `keep`), lets a classifier read the class from the mask itself."]
    if "dice_vs_truth" in qc:
        dice = qc.groupby("label")["dice_vs_truth"].agg(["mean", "min"])
        dice = dice.reindex([c for c in CLASSES if c in dice.index])
        lines += ["", "## Agreement with the phantom's true masks (Dice)", "", "| class | mean Dice | worst |",
                  "|---|---|---|"]
        lines += [f"| {label} | {r['mean']:.3f} | {r['min']:.3f} |" for label, r in dice.iterrows()]
    lines += ["", "## By class and source", "", summary.to_markdown(index=False, floatfmt=".3f")]
    flags = qc.loc[qc["flag"] != "", "flag"].str.split(";").explode().value_counts()
    lines += ["", "## Flags", ""]
    lines += [f"- {flag}: {count}" for flag, count in flags.items()] or ["None."]
    return "\n".join(lines) + "\n"


def write_lung_masks(pixels, index, cfg: dict, out: dict, model_path=None, truth_dir=None, device: str = "auto",
                     threads: int = 1) -> pd.DataFrame:
    """The segment_images job: masks for every store image (the phantom's truth when
    ``segmentation.masks`` is ground_truth, else the U-Net's), written with QC by
    :func:`segment_store`. On the phantom (`truth_dir`), predicted masks are also scored against
    the true ones. `out` holds the paths pixels, index, qc, summary, summary_md."""
    store = ImageStore(pixels, index)
    if cfg["masks"] == "ground_truth":
        masks, score_against = ground_truth_masks(store.index, truth_dir), None
    else:
        from .inference import LungSegmenter

        segmenter, _ = LungSegmenter.from_file(model_path, cfg["inference"], device, threads)
        masks, score_against = segmenter.segment(store[i] for i in range(len(store))), truth_dir
    return segment_store(store, masks, cfg, out["pixels"], out["index"], out["qc"], out["summary"],
                         out["summary_md"], truth_dir=score_against)
