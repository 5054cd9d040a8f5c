"""Pulmonary vessel trees: branching polylines that radiate from the hila."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import Geometry
from .imaging import blur

ROOTS_PER_LUNG = 9
GENERATIONS = 3  # roots, then two forks
MAX_STEPS = 5  # polyline steps per branch (3-5 are used)


@dataclass(frozen=True)
class Vessel:
    """One branch: a polyline in normalised coordinates and its relative width."""

    points: np.ndarray
    width: float


def draw_vessel_trees(rng: np.random.Generator) -> list[Vessel]:
    """Both lungs' trees; each generation of branches is drawn at once (vectorised)."""
    out = []
    for side in (-1, 1):
        m = ROOTS_PER_LUNG
        start = np.stack([np.full(m, side * 0.17), -0.02 + rng.uniform(-0.08, 0.1, size=m)], axis=1)
        angle = rng.uniform(-1.25, 1.45, size=m)  # 0: lateral; positive: downwards
        width = 1.0
        for depth in range(GENERATIONS):
            n_steps = rng.integers(3, 6, size=m)
            angles = angle[:, None] + np.cumsum(rng.normal(0, 0.18, size=(m, MAX_STEPS)), axis=1)
            steps = rng.uniform(0.04, 0.07, size=(m, MAX_STEPS)) * (1.0 - 0.2 * depth)
            d = np.stack([side * np.cos(angles) * steps, np.sin(angles) * steps], axis=2)
            pos = np.concatenate([start[:, None, :], start[:, None, :] + np.cumsum(d, axis=1)], axis=1)
            out.extend(Vessel(pos[i, :n_steps[i] + 1], width) for i in range(m))
            idx = np.arange(m)
            end, end_angle = pos[idx, n_steps], angles[idx, n_steps - 1]
            fork = rng.uniform(0.25, 0.6, size=(m, 2)) * np.array([-1.0, 1.0])
            start = np.repeat(end, 2, axis=0)
            angle = (end_angle[:, None] + fork).ravel()
            m *= 2
            width *= 0.65
    return out


def render_vessels(height: int, width: int, vessels: list[Vessel], geometry: Geometry) -> np.ndarray:
    """The vessel trees drawn as anti-aliased polylines, values in [0, 1]."""
    canvas = np.zeros((height, width), np.float32)
    n = min(height, width)
    # one projection for all points; 4 fractional bits for cv2's sub-pixel drawing
    points = np.concatenate([v.points for v in vessels])
    all_px = np.round(geometry.to_pixels(points, height, width) * 16).astype(np.int32)
    i = 0
    for vessel in vessels:
        seg = all_px[i:i + len(vessel.points)].reshape(-1, 1, 2)
        i += len(vessel.points)
        w = vessel.width
        cv2.polylines(canvas, [seg], False, float(w), max(1, int(round(w * n / 110.0))),
                      lineType=cv2.LINE_AA, shift=4)
    return blur(canvas, 0.6)
