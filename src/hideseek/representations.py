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
whether such a mask is kept (see :mod:`hideseek.lungmasks`).

No torch here: these run in the light data environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .io import atomic_path, write_csv_atomic

log = logging.getLogger(__name__)

REPRESENTATIONS = ("data", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out")
HIDDEN_VALUE = 0
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------- components


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a bool mask: (label image, areas of labels 1..n)."""
    labels, count = ndi.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels, areas


def _largest_labels(areas: np.ndarray, keep: int) -> np.ndarray:
    """Labels (1-based) of the `keep` largest components; ties go to the lower label (stable)."""
    order = np.argsort(-areas, kind="stable")[:keep]
    return np.sort(order + 1)


def keep_largest_components(mask: np.ndarray, keep: int = 2) -> np.ndarray:
    """The `keep` largest 8-connected components of `mask` (all of them if there are fewer)."""
    labels, areas = label_components(mask)
    if len(areas) <= keep:
        return labels > 0
    return np.isin(labels, _largest_labels(areas, keep))


def lung_box(mask: np.ndarray, keep: int = 2) -> np.ndarray:
    """Union of one tight bounding box per lung (the `keep` largest components), as a bool mask."""
    labels, areas = label_components(mask)
    box = np.zeros(labels.shape, dtype=bool)
    if len(areas) == 0:
        return box
    chosen = set(_largest_labels(areas, keep).tolist())
    for label, slices in enumerate(ndi.find_objects(labels), start=1):
        if label in chosen and slices is not None:
            box[slices] = True
    return box


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


def write_derived_store(index: pd.DataFrame, images: Iterable[np.ndarray], pixels_path: str | Path,
                        index_path: str | Path, progress: bool = False, desc: str = "writing") -> None:
    """Write images that mirror a store's index (same rows, order and shapes) as a new store.

    Each image goes to the same ``offset`` as in `index`, so the index is copied unchanged and
    :class:`hideseek.store.ImageStore` reads the new store with it. Written atomically.
    """
    from tqdm import tqdm

    index = index.reset_index(drop=True)
    offsets = index["offset"].to_numpy(np.int64)
    sizes = (index["height"] * index["width"]).to_numpy(np.int64)
    total = int((offsets + sizes).max()) if len(index) else 0
    with atomic_path(pixels_path) as tmp:
        pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total,))
        count = 0
        for position, image in enumerate(tqdm(images, total=len(index), desc=desc, unit="img", disable=not progress,
                                              mininterval=2.0)):
            if position >= len(index):
                raise ValueError(f"more images than index rows ({len(index)})")
            shape = (int(index.at[position, "height"]), int(index.at[position, "width"]))
            if image.shape != shape:
                raise ValueError(f"row {position} ({index.at[position, 'image_id']}): image is {image.shape}, "
                                 f"the index says {shape}")
            start = offsets[position]
            pixels[start:start + sizes[position]] = np.asarray(image, dtype=np.uint8).ravel()
            count += 1
        if count != len(index):
            raise ValueError(f"got {count} images for {len(index)} index rows")
        pixels.flush()
        del pixels
    write_csv_atomic(index, index_path)


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


def check_same_layout(index: pd.DataFrame, other: pd.DataFrame) -> None:
    """Raise unless two store indexes list the same images in the same order with the same shapes."""
    columns = ["image_id", "height", "width"]
    if len(index) != len(other) or not index[columns].reset_index(drop=True).equals(other[columns].reset_index(drop=True)):
        raise ValueError("the mask store does not match the image store (rows, order or shapes differ): "
                         "rerun segment_images")


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

    from . import CLASSES

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
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return pd.DataFrame(shown)
