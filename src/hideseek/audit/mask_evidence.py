"""The lung masks as evidence in the verdict: do the masks themselves differ by class?

Every representation but ``data`` is cut with the lung masks, so masks that differ by class (in
area, or in which images were flagged, and so got the mean mask or kept an implausible shape)
can carry the class into ``lungs_removed`` and ``lungs_boxed_out`` on their own. The tests are
those of :mod:`hideseek.segmentation.masks` (Fisher's test of the flag rate, Kruskal–Wallis of
the lung fraction) on every image of the QC table; either p below ``audit.mask_difference_alpha``
counts as a difference, and the audit summary says so before any model is judged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..segmentation.masks import flag_rate_difference, lung_fraction_difference, masks_by_class, untested_flag_rate
from ..vocabulary import CLASS_KEYS, CLASSES

MASK_COLUMNS = [
    "mask_difference_alpha", "masks_differ_by_class", "mask_flag_action", "mask_flag_test", "mask_flag_p",
    "mask_area_kruskal_h", "mask_area_p",
    *(f"{name}_{CLASS_KEYS[cls]}" for cls in CLASSES for name in ("mask_n_flagged", "mask_flag_rate")),
    *(f"lung_fraction_{CLASS_KEYS[cls]}{end}" for cls in CLASSES for end in ("", "_ci_low", "_ci_high")),
]


def _flag_action(qc: pd.DataFrame) -> str:
    """What was done with the flagged masks: replaced_by_mean_mask, kept, or none (no flag)."""
    actions = set(qc.loc[qc["flag"].fillna("") != "", "action"])
    return "replaced_by_mean_mask" if "replaced_by_mean_mask" in actions else ("kept" if actions else "none")


def mask_evidence(qc: pd.DataFrame | None, index: pd.DataFrame | None, alpha: float, *, n_boot: int = 1000,
                  seed: int = 0, level: float = 0.95) -> dict:
    """:data:`MASK_COLUMNS` from the mask QC table (None: every value NaN). The bootstrap
    resamples the patients of `index` (the image store's index) within class when it has them."""
    row = dict.fromkeys(MASK_COLUMNS, np.nan) | {"mask_difference_alpha": alpha, "masks_differ_by_class": False}
    if qc is None or qc.empty:
        return row
    if "patient_id" not in qc and index is not None and {"image_id", "patient_id"} <= set(index.columns):
        qc = qc.merge(index[["image_id", "patient_id"]], on="image_id", how="left")
    for r in masks_by_class(qc, n_boot, seed, level).itertuples():
        if r.label not in CLASS_KEYS:
            continue
        key = CLASS_KEYS[r.label]
        row.update({f"mask_n_flagged_{key}": r.n_flagged, f"mask_flag_rate_{key}": r.flag_rate,
                    f"lung_fraction_{key}": r.lung_fraction_mean, f"lung_fraction_{key}_ci_low": r.lung_fraction_ci_low,
                    f"lung_fraction_{key}_ci_high": r.lung_fraction_ci_high})
    # the test's own fixed seed, not boot_seed: the mask summary prints the same p
    row["mask_flag_test"], row["mask_flag_p"] = flag_rate_difference(qc)
    if not np.isfinite(row["mask_flag_p"]):
        row["mask_flag_test"] = f"not tested ({untested_flag_rate(qc)})"
    row["mask_area_kruskal_h"], row["mask_area_p"] = lung_fraction_difference(qc)
    row["mask_flag_action"] = _flag_action(qc)
    row["masks_differ_by_class"] = bool(row["mask_flag_p"] < alpha or row["mask_area_p"] < alpha)
    return row


FLAG_ACTIONS = {"replaced_by_mean_mask": "replaced by the mean mask", "kept": "kept as they are",
                "none": "none (no mask flagged)"}


def mask_difference_sentences(row) -> list[str]:
    """Which of the two tests finds a difference by class, one sentence each (empty: neither)."""
    alpha, found = row["mask_difference_alpha"], []
    if row["mask_flag_p"] < alpha:
        replaced = ("the flagged masks were replaced by the mean mask, so which images carry its shape is a class "
                    "cue" if row["mask_flag_action"] == "replaced_by_mean_mask" else
                    "the flagged (implausible) masks were kept, so their shapes are a class cue")
        found.append(f"The share of flagged masks differs by class ({row['mask_flag_test']}: "
                     f"p = {row['mask_flag_p']:.3g} < {alpha:g}), and {replaced}.")
    if row["mask_area_p"] < alpha:
        found.append(f"The lung fraction differs by class (Kruskal–Wallis H = {row['mask_area_kruskal_h']:.2f}, "
                     f"p = {row['mask_area_p']:.3g} < {alpha:g}).")
    return found


def _class_table(row) -> str:
    lines = ["| class | flagged masks | mean lung fraction [CI] |", "|---|---|---|"]
    for cls in CLASSES:
        key = CLASS_KEYS[cls]
        if np.isfinite(row[f"lung_fraction_{key}"]):
            lines.append(f"| {cls} | {int(row[f'mask_n_flagged_{key}'])} ({row[f'mask_flag_rate_{key}']:.1%}) | "
                         f"{row[f'lung_fraction_{key}']:.3f} [{row[f'lung_fraction_{key}_ci_low']:.3f}, "
                         f"{row[f'lung_fraction_{key}_ci_high']:.3f}] |")
    return "\n".join(lines)


def mask_section(row) -> list[str]:
    """'The lung masks' of the audit summary, from any verdict row (the values are the same in all)."""
    lines = ["## The lung masks", ""]
    if pd.isna(row["mask_flag_action"]):
        return lines + ["No mask QC table (`results/segmentation/mask_qc.csv`): the masks were not tested by class.", ""]
    alpha = row["mask_difference_alpha"]
    flag_test = (f"{row['mask_flag_test']}: p = {row['mask_flag_p']:.3g}" if np.isfinite(row["mask_flag_p"])
                 else row["mask_flag_test"])
    area_test = (f"Kruskal–Wallis H = {row['mask_area_kruskal_h']:.2f}, p = {row['mask_area_p']:.3g}"
                 if np.isfinite(row["mask_area_p"]) else "Kruskal–Wallis not computable")
    lines += ["Every image's mask (`results/segmentation/mask_qc.csv`, all partitions; the lung fraction is that of "
              "the segmenter's mask before any replacement, its CI a patient bootstrap within class):", "",
              _class_table(row), "",
              f"Tests across classes, each judged at `audit.mask_difference_alpha` = {alpha:g} (a p below it: the "
              f"masks differ by class): flag rate, {flag_test}; lung fraction, {area_test}. Flagged masks: "
              f"{FLAG_ACTIONS[row['mask_flag_action']]} (`segmentation.qc.on_flagged`).", ""]
    found = mask_difference_sentences(row)
    if found:
        lines += [f"**Warning: the lung masks differ by class.** {' '.join(found)} Every representation but "
                  "`data` is cut with these masks, so a model can read the class from the mask itself rather than "
                  "from the image: part of a `lungs_removed` or `lungs_boxed_out` accuracy above chance may come "
                  "from the masks, not from what lies outside the lungs.", ""]
    else:
        lines += [f"At p < {alpha:g} neither test finds the masks differing by class.", ""]
    return lines
