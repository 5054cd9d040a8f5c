"""One case: split its random generator into independent streams, draw the parameter sets
from them, and render the radiograph and its ground-truth lung mask."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from .acquisition import Acquisition
from .anatomy import Anatomy, lung_mask, render_thorax
from .config import PhantomConfig, check_label_source
from .disease import Disease
from .geometry import Geometry
from .imaging import blur, bounding_boxes
from .signature import SiteSignature


@dataclass(frozen=True)
class Streams:
    """Independent generators, one per parameter set (field order fixes the seed order), so
    which label or source is rendered never changes what the other streams draw."""

    anatomy: np.random.Generator
    geometry: np.random.Generator
    disease: np.random.Generator
    signature: np.random.Generator
    acquisition: np.random.Generator

    @classmethod
    def split(cls, rng: np.random.Generator) -> Streams:
        names = [f.name for f in fields(cls)]
        seeds = rng.integers(0, 2**63 - 1, size=len(names), dtype=np.int64)
        return cls(**{name: np.random.default_rng(int(s)) for name, s in zip(names, seeds)})


@dataclass(frozen=True)
class Case:
    """Everything that decides one image besides its size, label and source."""

    anatomy: Anatomy
    geometry: Geometry
    disease: Disease
    signature: SiteSignature
    acquisition: Acquisition

    @classmethod
    def draw(cls, streams: Streams) -> Case:
        return cls(Anatomy.draw(streams.anatomy), Geometry.draw(streams.geometry),
                   Disease.draw(streams.disease), SiteSignature.draw(streams.signature),
                   Acquisition.draw(streams.acquisition))


def render(height: int, width: int, label: str, source: str, cfg: PhantomConfig,
           case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 gray image, uint8 0/255 lung mask) of `case` as `label` imaged at `source`."""
    check_label_source(label, source)
    u, v = case.geometry.grid(height, width)
    thorax = render_thorax(u, v, case.anatomy, case.geometry)
    mask = thorax.mask
    img = blur(thorax.density, case.acquisition.blur)
    if cfg.disease_contrast != 0.0 and label != "normal":
        # softened at the mask's edge, and exactly zero outside it
        soft = mask.astype(np.float32) * blur(mask.astype(np.float32), 1.0)
        field = case.disease.field(label, u, v, case.anatomy.lungs, case.acquisition.extent)
        img = img + cfg.disease_contrast * soft * field
    img = case.acquisition.expose(img)
    # the site signature last, outside the lungs only
    signed = case.signature.apply(img, thorax.body, source, cfg.signature_strength,
                                  bounding_boxes(mask))
    img = np.where(mask, img, signed)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def render_mask(height: int, width: int, anatomy: Anatomy, geometry: Geometry) -> np.ndarray:
    """The uint8 0/255 lung mask that `render` gives for this anatomy and geometry."""
    u, v = geometry.grid(height, width)
    return lung_mask(u, v, anatomy, geometry).astype(np.uint8) * 255


def render_case(rng: np.random.Generator, height: int, width: int, label: str, source: str,
                cfg: Mapping | PhantomConfig | None) -> tuple[np.ndarray, np.ndarray]:
    """One radiograph (uint8 HxW gray) and its ground-truth lung mask (uint8 0/255).

    The rng is split into independent streams first, so the same rng state with a
    different label changes nothing outside the mask, and a different source changes
    nothing inside it."""
    return render(int(height), int(width), label, source, PhantomConfig.of(cfg),
                  Case.draw(Streams.split(rng)))
