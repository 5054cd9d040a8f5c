"""Segmentation sets: image folder + mask folder, paired by a file-name convention.

The convention is config (``image_regex``, ``mask_name``, ``group``), not code, so the same
function reads plain "same name" folders and Tang et al.'s augmented set, where six images
``<tag>0..5.png`` share one mask ``<tag>mask.png``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..data.decode import read_gray, read_mask
from ..errors import InputError, format_problems

log = logging.getLogger(__name__)

DEFAULT_PAIRING = dict(image_regex=r"^(?P<stem>.+)\.(png|jpg|jpeg|dcm)$", mask_name="{stem}.png", group="{stem}")


def pair_seg_folder(name: str, folder: dict) -> pd.DataFrame:
    """List (image, mask, group) pairs of one set; raise InputError listing every problem.

    A problem is a missing folder, an image without its mask, or a pattern that references a
    group the regex does not capture. Files that do not match ``image_regex`` are ignored (but
    a folder where nothing matches is an error).
    """
    folder = {**DEFAULT_PAIRING, **folder}
    images, masks = Path(folder["images"]), Path(folder["masks"])
    key = f"segmentation_data.{name}"
    for what, path in (("images", images), ("masks", masks)):
        if not path.is_dir():
            raise InputError(f"{key}.{what}: folder not found: {path}")
    try:
        regex = re.compile(folder["image_regex"], re.IGNORECASE)
    except re.error as error:
        raise InputError(f"{key}.image_regex is not a valid regex: {error}") from error
    rows, problems = [], []
    for image in sorted(images.iterdir()):
        match = regex.match(image.name)
        if not match or not image.is_file():
            continue
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            mask_name = folder["mask_name"].format(**fields)
            group = folder["group"].format(**fields)
        except KeyError as error:
            raise InputError(
                f"{key}: mask_name/group use {{{error.args[0]}}}, which image_regex does not capture "
                f"(named groups: {sorted(fields)})") from error
        mask = masks / mask_name
        if not mask.is_file():
            problems.append(f"{image}: mask not found ({mask})")
            continue
        rows.append(dict(set=name, image=str(image), mask=str(mask), group=group))
    if not rows and not problems:
        raise InputError(f"{key}: no file in {images} matches image_regex {folder['image_regex']!r}")
    if problems:
        raise InputError(format_problems(problems, f"{key}: images without a mask"))
    return pd.DataFrame(rows)


# Defaults of segmentation_data.mask_checks (the schema repeats them; a test keeps the two equal).
# Real lung masks have 1-4 regions covering ~10-50 % of the image; random noise has hundreds of
# regions, a gray photo has most pixels between its darkest and brightest level.
DEFAULT_MASK_CHECKS = dict(on_bad="fail", min_lung_fraction=0.05, max_lung_fraction=0.7, max_components=20,
                           max_gray_fraction=0.2)
# A pixel counts as gray only this far (share of the range) from both levels, so JPEG ringing
# near 0 and 255 is not mistaken for gray.
GRAY_MARGIN = 0.1
DROPPED_COLUMNS = ["set", "image", "mask", "group", "reason"]
FIX_HINT = ("Fix or replace these masks (a lung mask is a 0/255 or 0/1 image of the lungs), or loosen the limits "
            "under segmentation_data.mask_checks if these masks are right")
DROP_HINT = (", or set segmentation_data.mask_checks.on_bad: drop to leave their pairs out (they are then listed "
             "in seg_sets_dropped.csv beside seg_sets.csv).")


def gray_share(gray: np.ndarray) -> float:
    """Share of pixels clearly between the image's darkest and brightest level (see GRAY_MARGIN)."""
    low, high = int(gray.min()), int(gray.max())
    margin = GRAY_MARGIN * (high - low)
    return float(((gray > low + margin) & (gray < high - margin)).mean())


def mask_flags(gray: np.ndarray, lung: np.ndarray, checks: dict) -> list[str]:
    """Why a decoded mask (`gray`, binarised to `lung`) is not a plausible lung mask; [] if it is."""
    if not lung.any():
        return ["empty (no foreground pixel)"]
    flags = []
    fraction = float(lung.mean())
    if fraction < checks["min_lung_fraction"]:
        flags.append(f"near_empty (lung fraction {fraction:.3f} < min_lung_fraction {checks['min_lung_fraction']})")
    if fraction > checks["max_lung_fraction"]:
        flags.append(f"implausible_fraction (lung fraction {fraction:.3f} > max_lung_fraction "
                     f"{checks['max_lung_fraction']})")
    share = gray_share(gray)
    if share > checks["max_gray_fraction"]:
        flags.append(f"non_binary ({share:.0%} of pixels lie between its levels {int(gray.min())} and "
                     f"{int(gray.max())}, more than max_gray_fraction {checks['max_gray_fraction']}: a gray image, "
                     "not a mask)")
    # Background pieces too: noise denser than ~40 % is one 8-connected foreground full of holes.
    regions = cv2.connectedComponents(lung.astype(np.uint8), connectivity=8)[0] - 1
    pieces = cv2.connectedComponents((~lung).astype(np.uint8), connectivity=4)[0] - 1
    if max(regions, pieces) > checks["max_components"]:
        flags.append(f"noise_like ({regions} foreground regions, background in {pieces} pieces; max_components "
                     f"{checks['max_components']}: a lung mask has 1-4 regions and its background is one piece)")
    return flags


def _measure_mask(path: str, checks: dict) -> tuple[tuple[int, int], float, str]:
    """(shape, lung fraction, flags joined by '; ') of one mask file."""
    gray, lung = read_gray(path), read_mask(path)
    return lung.shape, float(lung.mean()), "; ".join(mask_flags(gray, lung, checks))


def check_pairs(pairs: pd.DataFrame, checks: dict | None = None) -> pd.DataFrame:
    """Decode every pair; add shape columns, the lung fraction and ``mask_flag`` (why the mask is not
    a plausible lung mask, "" if it is). Raise listing every pair that does not decode or whose
    image and mask differ in size; flagged masks are left to :func:`apply_mask_policy`."""
    checks = {**DEFAULT_MASK_CHECKS, **(checks or {})}
    problems, masks = [], {}
    for path in pairs["mask"].unique():  # once per mask file: Tang's six images share one
        try:
            masks[path] = _measure_mask(path, checks)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: {error}")
    shapes = []
    for row in pairs.itertuples(index=False):
        try:
            shape = read_gray(row.image).shape
        except (OSError, ValueError) as error:
            problems.append(f"{row.image}: {error}")
            shape = (0, 0)
        mask_shape = masks[row.mask][0] if row.mask in masks else shape
        if shape != (0, 0) and shape != mask_shape:
            problems.append(f"{row.image}: image is {shape[1]}x{shape[0]} px but its mask "
                            f"{row.mask} is {mask_shape[1]}x{mask_shape[0]} px")
        shapes.append(shape)
    if problems:
        raise InputError(format_problems(problems, "segmentation pairs that cannot be used"))
    out = pairs.copy()
    out["height"] = [s[0] for s in shapes]
    out["width"] = [s[1] for s in shapes]
    out["lung_fraction"] = [masks[m][1] for m in pairs["mask"]]
    out["mask_flag"] = [masks[m][2] for m in pairs["mask"]]
    return out


def apply_mask_policy(table: pd.DataFrame, on_bad: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split :func:`check_pairs`' table into (kept pairs, dropped pairs with their reason).

    on_bad "fail" raises an InputError listing every flagged mask once, with the images using it;
    "drop" leaves their pairs out, unless that empties a set (then it raises too).
    """
    bad = table["mask_flag"] != ""
    listing = [f"{mask}: {rows['mask_flag'].iloc[0]} (used by {len(rows)} image{'s' * (len(rows) > 1)} "
               f"of {', '.join(rows['set'].unique())})" for mask, rows in table[bad].groupby("mask", sort=False)]
    if listing and on_bad == "fail":
        raise InputError(format_problems(listing, "segmentation_data: ground-truth masks that are not plausible "
                                                  "lung masks", FIX_HINT + DROP_HINT))
    kept = table[~bad].drop(columns="mask_flag").reset_index(drop=True)
    emptied = sorted(set(table["set"]) - set(kept["set"]))
    if emptied:
        keys = ", ".join(f"segmentation_data.{name}" for name in emptied)
        raise InputError(format_problems(listing, f"{keys}: every mask is flagged, no pair is left", FIX_HINT + "."))
    if listing:
        log.warning(format_problems(listing, "segmentation pairs dropped (mask_checks.on_bad: drop)"))
    dropped = table[bad].rename(columns={"mask_flag": "reason"})[DROPPED_COLUMNS].reset_index(drop=True)
    return kept, dropped


def index_seg_sets(train: dict, test_sets: dict[str, dict], checks: dict | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All segmentation pairs (training set and every test set), checked, in one table, and the
    pairs left out by ``mask_checks.on_bad: drop`` (empty otherwise)."""
    checks = {**DEFAULT_MASK_CHECKS, **(checks or {})}
    frames = [pair_seg_folder("train", train)]
    frames += [pair_seg_folder(f"test_sets.{name}", folder) for name, folder in test_sets.items()]
    kept, dropped = apply_mask_policy(check_pairs(pd.concat(frames, ignore_index=True), checks), checks["on_bad"])
    for table in (kept, dropped):
        table["set"] = table["set"].str.replace("test_sets.", "", regex=False)
    return kept, dropped


def write_seg_index(train: dict, test_sets: dict[str, dict], out_csv, out_dropped,
                    checks: dict | None = None) -> pd.DataFrame:
    """The index_seg_sets job: :func:`index_seg_sets` written to `out_csv`, the pairs that the
    mask checks dropped to `out_dropped` (always written, empty when none)."""
    from ..io import write_csv_atomic

    table, dropped = index_seg_sets(train, test_sets, checks)
    log.info("segmentation pairs per set: %s", table.groupby("set").size().to_dict())
    write_csv_atomic(dropped, out_dropped)
    write_csv_atomic(table, out_csv)
    return table
