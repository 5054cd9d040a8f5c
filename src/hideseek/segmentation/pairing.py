"""Segmentation sets: image folder + mask folder, paired by a file-name convention.

The convention is config (``image_regex``, ``mask_name``, ``group``), not code, so the same
function reads plain "same name" folders and Tang et al.'s augmented set, where six images
``<tag>0..5.png`` share one mask ``<tag>mask.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.decode import read_gray, read_mask
from ..errors import InputError, format_problems

DEFAULT_PAIRING = dict(image_regex=r"^(?P<stem>.+)\.(png|jpg|jpeg)$", mask_name="{stem}.png", group="{stem}")


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




def check_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Decode every pair; add shape columns and the lung fraction; raise listing every bad pair."""
    problems, shapes, fractions = [], [], []
    for row in pairs.itertuples(index=False):
        try:
            image = read_gray(row.image)
            mask = read_mask(row.mask)
        except (OSError, ValueError) as error:
            problems.append(f"{row.image}: {error}")
            shapes.append((0, 0))
            fractions.append(np.nan)
            continue
        if image.shape != mask.shape:
            problems.append(f"{row.image}: image is {image.shape[1]}x{image.shape[0]} px but its mask "
                            f"{row.mask} is {mask.shape[1]}x{mask.shape[0]} px")
        shapes.append(image.shape)
        fractions.append(float(mask.mean()))
    if problems:
        raise InputError(format_problems(problems, "segmentation pairs that cannot be used"))
    out = pairs.copy()
    out["height"] = [s[0] for s in shapes]
    out["width"] = [s[1] for s in shapes]
    out["lung_fraction"] = fractions
    return out


def index_seg_sets(train: dict, test_sets: dict[str, dict]) -> pd.DataFrame:
    """All segmentation pairs (training set and every test set), checked, in one table."""
    frames = [pair_seg_folder("train", train)]
    frames += [pair_seg_folder(f"test_sets.{name}", folder) for name, folder in test_sets.items()]
    table = check_pairs(pd.concat(frames, ignore_index=True))
    table["set"] = table["set"].str.replace("test_sets.", "", regex=False)
    return table


def write_seg_index(train: dict, test_sets: dict[str, dict], out_csv) -> pd.DataFrame:
    """The index_seg_sets job: :func:`index_seg_sets` written to `out_csv`."""
    import logging

    from ..io import write_csv_atomic

    table = index_seg_sets(train, test_sets)
    logging.getLogger(__name__).info("segmentation pairs per set: %s", table.groupby("set").size().to_dict())
    write_csv_atomic(table, out_csv)
    return table
