"""The five image representations of ROI Hide-and-Seek (Sadre et al. 2021, Fig. 1).

Every representation starts from the same 8-bit gray image of the store and keeps its size;
hidden pixels are set to 0 (DESIGN §4):

* ``data``            -- the image itself
* ``lungs_isolated``  -- image × lung
* ``lungs_removed``   -- image × (1 − lung)
* ``lungs_framed``    -- image × box
* ``lungs_boxed_out`` -- image × (1 − box)

where ``box`` is the union of one tight bounding box per lung: the two largest connected
components (8-connectivity) of the mask, no margin. An empty mask gives an empty box (so
``lungs_removed`` and ``lungs_boxed_out`` equal the image); the mask QC decides beforehand
whether such a mask is kept (see :mod:`hideseek.segmentation.masks`).

No torch here: these run in the light data environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .data.store import check_same_layout, write_derived_store
from .io import save_figure_atomic
from .segmentation.components import lung_box
from .vocabulary import CLASSES, REPRESENTATIONS

log = logging.getLogger(__name__)

HIDDEN_VALUE = 0


# ----------------------------------------------------------------------------- representations


def represent(image: np.ndarray, mask: np.ndarray, rep: str, box: np.ndarray | None = None) -> np.ndarray:
    """One representation of a uint8 gray `image` given its bool lung `mask` (same shape)."""
    if rep not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {rep!r}; expected one of {', '.join(REPRESENTATIONS)}")
    if image.shape != mask.shape:
        raise ValueError(f"image is {image.shape} but mask is {mask.shape}")
    if rep == "data":
        return image
    mask = np.asarray(mask, dtype=bool)
    if rep in ("lungs_framed", "lungs_boxed_out") and box is None:
        box = lung_box(mask)
    region = mask if rep in ("lungs_isolated", "lungs_removed") else box
    keep_inside = rep in ("lungs_isolated", "lungs_framed")
    return np.where(region == keep_inside, image, np.uint8(HIDDEN_VALUE)).astype(np.uint8, copy=False)


def all_representations(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """All five representations of one image (the box is computed once)."""
    mask = np.asarray(mask, dtype=bool)
    box = lung_box(mask)
    return {rep: represent(image, mask, rep, box=box) for rep in REPRESENTATIONS}


# ----------------------------------------------------------------------------- stores


def write_representation(store, mask_store, rep: str, pixels_path: str | Path, index_path: str | Path,
                         progress: bool = True) -> None:
    """Write representation `rep` of every image of `store` (an ImageStore) using `mask_store`."""
    if rep == "data":
        images = (store[i] for i in range(len(store)))
    else:
        if mask_store is None:
            raise ValueError(f"representation {rep} needs the lung masks")
        check_same_layout(store.index, mask_store.index)
        images = (represent(store[i], mask_store[i] > 127, rep) for i in range(len(store)))
    write_derived_store(store.index, images, pixels_path, index_path, progress=progress, desc=rep)
    log.info("wrote %s: %d images to %s", rep, len(store), pixels_path)


# ----------------------------------------------------------------------------- Figure 1


def pick_examples(index: pd.DataFrame, qc: pd.DataFrame | None, classes: Iterable[str],
                  partition: str = "test") -> dict[str, int]:
    """One typical image per class: unflagged, in `partition` if possible, lung fraction nearest the class median."""
    picks = {}
    frame = index.reset_index(drop=True).copy()
    frame["position"] = np.arange(len(frame))
    if qc is not None:
        frame = frame.merge(qc[["image_id", "lung_fraction", "flag"]], on="image_id", how="left")
        frame["flag"] = frame["flag"].fillna("")
    else:
        frame["lung_fraction"], frame["flag"] = 0.0, ""
    for label in classes:
        rows = frame[frame["label"] == label]
        for candidates in (rows[(rows["partition"] == partition) & (rows["flag"] == "")], rows[rows["flag"] == ""], rows):
            if len(candidates):
                distance = (candidates["lung_fraction"] - candidates["lung_fraction"].median()).abs()
                picks[label] = int(candidates.loc[distance.sort_values(kind="stable").index[0], "position"])
                break
    return picks


def figure1(store, mask_store, out_png: str | Path, qc: pd.DataFrame | None = None, classes: Iterable[str] | None = None,
            partition: str = "test", dpi: int = 150) -> pd.DataFrame:
    """Figure 1: one image per class (rows); columns original, mask and the four modified versions.

    Returns the images shown (class, image_id, source, partition).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in (classes or CLASSES) if (store.index["label"] == c).any()]
    check_same_layout(store.index, mask_store.index)
    picks = pick_examples(store.index, qc, classes, partition)
    columns = ["data", "mask", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out"]
    titles = ["original (data)", "lung mask", "lungs isolated", "lungs removed", "lungs framed", "lungs boxed out"]
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(2.0 * len(columns), 2.2 * len(picks) + 0.3),
                             squeeze=False)
    shown = []
    for row, (label, position) in enumerate(picks.items()):
        image, mask = store[position], mask_store[position] > 127
        reps = all_representations(image, mask)
        reps["mask"] = mask.astype(np.uint8) * 255
        meta = store.index.iloc[position]
        shown.append(dict(label=label, image_id=meta["image_id"], source=meta["source"], partition=meta["partition"]))
        for col, name in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(reps[name], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=9)
        axes[row, 0].set_ylabel(f"{label}\n{meta['source']}", fontsize=9)
    fig.suptitle("ROI Hide-and-Seek representations (hidden pixels = 0)", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, out_png, dpi=dpi)
    return pd.DataFrame(shown)
