"""Connected components of lung masks: the two lungs, and the tight box around each.

Used by the segmentation post-processing (keep the two largest components), by the
representations (the lung box) and by the audit (lung attention in the box).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


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
