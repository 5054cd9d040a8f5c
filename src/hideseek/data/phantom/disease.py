"""Disease patterns, drawn only inside the lungs: pneumonia as one lobar consolidation,
COVID-19 as peripheral ground-glass patches.

Both patterns are always drawn, so a case's draws never depend on its label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import Lung
from .imaging import sigmoid, smooth_noise

PNEUMONIA_PEAK = 45.0  # grey levels at severity 1
COVID_PEAK = 25.0
ZONE_CENTRES = (-0.45, 0.0, 0.42)  # upper, middle, lower zone, in lung-local v
MAX_PATCHES = 6  # ground-glass patches always drawn; the first 3-6 are used


@dataclass(frozen=True)
class Harmonic:
    """One term of a closed outline's radius, 1 + sum(amplitude * cos(order * phi + phase))."""

    order: int
    amplitude: float
    phase: float


def draw_harmonics(rng: np.random.Generator, max_order: int, amplitude: float) -> list[Harmonic]:
    return [Harmonic(k, float(rng.normal(0.0, amplitude / k)), float(rng.uniform(0, 2 * np.pi)))
            for k in range(2, max_order + 1)]


def _radius(phi: np.ndarray, harmonics: list[Harmonic]) -> np.ndarray:
    r = np.ones_like(phi)
    for h in harmonics:
        r += h.amplitude * np.cos(h.order * phi + h.phase)
    return r


@dataclass(frozen=True)
class Pneumonia:
    """A consolidation in one lung: a rotated ellipse with a wobbly edge, in lung-local
    coordinates."""

    side: int  # index into Anatomy.lungs
    centre_v: float
    centre_u: float
    semi_axis_u: float
    semi_axis_v: float
    rotation: float
    outline: list[Harmonic]
    severity: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Pneumonia:
        side = int(rng.integers(0, 2))
        zone = int(rng.integers(0, 3))
        return cls(side=side, centre_v=ZONE_CENTRES[zone] + rng.uniform(-0.1, 0.1),
                   centre_u=rng.uniform(-0.25, 0.25), semi_axis_u=rng.uniform(0.5, 0.85),
                   semi_axis_v=rng.uniform(0.32, 0.55), rotation=rng.uniform(-0.6, 0.6),
                   outline=draw_harmonics(rng, 5, 0.12), severity=rng.uniform(0.15, 1.1))

    def field(self, u, v, lungs: tuple[Lung, Lung], extent: float, rng: np.random.Generator):
        dx, dy = lungs[self.side].local(u, v)
        dx, dy = dx - self.centre_u, dy - self.centre_v
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        ex = (c * dx + s * dy) / (self.semi_axis_u * extent)
        ey = (-s * dx + c * dy) / (self.semi_axis_v * extent)
        rho = np.sqrt(ex * ex + ey * ey)
        blob = sigmoid(-(rho / _radius(np.arctan2(ey, ex), self.outline) - 1.0) / 0.09)
        texture = 0.88 + 0.12 * np.tanh(smooth_noise(rng, u.shape, max(1.0, 0.02 * min(u.shape))))
        return (PNEUMONIA_PEAK * self.severity * blob * texture).astype(np.float32)


@dataclass(frozen=True)
class GroundGlassPatch:
    """A Gaussian patch in the periphery of one lung (lung-local coordinates)."""

    side: int
    lateral: float  # centre's offset from the lung's centre towards its lateral edge
    centre_v: float
    sigma_u: float
    sigma_v: float
    amplitude: float

    @classmethod
    def draw(cls, rng: np.random.Generator, side: int) -> GroundGlassPatch:
        return cls(side, rng.uniform(0.35, 0.8), rng.uniform(0.1, 0.75), rng.uniform(0.22, 0.42),
                   rng.uniform(0.3, 0.55), rng.uniform(0.6, 1.0))


@dataclass(frozen=True)
class Covid19:
    patches: list[GroundGlassPatch]
    severity: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Covid19:
        n = int(rng.integers(3, MAX_PATCHES + 1))
        # one patch in each lung at least
        sides = [0, 1] + [int(x) for x in rng.integers(0, 2, size=MAX_PATCHES - 2)]
        patches = [GroundGlassPatch.draw(rng, side) for side in sides]
        return cls(patches[:n], rng.uniform(0.2, 1.15))

    def field(self, u, v, lungs: tuple[Lung, Lung], extent: float, rng: np.random.Generator):
        acc = np.zeros(u.shape, np.float32)
        for p in self.patches:
            lung = lungs[p.side]
            dx, dy = lung.local(u, v)
            lx = dx - lung.side * p.lateral
            ly = dy - p.centre_v
            acc += p.amplitude * np.exp(-0.5 * ((lx / (p.sigma_u * extent)) ** 2
                                                + (ly / (p.sigma_v * extent)) ** 2))
        # overlapping patches saturate rather than add up
        opacity = (1.0 - np.exp(-1.6 * acc)) / (1.0 - math.exp(-1.6))
        haze = 0.7 + 0.3 * np.tanh(smooth_noise(rng, u.shape, max(1.0, 0.03 * min(u.shape))))
        return (COVID_PEAK * self.severity * opacity * haze).astype(np.float32)


@dataclass(frozen=True)
class Disease:
    pneumonia: Pneumonia
    covid: Covid19
    texture_seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Disease:
        return cls(Pneumonia.draw(rng), Covid19.draw(rng), int(rng.integers(0, 2**31)))

    def field(self, label: str, u, v, lungs: tuple[Lung, Lung], extent: float) -> np.ndarray:
        """Additive intensity of a diseased label's pattern (before contrast and masking)."""
        pattern = self.pneumonia if label == "pneumonia" else self.covid
        return pattern.field(u, v, lungs, extent, np.random.default_rng(self.texture_seed))
