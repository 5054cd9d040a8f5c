"""Image size and patient positioning: the normalised (u, v) grid every part is drawn on.

u runs from -1 (image left, the patient's right) to 1, v from -1 (top) to 1 (bottom),
before the case's rotation, shift and zoom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ASPECT_RANGE = (0.85, 1.25)  # height / width
MIN_SIDE = 16


def case_size(rng: np.random.Generator, long_side) -> tuple[int, int]:
    """(height, width): long side uniform in `long_side`, aspect h/w in [0.85, 1.25]."""
    lo, hi = int(long_side[0]), int(long_side[1])
    long = int(rng.integers(lo, hi + 1))
    aspect = float(rng.uniform(*ASPECT_RANGE))
    if aspect >= 1.0:
        return long, max(MIN_SIDE, int(round(long / aspect)))
    return max(MIN_SIDE, int(round(long * aspect))), long


@dataclass(frozen=True)
class Geometry:
    """Patient positioning: rotation (degrees), shift (fractions of the image) and zoom."""

    angle: float
    shift_x: float
    shift_y: float
    zoom: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Geometry:
        return cls(angle=rng.uniform(-4.0, 4.0), shift_x=rng.uniform(-0.03, 0.03),
                   shift_y=rng.uniform(-0.03, 0.03), zoom=rng.uniform(0.94, 1.05))

    def grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (u, v) coordinates of every pixel."""
        y = np.arange(height, dtype=np.float32)[:, None] - (height - 1) / 2.0 - self.shift_y * height
        x = np.arange(width, dtype=np.float32)[None, :] - (width - 1) / 2.0 - self.shift_x * width
        t = math.radians(self.angle)
        c, s = math.cos(t), math.sin(t)
        xr = c * x + s * y
        yr = -s * x + c * y
        u = (xr / (self.zoom * width / 2.0)).astype(np.float32)
        v = (yr / (self.zoom * height / 2.0)).astype(np.float32)
        return u, v

    def to_pixels(self, points: np.ndarray, height: int, width: int) -> np.ndarray:
        """Inverse of `grid`: normalised (u, v) points -> pixel (x, y)."""
        t = math.radians(self.angle)
        c, s = math.cos(t), math.sin(t)
        xr = points[:, 0] * self.zoom * width / 2.0
        yr = points[:, 1] * self.zoom * height / 2.0
        x = c * xr - s * yr + (width - 1) / 2.0 + self.shift_x * width
        y = s * xr + c * yr + (height - 1) / 2.0 + self.shift_y * height
        return np.stack([x, y], axis=1)
