"""Per-image acquisition jitter, the same for every class and site: detector blur, contrast,
brightness and noise, plus how far a patient's disease extends in this image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MID_GREY = 110.0  # contrast pivots about it


@dataclass(frozen=True)
class Acquisition:
    blur: float  # Gaussian sigma in px
    contrast: float
    brightness: float
    noise: float  # standard deviation in grey levels
    extent: float  # disease extent jitter between images of a patient
    noise_seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Acquisition:
        return cls(rng.uniform(0.3, 0.9), rng.uniform(0.85, 1.15), rng.uniform(-12, 12),
                   rng.uniform(2.0, 4.5), rng.uniform(0.85, 1.15), int(rng.integers(0, 2**31)))

    def expose(self, image: np.ndarray) -> np.ndarray:
        """Contrast, brightness and detector noise."""
        image = (image - MID_GREY) * self.contrast + MID_GREY + self.brightness
        noise = np.random.default_rng(self.noise_seed).standard_normal(image.shape, dtype=np.float32)
        return image + self.noise * noise
