"""Classifier inputs: a store partition read once into memory at the input size.

Every image is cropped and resized the way the seed code does it (top 8 % cut off, centre
square, resize to the input size) into one in-memory ``uint8`` tensor ``N × S × S``; batches are
indexed from it on the training device. No image is decoded during training.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.store import ImageStore
from ..errors import InputError
from ..resize import resize
from ..vocabulary import CLASSES
from .recipes import TOP_CROP

PARALLEL_LOAD_MIN = 512  # images: below this a thread pool costs more than it saves


def classifier_input(gray: np.ndarray, size: int) -> np.ndarray:
    """The seed's classifier input: crop the top 8 %, centre-crop a square, resize to `size`."""
    height, width = gray.shape
    gray = gray[int(height * TOP_CROP):, :]
    height = gray.shape[0]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize(gray[top:top + side, left:left + side], size, size)


@dataclass
class Split:
    """One partition of a store, preprocessed: ``images`` uint8 (N, S, S), ``labels`` int64 (N,)."""

    images: "torch.Tensor"  # noqa: F821
    labels: "torch.Tensor"  # noqa: F821
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


def load_split(pixels_path, index_path, partition: str, size: int,
               per_class: int | None = None, subset_seed: int = 0) -> Split:
    """Read one partition of a store into memory at the classifier's input size.

    `per_class` keeps at most that many images per class (a fixed random subset, the same
    for every architecture and seed); None keeps all.
    """
    import torch

    store = ImageStore(pixels_path, index_path)
    frame = store.index
    unknown = sorted(set(frame["label"]) - set(CLASSES))
    if unknown:
        raise InputError(f"{index_path}: unknown labels {unknown}")
    rows = np.flatnonzero((frame["partition"] == partition).to_numpy())
    if per_class is not None:
        rng = np.random.default_rng(subset_seed)
        kept = []
        for label in CLASSES:
            of_class = rows[(frame["label"].to_numpy()[rows] == label)]
            if len(of_class) > per_class:
                of_class = np.sort(rng.choice(of_class, size=per_class, replace=False))
            kept.append(of_class)
        rows = np.sort(np.concatenate(kept))
    images = np.empty((len(rows), size, size), dtype=np.uint8)

    def fill(out_row):
        out, row = out_row
        images[out] = classifier_input(store[int(row)], size)

    # OpenCV's resize releases the GIL: a few threads cut a COVIDx-sized load at 480 px (~2 ms of
    # CPU per image, single-threaded ~30 s); the pixels are the same in any order.
    workers = min(4, os.cpu_count() or 1) if len(rows) >= PARALLEL_LOAD_MIN else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, enumerate(rows)))
    sub = frame.iloc[rows].reset_index(drop=True)
    labels = torch.from_numpy(np.array([CLASSES.index(label) for label in sub["label"]], dtype=np.int64))
    return Split(images=torch.from_numpy(images), labels=labels, frame=sub)


def split_fingerprint(split: Split) -> str:
    """The image ids and ~100,000 evenly spaced pixels: a strided view, hashed without copying
    the tensor (at 480 px a COVIDx training set is 3.2 GB; ``.tobytes()`` first doubled it)."""
    digest = hashlib.sha1()
    digest.update("\n".join(map(str, split.frame["image_id"])).encode())
    flat = split.images.numpy().reshape(-1)
    digest.update(np.ascontiguousarray(flat[:: max(1, flat.size // 100_000)]).data)
    return digest.hexdigest()
