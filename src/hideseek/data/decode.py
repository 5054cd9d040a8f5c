"""Decoding radiographs (and lung masks) to 8-bit gray, the one decode every representation starts from.

16-bit images (12-bit scanners often store in 16-bit PNGs) are scaled linearly by one bit depth
per data set (:func:`dataset_bits`), never stretched per image: the same raw value gives the
same gray in every image of the data set.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..resize import resize


class DecodeError(ValueError):
    """The file exists but is not an image we can read."""


def bits_for_peak(peak: int) -> int:
    """The smallest bit depth (8..16) that holds `peak`."""
    return max(8, min(16, int(peak).bit_length()))


def dataset_bits(peaks16, bits_stored: int | None = None) -> int:
    """The one bit depth every 16-bit image of a data set is scaled by: `bits_stored` when the
    config gives it, else the smallest depth that holds the largest of the 16-bit images' peaks."""
    return bits_stored if bits_stored is not None else bits_for_peak(max(peaks16, default=0))


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """A decoded image (8/16-bit; gray, BGR or BGRA as OpenCV returns it) as 2-D gray of the same type."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise DecodeError(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 3:
        conversions = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}
        channels = pixels.shape[2]
        if channels not in conversions:
            raise DecodeError(f"unsupported number of channels: {channels}")
        pixels = pixels[:, :, 0] if channels == 1 else cv2.cvtColor(pixels, conversions[channels])
    elif pixels.ndim != 2:
        raise DecodeError(f"unsupported image shape {pixels.shape}")
    return np.ascontiguousarray(pixels)


def scale_to_uint8(gray: np.ndarray, bits: int) -> np.ndarray:
    """uint8 unchanged; uint16 scaled linearly from [0, 2**bits - 1] to [0, 255], values above clipped."""
    if gray.dtype == np.uint8:
        return gray
    scaled = gray.astype(np.float32) * (255.0 / (2**bits - 1))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_gray_uint8(pixels: np.ndarray, bits_stored: int | None = None) -> np.ndarray:
    """A decoded image as uint8 gray: 16-bit images scaled by ``2**bits_stored - 1``.

    `bits_stored` None takes the image's own depth (:func:`bits_for_peak` of its maximum): fine
    for a mask or a lone image, but images of one data set must share one depth
    (:func:`dataset_bits`), or two 12-bit images of one scanner come out at different brightness.
    No per-image contrast stretch is applied either way.
    """
    gray = to_gray(pixels)
    if gray.dtype == np.uint8:
        return gray
    return scale_to_uint8(gray, bits_stored if bits_stored is not None else bits_for_peak(gray.max()))


def decode_gray(path: str | Path, dicom_window=None) -> np.ndarray:
    """Read a PNG/JPEG (8- or 16-bit, gray/RGB/RGBA) as 2-D gray, uint8 or uint16 as stored; or a
    DICOM (``.dcm`` or the DICM preamble) through :mod:`.dicom`'s pipeline, `dicom_window` its VOI choice."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    from .dicom import decode_dicom, is_dicom  # here: .dicom imports this module

    if is_dicom(path):
        return decode_dicom(path, dicom_window)
    # np.fromfile + imdecode instead of imread: imread returns None silently on any failure.
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise DecodeError(f"empty file: {path}")
    pixels = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise DecodeError(f"not a decodable image: {path}")
    gray = to_gray(pixels)
    if min(gray.shape) < 8:
        raise DecodeError(f"image too small ({gray.shape[1]}x{gray.shape[0]} px): {path}")
    return gray


def read_gray(path: str | Path, bits_stored: int | None = None, dicom_window=None) -> np.ndarray:
    """Read an image as uint8 gray; 16-bit images scaled by `bits_stored` (see :func:`to_gray_uint8`)."""
    return to_gray_uint8(decode_gray(path, dicom_window), bits_stored)


def bit_depth_note(decoded, bits_stored: int | None) -> str:
    """One line for the ingest report: the depth 16-bit images were scaled by, and what was clipped.

    `decoded` has write_store's per-image columns ``raw_bits`` (8 or 16), ``raw_peak`` and
    ``raw_clipped`` (pixels above ``2**bits_stored - 1``).
    """
    wide = decoded[decoded["raw_bits"] == 16]
    if wide.empty:
        return f"Bit depth: all {len(decoded)} images are 8-bit, stored as they are."
    bits, peak = dataset_bits(wide["raw_peak"], bits_stored), int(wide["raw_peak"].max())
    text = (f"Bit depth: {len(wide)} of {len(decoded)} images are 16-bit, all scaled by one depth, {bits}-bit "
            f"({2**bits - 1} -> 255): ")
    if bits_stored is None:
        return text + f"the smallest that holds their largest value, {peak} (store.bits_stored not set)."
    text += f"store.bits_stored; their largest value is {peak}."
    clipped = wide[wide["raw_clipped"] > 0]
    if len(clipped):
        images = f"{len(clipped)} images have" if len(clipped) > 1 else "1 image has"
        pixels = int(clipped["raw_clipped"].sum())
        text += (f" {images} {pixels} pixel{'s' if pixels > 1 else ''} above {2**bits - 1}, clipped to "
                 "white: check store.bits_stored against the scanner's bit depth.")
    return text


def resize_long_side(gray: np.ndarray, long_side: int) -> np.ndarray:
    """Resize so the long side equals `long_side`, keeping the aspect ratio."""
    height, width = gray.shape
    scale = long_side / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == (width, height):
        return gray
    return resize(gray, new_size[1], new_size[0])


def read_mask(path: str | Path) -> np.ndarray:
    """A lung mask as bool: any 0/1 or 0/255 (or anti-aliased) gray or color image, foreground > half max."""
    gray = read_gray(path)
    peak = int(gray.max())
    return gray > (peak // 2) if peak > 0 else np.zeros(gray.shape, dtype=bool)
