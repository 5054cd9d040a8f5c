"""The preprocessed image store: every image decoded once, to 8-bit gray, at a fixed long side.

Layout: ``pixels.npy`` is one flat uint8 array (memory-mappable) holding all images back to
back; the index CSV beside it gives each image's ``offset``, ``height`` and ``width`` plus its
metadata (patient, label, source, partition). Later stages read images with
:class:`ImageStore` and never decode the originals again.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Problem
from ..io import atomic_path, read_table, write_csv_atomic
from .decode import dataset_bits, decode_gray, resize_long_side, scale_to_uint8
from .dicom import is_dicom

INDEX_COLUMNS = ("offset", "height", "width", "orig_height", "orig_width")


def _load_one(path: Path, long_side: int, bits_stored: int | None, dicom_window=None):
    """(gray resized, 8 or 16-bit as stored; original shape; peak; pixels above 2**bits_stored - 1), or the error."""
    try:
        gray = decode_gray(path, dicom_window)
    except (OSError, ValueError) as error:
        return None, str(error)
    clipped = int(np.count_nonzero(gray > 2**bits_stored - 1)) if bits_stored and gray.dtype == np.uint16 else 0
    return (resize_long_side(gray, long_side), gray.shape, int(gray.max()), clipped), None


def write_store(frame: pd.DataFrame, image_dir: str | Path, long_side: int, pixels_path: str | Path,
                threads: int = 1, progress: bool = True, bits_stored: int | None = None,
                dicom_window=None) -> tuple[pd.DataFrame, list[Problem]]:
    """Decode every image of `frame` into the store at `pixels_path`.

    Returns the frame of images that decoded (with the index columns added, and ``raw_bits``,
    ``raw_peak``, ``raw_clipped`` for :func:`~hideseek.data.decode.bit_depth_note`) and one
    :class:`Problem` per image that is missing or does not decode. 16-bit images are all scaled
    by one depth, :func:`~hideseek.data.decode.dataset_bits` (`bits_stored`, else found from
    every image's peak): they are resized as 16-bit and kept so in a temporary file until every
    peak is known, so each image is read once. The store file is written atomically; it holds
    only the images that decoded, so a caller that rejects the problems simply deletes it.
    DICOM images take `dicom_window` (:func:`~hideseek.data.dicom.decode_dicom`).
    """
    from tqdm import tqdm

    paths = [Path(image_dir) / name for name in frame["filename"]]
    problems: list[Problem] = []
    decoded = []
    pixels_path = Path(pixels_path)
    pixels_path.parent.mkdir(parents=True, exist_ok=True)
    # Not an output: removed below; the store itself goes through atomic_path.
    raw_fd, raw_name = tempfile.mkstemp(prefix=f".{pixels_path.name}.", suffix=".raw", dir=pixels_path.parent)
    raw_path = Path(raw_name)
    try:
        # pydicom and the pylibjpeg decoders hold the GIL: DICOM images are decoded in processes,
        # forked (spawn or forkserver would run a Snakemake script's __main__ again in each one)
        pool = (ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("fork"))
                if threads > 1 and any(map(is_dicom, paths)) else ThreadPoolExecutor(max(1, threads)))
        load = partial(_load_one, long_side=long_side, bits_stored=bits_stored, dicom_window=dicom_window)
        with os.fdopen(raw_fd, "wb") as raw, pool:
            results = pool.map(load, paths, chunksize=8)
            for position, (loaded, error) in enumerate(
                    tqdm(results, total=len(paths), desc="decoding images", unit="img", disable=not progress)):
                if error is not None:
                    row = frame.iloc[position]
                    problems.append(Problem(row["split_file"], int(row["line"]), error))
                    continue
                pixels, orig_shape, peak, clipped = loaded
                raw.write(pixels.tobytes())
                decoded.append(dict(position=position, height=pixels.shape[0], width=pixels.shape[1],
                                    orig_height=orig_shape[0], orig_width=orig_shape[1],
                                    raw_bits=8 * pixels.itemsize, raw_peak=peak, raw_clipped=clipped))
        decoded = pd.DataFrame(decoded, columns=["position", "height", "width", "orig_height", "orig_width",
                                                 "raw_bits", "raw_peak", "raw_clipped"]).astype(np.int64)
        decoded.insert(1, "offset", (decoded["height"] * decoded["width"]).cumsum().shift(fill_value=0))
        bits = dataset_bits(decoded.loc[decoded["raw_bits"] == 16, "raw_peak"], bits_stored)
        _raw_to_npy(raw_path, pixels_path, decoded, bits)
    finally:
        raw_path.unlink(missing_ok=True)
    kept = frame.iloc[decoded["position"]].reset_index(drop=True)
    for column in decoded.columns[1:]:
        kept[column] = decoded[column].to_numpy()
    return kept, problems


def _raw_to_npy(raw_path: Path, npy_path: Path, decoded: pd.DataFrame, bits: int) -> None:
    """The temporary file's images (8 or 16-bit, back to back) as one 1-D uint8 .npy, 16-bit
    ones scaled by ``2**bits - 1``; streamed image by image, then moved into place."""
    length = int((decoded["height"] * decoded["width"]).sum())
    with atomic_path(npy_path) as tmp:
        with open(tmp, "wb") as out, open(raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": (length,)})
            for size, raw_bits in zip(decoded["height"] * decoded["width"], decoded["raw_bits"]):
                dtype = np.uint16 if raw_bits == 16 else np.uint8
                image = np.frombuffer(raw.read(int(size) * np.dtype(dtype).itemsize), dtype=dtype)
                out.write(scale_to_uint8(image, bits).tobytes())


class ImageStore:
    """Read access to a store: ``store[i]`` is the uint8 gray image of index row ``i``."""

    def __init__(self, pixels_path: str | Path, index: pd.DataFrame | str | Path):
        self.pixels = np.load(pixels_path, mmap_mode="r")
        self.index = read_table(index) if isinstance(index, (str, os.PathLike)) else index
        self.index = self.index.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> np.ndarray:
        row = self.index.iloc[position]
        start, height, width = int(row["offset"]), int(row["height"]), int(row["width"])
        return np.asarray(self.pixels[start:start + height * width]).reshape(height, width)



def write_derived_store(index: pd.DataFrame, images: Iterable[np.ndarray], pixels_path: str | Path,
                        index_path: str | Path, progress: bool = False, desc: str = "writing") -> None:
    """Write images that mirror a store's index (same rows, order and shapes) as a new store.

    Each image goes to the same ``offset`` as in `index`, so the index is copied unchanged and
    :class:`ImageStore` reads the new store with it. Written atomically.
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


def check_same_layout(index: pd.DataFrame, other: pd.DataFrame) -> None:
    """Raise unless two store indexes list the same images in the same order with the same shapes."""
    columns = ["image_id", "height", "width"]
    if len(index) != len(other) or not index[columns].reset_index(drop=True).equals(other[columns].reset_index(drop=True)):
        raise ValueError("the mask store does not match the image store (rows, order or shapes differ): "
                         "rerun segment_images")
