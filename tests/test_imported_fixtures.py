"""Shared builders for the imported-model tests (tests/test_imported_*.py): tiny phantom stores
with lung masks and every representation, in the layout of the workflow's image stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hideseek.data.phantom import SOURCES
from hideseek.data.phantom.render import render_case
from hideseek.data.store import ImageStore, write_derived_store
from hideseek.representations import all_representations
from hideseek.vocabulary import CLASSES

REPS = ("data", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out")
PHANTOM = {"shortcut": 0.9, "disease_contrast": 2.0}


def phantom_stores(folder: Path, per_class: dict | None = None, size=(72, 64), seed: int = 0):
    """Stores of a tiny phantom (images per class per partition), one patient per image, the
    source the class's home site (a planted shortcut): ``(stores {rep: (pixels, index)},
    mask store (pixels, index), index frame)``."""
    per_class = per_class or {"train": 8, "val": 2, "test": 4}
    rng = np.random.default_rng(seed)
    rows, images, masks = [], [], []
    height, width = size
    for partition, n in per_class.items():
        for k, label in enumerate(CLASSES):
            for i in range(n):
                image, mask = render_case(rng, height, width, label, SOURCES[k], PHANTOM)
                image_id = f"{partition}_{k}_{i:02d}.png"
                rows.append(dict(image_id=image_id, patient_id=f"p_{partition}_{k}_{i}", label=label,
                                 source=SOURCES[k], partition=partition, height=height, width=width))
                images.append(image)
                masks.append(mask)
    index = pd.DataFrame(rows)
    index.insert(5, "offset", np.arange(len(index)) * height * width)
    folder.mkdir(parents=True, exist_ok=True)
    reps = [all_representations(image, mask > 127) for image, mask in zip(images, masks)]
    stores = {}
    for rep in REPS:
        pixels, index_csv = folder / rep / "pixels.npy", folder / rep / "images.csv"
        write_derived_store(index, (r[rep] for r in reps), pixels, index_csv)
        stores[rep] = (str(pixels), str(index_csv))
    mask_store = (str(folder / "masks" / "pixels.npy"), str(folder / "masks" / "images.csv"))
    write_derived_store(index, iter(masks), *mask_store)
    return stores, mask_store, index


def test_phantom_stores_share_one_layout(tmp_path):
    stores, mask_store, index = phantom_stores(tmp_path, {"test": 2})
    masks = ImageStore(*mask_store)
    data, removed = ImageStore(*stores["data"]), ImageStore(*stores["lungs_removed"])
    assert len(masks) == len(data) == 6 and list(data.index["image_id"]) == list(index["image_id"])
    lung = masks[0] > 127
    assert 0.05 < lung.mean() < 0.7
    assert (removed[0][lung] == 0).all() and (removed[0][~lung] == data[0][~lung]).all()
