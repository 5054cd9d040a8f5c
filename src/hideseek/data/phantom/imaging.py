"""Small image operations shared by the phantom's parts (smooth steps, blur, noise, masks)."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

EIGHT_NEIGHBOURS = np.ones((3, 3), bool)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    sd = float(noise.std())
    return noise / sd if sd > 0 else noise


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask, structure=EIGHT_NEIGHBOURS)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_polygon(points_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of a polygon given in (sub-)pixel (x, y) coordinates."""
    canvas = np.zeros((height, width), np.uint8)
    # 4 fractional bits: cv2 rasterises sub-pixel vertices exactly
    poly = np.round(points_px * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [poly], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def bounding_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) inclusive bounding box of each connected component."""
    labels, _n = ndi.label(mask, structure=EIGHT_NEIGHBOURS)
    return [(sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
            for sl in ndi.find_objects(labels) if sl is not None]
