"""Decoding radiographs (and lung masks) to 8-bit gray, the one decode every representation starts from."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..resize import resize


class DecodeError(ValueError):
    """The file exists but is not an image we can read."""


def to_gray_uint8(pixels: np.ndarray) -> np.ndarray:
    """Convert a decoded image (8/16-bit; gray, BGR or BGRA as OpenCV returns it) to uint8 gray.

    16-bit images are scaled linearly from [0, 2**bits - 1] to [0, 255], where `bits` is the
    smallest bit depth (8..16) that holds the image's maximum: a 12-bit radiograph stored in a
    16-bit PNG keeps its full contrast, and no per-image contrast stretch is applied.
    """
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        if channels == 1:
            pixels = pixels[:, :, 0]
        elif channels == 3:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2GRAY)
        else:
            raise DecodeError(f"unsupported number of channels: {channels}")
    elif pixels.ndim != 2:
        raise DecodeError(f"unsupported image shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        peak = int(pixels.max())
        bits = max(8, min(16, peak.bit_length()))
        scaled = pixels.astype(np.float32) * (255.0 / (2**bits - 1))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    raise DecodeError(f"unsupported pixel type {pixels.dtype}")


def read_gray(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG (8- or 16-bit, gray/RGB/RGBA) as a uint8 gray array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    # np.fromfile + imdecode instead of imread: imread returns None silently on any failure.
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise DecodeError(f"empty file: {path}")
    pixels = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise DecodeError(f"not a decodable image: {path}")
    gray = to_gray_uint8(pixels)
    if min(gray.shape) < 8:
        raise DecodeError(f"image too small ({gray.shape[1]}x{gray.shape[0]} px): {path}")
    return gray


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
