"""U-Net geometry: zero-pad to a centred square and resize to the network size, and back.

The same mapping serves training, Table 2 and the segmentation of the classification images.
"""

from __future__ import annotations

import numpy as np

from ..resize import resize

def pad_square(gray: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad to a centred square; return the square and the (top, left) offset of the image."""
    height, width = gray.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    if side == height == width:
        return gray, (0, 0)
    square = np.zeros((side, side), dtype=gray.dtype)
    square[top:top + height, left:left + width] = gray
    return square, (top, left)


def image_to_model(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 gray image → padded, resized uint8 square of side `size`."""
    square, _ = pad_square(gray)
    return resize(square, size, size)


def mask_to_model(mask: np.ndarray, size: int) -> np.ndarray:
    """bool mask → padded, resized (nearest neighbour) uint8 0/1 square of side `size`."""
    square, _ = pad_square(np.asarray(mask, dtype=np.uint8))
    return resize(square, size, size, nearest=True)


def model_to_image(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float map at model size → the original image geometry (resize to the padded square, crop)."""
    height, width = shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    prob = resize(prob, side, side)
    return prob[top:top + height, left:left + width]


def zscore(batch):
    """Per-image z-score of a (B, 1, H, W) float tensor."""
    flat = batch.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (batch - mean) / std
