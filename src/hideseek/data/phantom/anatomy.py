"""Patient anatomy: its parameters (body, diaphragm, heart, spine, ribs, clavicles, lungs,
lung texture) and the density image they make, with the ground-truth lung mask.

Nothing here depends on the label or the acquisition site, so neither can move the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .geometry import Geometry
from .imaging import EIGHT_NEIGHBOURS, blur, fill_polygon, largest_component, sigmoid, smooth_noise
from .vessels import Vessel, draw_vessel_trees, render_vessels

# right-lung outline template (u: distance from the midline, v: down), clockwise from the
# apex; the base is cut by the diaphragm dome, so its points lie below it
LUNG_TEMPLATE = np.array([
    (0.27, -0.70), (0.40, -0.66), (0.53, -0.52), (0.63, -0.30), (0.69, -0.05),
    (0.73, 0.20), (0.76, 0.45), (0.79, 0.72), (0.60, 0.85), (0.35, 0.85),
    (0.12, 0.78), (0.09, 0.45), (0.09, 0.15), (0.11, -0.20), (0.16, -0.50),
], dtype=np.float64)
TEMPLATE_MEDIAL_U = 0.09  # the template's medial edge, kept fixed when a lung is scaled


@dataclass(frozen=True)
class Body:
    half_width: float
    tissue: float  # grey level the soft tissue adds at the body's thickest
    air: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Body:
        return cls(rng.uniform(0.80, 0.93), rng.uniform(95, 120), rng.uniform(10, 24))


@dataclass(frozen=True)
class Diaphragm:
    height: float  # v of the right dome's top
    left_drop: float  # the left dome (image right) sits lower
    curvature: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Diaphragm:
        return cls(rng.uniform(0.36, 0.50), rng.uniform(0.02, 0.08), rng.uniform(1.6, 2.6))

    def top(self, side: int) -> float:
        """v of the dome's top under the lung on `side` (-1: image left)."""
        return self.height + (self.left_drop if side > 0 else 0.0)


@dataclass(frozen=True)
class Heart:
    """An ellipse, rotated, cut at the diaphragm."""

    centre_u: float
    centre_v: float
    semi_axis_u: float
    semi_axis_v: float
    rotation: float
    brightness: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Heart:
        return cls(rng.uniform(0.16, 0.23), rng.uniform(0.30, 0.38), rng.uniform(0.35, 0.42),
                   rng.uniform(0.21, 0.26), rng.uniform(0.15, 0.45), rng.uniform(4, 10))


@dataclass(frozen=True)
class Spine:
    half_width: float
    brightness: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Spine:
        return cls(rng.uniform(0.05, 0.07), rng.uniform(14, 24))


@dataclass(frozen=True)
class Ribs:
    brightness: float
    spacing: float
    phase: float  # in rib periods
    curvature: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Ribs:
        return cls(rng.uniform(6, 10), rng.uniform(0.12, 0.145), rng.uniform(0, 1), rng.uniform(1.5, 2.2))


@dataclass(frozen=True)
class Clavicles:
    brightness: float
    height: float  # v of the bars at their medial end

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Clavicles:
        return cls(rng.uniform(20, 32), rng.uniform(-0.72, -0.62))


@dataclass(frozen=True)
class Haze:
    """A faint Gaussian brightening of lung texture."""

    centre_u: float
    centre_v: float
    sigma: float
    amplitude: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Haze:
        return cls(rng.uniform(-0.7, 0.7), rng.uniform(-0.4, 0.45), rng.uniform(0.08, 0.18),
                   rng.uniform(4, 10))


def catmull_rom(points: np.ndarray, n_seg: int = 8) -> np.ndarray:
    """Closed Catmull-Rom spline through points (N x 2)."""
    p0, p1 = np.roll(points, 1, axis=0), points
    p2, p3 = np.roll(points, -1, axis=0), np.roll(points, -2, axis=0)
    t = np.linspace(0.0, 1.0, n_seg, endpoint=False)[None, :, None]
    c = 0.5 * (2 * p1[:, None] + (-p0 + p2)[:, None] * t
               + (2 * p0 - 5 * p1 + 4 * p2 - p3)[:, None] * t ** 2
               + (-p0 + 3 * p1 - 3 * p2 + p3)[:, None] * t ** 3)
    return c.reshape(-1, 2)


@dataclass(frozen=True)
class Lung:
    """One lung's outline and its bounding box (centre and half extents; the bottom is the
    dome's top plus a margin, since the dome cuts the outline)."""

    side: int  # -1: image left (the patient's right), 1: image right
    outline: np.ndarray
    centre_u: float
    half_width: float
    centre_v: float
    half_height: float

    @classmethod
    def draw(cls, rng: np.random.Generator, side: int, diaphragm: Diaphragm) -> Lung:
        scale_u, scale_v = rng.uniform(0.9, 1.08), rng.uniform(0.92, 1.06)
        shift_u, shift_v = rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.03)
        pts = LUNG_TEMPLATE.copy()
        pts[:, 0] = TEMPLATE_MEDIAL_U + (pts[:, 0] - TEMPLATE_MEDIAL_U) * scale_u + shift_u
        pts[:, 1] = pts[:, 1] * scale_v + shift_v
        pts += rng.normal(0.0, 0.018, size=pts.shape)
        pts[:, 0] = np.maximum(pts[:, 0], 0.08)
        outline = catmull_rom(pts)
        outline[:, 0] *= side
        u0, u1 = float(outline[:, 0].min()), float(outline[:, 0].max())
        v0 = float(outline[:, 1].min())
        v1 = diaphragm.top(side) + 0.12
        return cls(side, outline, 0.5 * (u0 + u1), 0.5 * (u1 - u0), 0.5 * (v0 + v1), 0.5 * (v1 - v0))

    def local(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates relative to the bounding box: (-1, -1) top-left .. (1, 1)."""
        return (u - self.centre_u) / self.half_width, (v - self.centre_v) / self.half_height


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy in normalised coordinates (see geometry)."""

    body: Body
    diaphragm: Diaphragm
    heart: Heart
    lung_darkness: float
    spine: Spine
    ribs: Ribs
    clavicles: Clavicles
    vessel_contrast: float
    blotch_contrast: float
    breast: float  # brightness of the breast shadows; 0 for none
    haze: tuple[Haze, ...]
    texture_seed: int
    vessels: list[Vessel]
    lungs: tuple[Lung, Lung]  # image left, image right

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Anatomy:
        body, diaphragm, heart = Body.draw(rng), Diaphragm.draw(rng), Heart.draw(rng)
        lung_darkness = rng.uniform(62, 80)
        spine, ribs, clavicles = Spine.draw(rng), Ribs.draw(rng), Clavicles.draw(rng)
        vessel_contrast, blotch_contrast = rng.uniform(3, 5), rng.uniform(1.5, 4)
        breast = rng.uniform(8, 16) if rng.random() < 0.4 else 0.0
        haze = tuple(Haze.draw(rng) for _ in range(int(rng.integers(0, 3))))
        texture_seed = int(rng.integers(0, 2**31))
        vessels = draw_vessel_trees(rng)
        lungs = (Lung.draw(rng, -1, diaphragm), Lung.draw(rng, 1, diaphragm))
        return cls(body, diaphragm, heart, lung_darkness, spine, ribs, clavicles, vessel_contrast,
                   blotch_contrast, breast, haze, texture_seed, vessels, lungs)

    def dome(self, u: np.ndarray) -> np.ndarray:
        """v of the diaphragm at each u: a parabola under each lung."""
        right, left = (self.diaphragm.top(lung.side)
                       + self.diaphragm.curvature * (u - lung.centre_u) ** 2 * 0.5 for lung in self.lungs)
        return np.where(u < 0, right, left)


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Thorax:
    density: np.ndarray  # float32 grey levels before disease and acquisition
    mask: np.ndarray  # bool ground-truth lung mask
    body: np.ndarray  # float32 body weight in [0, 1]


@dataclass(frozen=True)
class _Frame:
    """Per-pixel quantities the parts of the thorax share."""

    u: np.ndarray
    v: np.ndarray
    abs_u: np.ndarray
    size: int  # the short side in pixels
    px: float  # one pixel in normalised units (approx.)
    half_width: np.ndarray  # of the body, per row
    roundness: np.ndarray  # 1 on the midline .. 0 at the body's edge
    body: np.ndarray
    dome: np.ndarray
    hilum: np.ndarray  # weight near the hila


def _frame(u: np.ndarray, v: np.ndarray, anatomy: Anatomy) -> _Frame:
    size = min(u.shape)
    px = 2.0 / size
    abs_u = np.abs(u)
    # cylinder-like soft tissue; the shoulders widen the top, the abdomen narrows a little
    hw = anatomy.body.half_width * (1.0 + 0.12 * sigmoid((-0.62 - v) / 0.06)
                                    - 0.05 * sigmoid((v - 0.6) / 0.1))
    roundness = np.clip(1.0 - (u / hw) ** 2, 0.0, 1.0)
    body = sigmoid((hw - abs_u) / (1.2 * px))
    hilum = np.exp(-(((abs_u - 0.2) / 0.14) ** 2 + ((v + 0.02) / 0.22) ** 2))
    return _Frame(u, v, abs_u, size, px, hw, roundness, body, anatomy.dome(u), hilum)


def _heart_mask(f: _Frame, heart: Heart) -> np.ndarray:
    cr, sr = math.cos(heart.rotation), math.sin(heart.rotation)
    hu, hv = f.u - heart.centre_u, f.v - heart.centre_v
    ellipse = ((cr * hu + sr * hv) / heart.semi_axis_u) ** 2 + ((-sr * hu + cr * hv) / heart.semi_axis_v) ** 2
    return (ellipse < 1.0) & (f.v < f.dome + 0.03)


def _lungs(f: _Frame, anatomy: Anatomy, geometry: Geometry, heart: np.ndarray):
    """(full lungs, also behind the heart; the ground-truth mask), both bool."""
    full = np.zeros(f.u.shape, bool)
    mask = np.zeros(f.u.shape, bool)
    for lung in anatomy.lungs:
        poly = fill_polygon(geometry.to_pixels(lung.outline, *f.u.shape), *f.u.shape)
        inside = largest_component(poly & (f.v < f.dome) & (f.u * lung.side > 0.05))
        full |= inside
        m = largest_component(inside & ~heart)
        m = ndi.binary_opening(m, structure=EIGHT_NEIGHBOURS)
        mask |= ndi.binary_fill_holes(largest_component(m))
    return full, mask


def _lung_darkness(f: _Frame, full: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A partly sharp edge plus a thickness-like falloff, in [0, 1]; retrocardiac lung shows
    through the heart only a little."""
    region = mask.astype(np.float32) + 0.25 * (full & ~mask)
    dark = 0.35 * blur(region, 0.8) + 0.65 * blur(region, 0.035 * f.size)
    dark = dark / max(float(blur(mask.astype(np.float32), 0.035 * f.size).max()), 1e-3)
    return np.minimum(dark, 1.0)


def _spine(f: _Frame, spine: Spine) -> np.ndarray:
    column = sigmoid((spine.half_width - f.abs_u) / (1.2 * f.px))
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * f.v / 0.105)
    return spine.brightness * column * vertebrae * f.body


def _trachea(f: _Frame) -> np.ndarray:
    trachea = sigmoid((0.026 - f.abs_u) / f.px) * sigmoid((-0.3 - f.v) / (3 * f.px))
    return 22.0 * trachea * f.body


def _ribs(f: _Frame, ribs: Ribs, lung_soft: np.ndarray) -> np.ndarray:
    """Posterior ribs: arcs that leave the spine, rise a little and descend laterally;
    anterior ribs fainter, descending medially."""
    px, au, v = f.px, f.abs_u, f.v
    thorax = f.body * sigmoid((f.dome + 0.02 - v) / (3 * px)) * sigmoid((v + 0.9) / (3 * px))
    thorax *= sigmoid((au - 0.06) / (2 * px)) * sigmoid((0.93 * f.half_width - au) / (3 * px))
    q = (v - ribs.curvature * (au - 0.22) ** 2) / ribs.spacing + ribs.phase
    posterior = sigmoid((np.cos(2 * np.pi * q) - 0.3) * 6.0)
    q2 = (v + 0.5 * au) / (ribs.spacing * 1.3) + ribs.phase * 0.7
    anterior = sigmoid((np.cos(2 * np.pi * q2) - 0.55) * 6.0) * sigmoid((au - 0.3) / (4 * px))
    return (thorax * (0.4 + 0.6 * lung_soft)
            * (ribs.brightness * posterior + 0.4 * ribs.brightness * anterior))


def _clavicles(f: _Frame, clavicles: Clavicles) -> np.ndarray:
    """Bright bars near the top, the medial end lower."""
    px, au = f.px, f.abs_u
    centre = clavicles.height - 0.2 * (au - 0.08) + 0.25 * (au - 0.35) ** 2
    bars = sigmoid((0.03 - np.abs(f.v - centre)) / px) * sigmoid((au - 0.07) / px) \
        * sigmoid((0.75 - au) / (2 * px))
    return clavicles.brightness * bars * f.body


def _lung_texture(f: _Frame, anatomy: Anatomy) -> np.ndarray:
    """Fine band-pass noise + low-frequency blotches + faint haze."""
    rng = np.random.default_rng(anatomy.texture_seed)
    shape, s0 = f.u.shape, max(0.7, 0.006 * f.size)
    fine = smooth_noise(rng, shape, s0) - 0.6 * smooth_noise(rng, shape, 3 * s0)
    blotches = smooth_noise(rng, shape, 0.05 * f.size)
    texture = (0.5 * anatomy.vessel_contrast * fine * (0.5 + 1.0 * f.hilum)
               + anatomy.blotch_contrast * blotches)
    for haze in anatomy.haze:
        texture += haze.amplitude * np.exp(-(((f.u - haze.centre_u) ** 2 + (f.v - haze.centre_v) ** 2)
                                             / (2 * haze.sigma * haze.sigma)))
    return texture


def render_thorax(u: np.ndarray, v: np.ndarray, anatomy: Anatomy, geometry: Geometry) -> Thorax:
    """The patient's density image on the (u, v) grid, with its lung mask."""
    f = _frame(u, v, anatomy)
    img = anatomy.body.air + anatomy.body.tissue * f.roundness ** 0.3 * f.body
    heart = _heart_mask(f, anatomy.heart)
    full, mask = _lungs(f, anatomy, geometry, heart)
    img = img - anatomy.lung_darkness * _lung_darkness(f, full, mask) * (1.0 - 0.3 * f.hilum)
    lung_soft = blur(full.astype(np.float32), 1.0)
    # abdomen below the domes (liver / stomach soft tissue)
    img += 30.0 * sigmoid((v - f.dome) / (1.5 * f.px)) * f.body * (0.6 + 0.4 * f.roundness)
    img += anatomy.heart.brightness * blur(heart.astype(np.float32), 1.2) * f.body
    img += _spine(f, anatomy.spine)
    img -= _trachea(f)
    img += _ribs(f, anatomy.ribs, lung_soft)
    img += _clavicles(f, anatomy.clavicles)
    if anatomy.breast > 0:  # lower-lateral brightness independent of the class (a realistic confounder)
        shadow = np.exp(-(((f.abs_u - 0.55) / 0.3) ** 2 + ((v - 0.45) / 0.2) ** 2))
        img += anatomy.breast * shadow * f.body
    img += anatomy.vessel_contrast * 2.2 * render_vessels(*u.shape, anatomy.vessels, geometry) * lung_soft
    img += _lung_texture(f, anatomy) * lung_soft
    return Thorax(img.astype(np.float32), mask, f.body.astype(np.float32))


def lung_mask(u: np.ndarray, v: np.ndarray, anatomy: Anatomy, geometry: Geometry) -> np.ndarray:
    """The ground-truth lung mask alone (bool), as render_thorax draws it."""
    f = _frame(u, v, anatomy)
    return _lungs(f, anatomy, geometry, _heart_mask(f, anatomy.heart))[1]
