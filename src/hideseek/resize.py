"""The one resize rule for images, masks and maps: area averaging when shrinking, bilinear
when enlarging (OpenCV), nearest neighbour for label masks; same size returns the input."""

from __future__ import annotations

import cv2
import numpy as np


def resize(image: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    """`image` (2-D) resized to `height` × `width`."""
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    if nearest:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if height * width < image.shape[0] * image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)
