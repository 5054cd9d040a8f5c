"""Deterministic synthetic chest radiographs: the project's built-in data set (DESIGN §7).

The phantom is written in exactly the real formats (COVIDx split files with a source
column; segmentation image/mask folders, Tang et al. XLSor naming for the training set),
so the ingestion code runs unchanged on it.

Signal layout, by construction (and checked by the tests):

* **Disease lives only inside the lung mask.** It is an additive field multiplied by the
  ground-truth mask, so two renders that differ only in the label are identical outside it.
* **The acquisition signature lives only outside the lung mask.** It is applied last, as
  ``where(mask, image, signed_image)``, so two renders that differ only in the source are
  identical inside it.
* **The lung mask does not depend on the class** (same anatomy distribution for every
  class), so mask area or shape cannot leak the label.

Every random draw of a case comes from independent child generators (anatomy, geometry,
disease, signature, acquisition); which label or source is rendered never changes what the
other streams draw.

Grey levels (8-bit, final, default config): air ~10-25 (hospital_c lifts it by 35-50,
hospital_a's collimation border is ~6); mean lung grey 27-97 (median 63); mean outside the
lungs 67-145; mediastinum / heart / abdomen ~140-200, bone adds 10-40. Each lung covers
8-20 % of the image. Disease adds up to ~45 (pneumonia) / ~28 (COVID-19) grey levels at its
peak, severity drawn per case (many faint ones); images are 8-bit gray PNGs.

Public API: SOURCES, CLASSES, render_case, generate_phantom, make_contact_sheet
(and case_size, the per-patient size draw).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..vocabulary import CLASSES

SOURCES = ("hospital_a", "hospital_b", "hospital_c")  # index i is the home site of class i

DEFAULTS: dict = {
    "seed": 0,
    "n_train_per_class": 200,
    "n_test_per_class": 100,
    "second_image_prob": 0.3,
    "long_side": [160, 224],
    "shortcut": 0.9,
    "disease_contrast": 1.0,
    "signature_strength": 1.0,
    "seg": {"n_train_tags": 40, "images_per_tag": 6, "n_nih": 30, "n_cohen": 30},
}

# partition ids that key the seed sequences (never renumber: it would change the data set)
_PART = {"train": 0, "test": 1, "seg_train": 2, "seg_nih": 3, "seg_cohen": 4}
_STREAMS = ("anatomy", "geometry", "disease", "signature", "acquisition")
_ASPECT = (0.85, 1.25)  # h / w
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 6]

# label mixes of the segmentation test sets (NIH: mostly normal; Cohen: mostly diseased)
_NIH_P = (0.7, 0.15, 0.15)
_COHEN_P = (0.1, 0.3, 0.6)


# ----------------------------------------------------------------------------- config


def _with_defaults(cfg: Mapping | None) -> dict:
    out = {k: v for k, v in DEFAULTS.items() if k != "seg"}
    out["seg"] = dict(DEFAULTS["seg"])
    for k, v in (cfg or {}).items():
        if k == "seg":
            out["seg"].update(v or {})
        else:
            out[k] = v
    return out


def _check_label_source(label: str, source: str) -> None:
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


# ----------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return a
    return cv2.GaussianBlur(a, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    n = _blur(rng.standard_normal(shape, dtype=np.float32), sigma)
    sd = float(n.std())
    return n / sd if sd > 0 else n


def _largest_component(m: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(m, structure=np.ones((3, 3), bool))
    if n <= 1:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _harmonics(rng: np.random.Generator, kmax: int, amp: float) -> list[tuple[int, float, float]]:
    return [(k, float(rng.normal(0.0, amp / k)), float(rng.uniform(0, 2 * np.pi)))
            for k in range(2, kmax + 1)]


def _radius(phi: np.ndarray, harm) -> np.ndarray:
    r = np.ones_like(phi)
    for k, c, ph in harm:
        r += c * np.cos(k * phi + ph)
    return r


def case_size(rng: np.random.Generator, long_side) -> tuple[int, int]:
    """(height, width): long side uniform in `long_side`, aspect h/w in [0.85, 1.25]."""
    lo, hi = int(long_side[0]), int(long_side[1])
    L = int(rng.integers(lo, hi + 1))
    r = float(rng.uniform(*_ASPECT))
    if r >= 1.0:
        return L, max(16, int(round(L / r)))
    return max(16, int(round(L * r))), L


# ----------------------------------------------------------------------------- parameters


# lung outline template (right lung; u as distance from the midline, v down), clockwise
# from the apex; the base is cut by the diaphragm dome, so its points lie below it
_LUNG_TEMPLATE = np.array([
    (0.27, -0.70), (0.40, -0.66), (0.53, -0.52), (0.63, -0.30), (0.69, -0.05),
    (0.73, 0.20), (0.76, 0.45), (0.79, 0.72), (0.60, 0.85), (0.35, 0.85),
    (0.12, 0.78), (0.09, 0.45), (0.09, 0.15), (0.11, -0.20), (0.16, -0.50),
], dtype=np.float64)


def _catmull_rom(pts: np.ndarray, n_seg: int = 8) -> np.ndarray:
    """Closed Catmull-Rom spline through pts (N x 2)."""
    p0, p1 = np.roll(pts, 1, axis=0), pts
    p2, p3 = np.roll(pts, -1, axis=0), np.roll(pts, -2, axis=0)
    t = np.linspace(0.0, 1.0, n_seg, endpoint=False)[None, :, None]
    c = 0.5 * (2 * p1[:, None] + (-p0 + p2)[:, None] * t
               + (2 * p0 - 5 * p1 + 4 * p2 - p3)[:, None] * t ** 2
               + (-p0 + 3 * p1 - 3 * p2 + p3)[:, None] * t ** 3)
    return c.reshape(-1, 2)


def _anatomy_params(rng: np.random.Generator) -> dict:
    """Patient anatomy, in normalised coordinates (u: -1 image left .. 1 image right;
    v: -1 top .. 1 bottom). Image left is the patient's right."""
    p: dict = {
        "body_hw": rng.uniform(0.80, 0.93),
        "tissue": rng.uniform(95, 120),
        "air": rng.uniform(10, 24),
        "dome_r": rng.uniform(0.36, 0.50),
        "dome_dl": rng.uniform(0.02, 0.08),  # left dome (image right) lower
        "dome_k": rng.uniform(1.6, 2.6),
        "heart": (rng.uniform(0.16, 0.23), rng.uniform(0.30, 0.38),
                  rng.uniform(0.35, 0.42), rng.uniform(0.21, 0.26), rng.uniform(0.15, 0.45)),
        "heart_amp": rng.uniform(4, 10),
        "lung_dark": rng.uniform(62, 80),
        "spine_w": rng.uniform(0.05, 0.07),
        "spine_amp": rng.uniform(14, 24),
        "rib_amp": rng.uniform(6, 10),
        "rib_sp": rng.uniform(0.12, 0.145),
        "rib_q0": rng.uniform(0, 1),
        "rib_c": rng.uniform(1.5, 2.2),
        "clav_amp": rng.uniform(20, 32),
        "clav_v": rng.uniform(-0.72, -0.62),
        "vessel_amp": rng.uniform(3, 5),
        "blotch_amp": rng.uniform(1.5, 4),
        "breast": rng.uniform(8, 16) if rng.random() < 0.4 else 0.0,
        "haze": [(rng.uniform(-0.7, 0.7), rng.uniform(-0.4, 0.45), rng.uniform(0.08, 0.18),
                  rng.uniform(4, 10)) for _ in range(int(rng.integers(0, 3)))],
        "texture_seed": int(rng.integers(0, 2**31)),
    }
    p["vessels"] = _vessel_params(rng)
    lungs = []
    for s in (-1, 1):
        sx, sy = rng.uniform(0.9, 1.08), rng.uniform(0.92, 1.06)
        du, dv = rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.03)
        pts = _LUNG_TEMPLATE.copy()
        pts[:, 0] = 0.09 + (pts[:, 0] - 0.09) * sx + du
        pts[:, 1] = pts[:, 1] * sy + dv
        pts += rng.normal(0.0, 0.018, size=pts.shape)
        pts[:, 0] = np.maximum(pts[:, 0], 0.08)
        outline = _catmull_rom(pts)
        outline[:, 0] *= s
        u0, u1 = float(outline[:, 0].min()), float(outline[:, 0].max())
        v0 = float(outline[:, 1].min())
        v1 = p["dome_r"] + (p["dome_dl"] if s > 0 else 0.0) + 0.12
        lungs.append({"s": s, "outline": outline, "uc": 0.5 * (u0 + u1), "a": 0.5 * (u1 - u0),
                      "vc": 0.5 * (v0 + v1), "b": 0.5 * (v1 - v0)})
    p["lungs"] = lungs
    return p


def _geometry_params(rng: np.random.Generator) -> dict:
    return {
        "angle": rng.uniform(-4.0, 4.0),
        "tx": rng.uniform(-0.03, 0.03),
        "ty": rng.uniform(-0.03, 0.03),
        "zoom": rng.uniform(0.94, 1.05),
    }


def _acquisition_params(rng: np.random.Generator) -> dict:
    return {
        "blur": rng.uniform(0.3, 0.9),
        "contrast": rng.uniform(0.85, 1.15),
        "brightness": rng.uniform(-12, 12),
        "noise": rng.uniform(2.0, 4.5),
        "extent": rng.uniform(0.85, 1.15),  # disease extent jitter between images of a patient
        "noise_seed": int(rng.integers(0, 2**31)),
    }


def _disease_params(rng: np.random.Generator) -> dict:
    """Both patterns are always drawn, so the draws never depend on the label."""
    side = int(rng.integers(0, 2))
    zone = int(rng.integers(0, 3))
    pneu = {
        "side": side,
        "dy0": (-0.45, 0.0, 0.42)[zone] + rng.uniform(-0.1, 0.1),
        "dx0": rng.uniform(-0.25, 0.25),
        "ax": rng.uniform(0.5, 0.85),
        "by": rng.uniform(0.32, 0.55),
        "rot": rng.uniform(-0.6, 0.6),
        "harm": _harmonics(rng, 5, 0.12),
        "severity": rng.uniform(0.15, 1.1),
    }
    n = int(rng.integers(3, 7))
    sides = [0, 1] + [int(x) for x in rng.integers(0, 2, size=4)]
    patches = []
    for i in range(6):
        patches.append((sides[i], rng.uniform(0.35, 0.8), rng.uniform(0.1, 0.75),
                        rng.uniform(0.22, 0.42), rng.uniform(0.3, 0.55), rng.uniform(0.6, 1.0)))
    covid = {"patches": patches[:n], "severity": rng.uniform(0.2, 1.15)}
    return {"pneumonia": pneu, "covid": covid, "texture_seed": int(rng.integers(0, 2**31))}


def _signature_params(rng: np.random.Generator) -> dict:
    """All sites' parameters are always drawn (fixed draw order)."""
    return {
        "a_border": rng.uniform(0.03, 0.06, size=2),
        "a_border_tb": rng.uniform(0.0, 0.025, size=2),
        "a_marker": (rng.uniform(0.02, 0.05), rng.uniform(0.025, 0.05), rng.uniform(0.055, 0.08)),
        "a_marker_kind": int(rng.integers(0, 2)),
        "b_block": (rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.05), rng.uniform(0.18, 0.28),
                    int(rng.integers(2, 4))),
        "b_glyph_seed": int(rng.integers(0, 2**31)),
        "b_offset": rng.uniform(8, 14),
        "c_noise": rng.uniform(7, 10),
        "c_air": rng.uniform(35, 50),
        "c_noise_seed": int(rng.integers(0, 2**31)),
        "gamma": {"hospital_a": 1.0, "hospital_b": 0.92, "hospital_c": 1.15},
    }


# ----------------------------------------------------------------------------- rendering


def _grid(H: int, W: int, g: dict) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(H, dtype=np.float32)[:, None] - (H - 1) / 2.0 - g["ty"] * H
    x = np.arange(W, dtype=np.float32)[None, :] - (W - 1) / 2.0 - g["tx"] * W
    t = math.radians(g["angle"])
    c, s = math.cos(t), math.sin(t)
    xr = c * x + s * y
    yr = -s * x + c * y
    u = (xr / (g["zoom"] * W / 2.0)).astype(np.float32)
    v = (yr / (g["zoom"] * H / 2.0)).astype(np.float32)
    return u, v


def _lung_local(u, v, L):
    """Coordinates relative to a lung's bounding box: (-1, -1) top-left .. (1, 1)."""
    return (u - L["uc"]) / L["a"], (v - L["vc"]) / L["b"]


def _to_pixels(pts: np.ndarray, H: int, W: int, g: dict) -> np.ndarray:
    """Inverse of _grid: normalised (u, v) points -> pixel (x, y)."""
    t = math.radians(g["angle"])
    c, s = math.cos(t), math.sin(t)
    xr = pts[:, 0] * g["zoom"] * W / 2.0
    yr = pts[:, 1] * g["zoom"] * H / 2.0
    x = c * xr - s * yr + (W - 1) / 2.0 + g["tx"] * W
    y = s * xr + c * yr + (H - 1) / 2.0 + g["ty"] * H
    return np.stack([x, y], axis=1)


def _fill(pts_px: np.ndarray, H: int, W: int) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    poly = np.round(pts_px * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [poly], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _dome(u, A):
    vr = A["dome_r"] + A["dome_k"] * (u - A["lungs"][0]["uc"]) ** 2 * 0.5
    vl = A["dome_r"] + A["dome_dl"] + A["dome_k"] * (u - A["lungs"][1]["uc"]) ** 2 * 0.5
    return np.where(u < 0, vr, vl)


def _vessels(H, W, A, G) -> np.ndarray:
    """The patient's vessel trees drawn as anti-aliased polylines, values in [0, 1]."""
    canvas = np.zeros((H, W), np.float32)
    n = min(H, W)
    trees = A["vessels"]
    allpx = np.round(_to_pixels(np.concatenate([t[0] for t in trees]), H, W, G) * 16).astype(np.int32)
    i = 0
    for pts, w in trees:
        seg = allpx[i:i + len(pts)].reshape(-1, 1, 2)
        i += len(pts)
        cv2.polylines(canvas, [seg], False, float(w), max(1, int(round(w * n / 110.0))),
                      lineType=cv2.LINE_AA, shift=4)
    return _blur(canvas, 0.6)


def _vessel_params(rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """Branching vessel trees radiating from the hila, in normalised coordinates:
    9 roots per lung, each forking twice (vectorised per generation)."""
    out = []
    for s in (-1, 1):
        m = 9
        p0 = np.stack([np.full(m, s * 0.17), -0.02 + rng.uniform(-0.08, 0.1, size=m)], axis=1)
        ang = rng.uniform(-1.25, 1.45, size=m)  # 0: lateral; positive: downwards
        w = 1.0
        for depth in range(3):
            k = rng.integers(3, 6, size=m)
            angs = ang[:, None] + np.cumsum(rng.normal(0, 0.18, size=(m, 5)), axis=1)
            steps = rng.uniform(0.04, 0.07, size=(m, 5)) * (1.0 - 0.2 * depth)
            d = np.stack([s * np.cos(angs) * steps, np.sin(angs) * steps], axis=2)
            pos = np.concatenate([p0[:, None, :], p0[:, None, :] + np.cumsum(d, axis=1)], axis=1)
            out.extend((pos[i, :k[i] + 1], w) for i in range(m))
            idx = np.arange(m)
            end, end_ang = pos[idx, k], angs[idx, k - 1]
            fork = rng.uniform(0.25, 0.6, size=(m, 2)) * np.array([-1.0, 1.0])
            p0 = np.repeat(end, 2, axis=0)
            ang = (end_ang[:, None] + fork).ravel()
            m *= 2
            w *= 0.65
    return out


def _anatomy(H, W, u, v, A, G):
    """Return (density image before disease, lung mask bool, body weight, full lungs)."""
    n = min(H, W)
    px = 2.0 / n  # one pixel in normalised units (approx.)
    au = np.abs(u)
    # body: cylinder-like soft tissue; shoulders widen the top, the abdomen narrows a little
    hw = A["body_hw"] * (1.0 + 0.12 * _sigmoid((-0.62 - v) / 0.06) - 0.05 * _sigmoid((v - 0.6) / 0.1))
    r = np.clip(1.0 - (u / hw) ** 2, 0.0, 1.0)
    thick = r ** 0.3
    body = _sigmoid((hw - au) / (1.2 * px))
    img = A["air"] + A["tissue"] * thick * body

    dome = _dome(u, A)
    heart_u, heart_v, ha, hb, hrot = A["heart"]
    cr, sr = math.cos(hrot), math.sin(hrot)
    hu, hv = u - heart_u, v - heart_v
    heart_f = ((cr * hu + sr * hv) / ha) ** 2 + ((-sr * hu + cr * hv) / hb) ** 2
    heart = (heart_f < 1.0) & (v < dome + 0.03)

    # lungs (full extent, i.e. also behind the heart) and the ground-truth mask
    full = np.zeros((H, W), bool)
    mask = np.zeros((H, W), bool)
    ball = np.ones((3, 3), bool)
    for L in A["lungs"]:
        poly = _fill(_to_pixels(L["outline"], H, W, G), H, W)
        inside = _largest_component(poly & (v < dome) & (u * L["s"] > 0.05))
        full |= inside
        m = _largest_component(inside & ~heart)
        m = ndi.binary_opening(m, structure=ball)
        m = ndi.binary_fill_holes(_largest_component(m))
        mask |= m

    # lung darkness: a partly sharp edge plus a thickness-like falloff; retrocardiac lung
    # shows through the heart only a little
    region = mask.astype(np.float32) + 0.25 * (full & ~mask)
    dark = 0.35 * _blur(region, 0.8) + 0.65 * _blur(region, 0.035 * n)
    dark = dark / max(float(_blur(mask.astype(np.float32), 0.035 * n).max()), 1e-3)
    dark = np.minimum(dark, 1.0)
    hil = np.exp(-(((au - 0.2) / 0.14) ** 2 + ((v + 0.02) / 0.22) ** 2))
    img = img - A["lung_dark"] * dark * (1.0 - 0.3 * hil)
    lung_soft = _blur(full.astype(np.float32), 1.0)

    # abdomen below the domes (liver / stomach soft tissue)
    img += 30.0 * _sigmoid((v - dome) / (1.5 * px)) * body * (0.6 + 0.4 * r)
    # heart
    img += A["heart_amp"] * _blur(heart.astype(np.float32), 1.2) * body
    # spine and trachea
    spine = _sigmoid((A["spine_w"] - au) / (1.2 * px))
    vert = 0.75 + 0.25 * np.cos(2 * np.pi * v / 0.105)
    img += A["spine_amp"] * spine * vert * body
    trachea = _sigmoid((0.026 - au) / px) * _sigmoid((-0.3 - v) / (3 * px))
    img -= 22.0 * trachea * body

    # posterior ribs: arcs that leave the spine, rise a little and descend laterally;
    # anterior ribs fainter, descending medially
    thor = body * _sigmoid((dome + 0.02 - v) / (3 * px)) * _sigmoid((v + 0.9) / (3 * px))
    thor *= _sigmoid((au - 0.06) / (2 * px)) * _sigmoid((0.93 * hw - au) / (3 * px))
    q = (v - A["rib_c"] * (au - 0.22) ** 2) / A["rib_sp"] + A["rib_q0"]
    rib = _sigmoid((np.cos(2 * np.pi * q) - 0.3) * 6.0)
    q2 = (v + 0.5 * au) / (A["rib_sp"] * 1.3) + A["rib_q0"] * 0.7
    rib2 = _sigmoid((np.cos(2 * np.pi * q2) - 0.55) * 6.0) * _sigmoid((au - 0.3) / (4 * px))
    img += thor * (0.4 + 0.6 * lung_soft) * (A["rib_amp"] * rib + 0.4 * A["rib_amp"] * rib2)

    # clavicles: bright bars near the top, medial end lower
    cv_line = A["clav_v"] - 0.2 * (au - 0.08) + 0.25 * (au - 0.35) ** 2
    clav = _sigmoid((0.03 - np.abs(v - cv_line)) / px) * _sigmoid((au - 0.07) / px) \
        * _sigmoid((0.75 - au) / (2 * px))
    img += A["clav_amp"] * clav * body

    # breast shadows: class-independent lower-lateral brightness (a realistic confounder)
    if A["breast"] > 0:
        br = np.exp(-(((au - 0.55) / 0.3) ** 2 + ((v - 0.45) / 0.2) ** 2))
        img += A["breast"] * br * body

    # pulmonary vessels: branching lines radiating from the hila
    img += A["vessel_amp"] * 2.2 * _vessels(H, W, A, G) * lung_soft

    # lung texture: fine band-pass noise + low-frequency blotches + faint haze
    trng = np.random.default_rng(A["texture_seed"])
    s0 = max(0.7, 0.006 * n)
    vess = _smooth_noise(trng, (H, W), s0) - 0.6 * _smooth_noise(trng, (H, W), 3 * s0)
    blot = _smooth_noise(trng, (H, W), 0.05 * n)
    tex = 0.5 * A["vessel_amp"] * vess * (0.5 + 1.0 * hil) + A["blotch_amp"] * blot
    for hu0, hv0, hs, hamp in A["haze"]:
        tex += hamp * np.exp(-(((u - hu0) ** 2 + (v - hv0) ** 2) / (2 * hs * hs)))
    img += tex * lung_soft
    return img.astype(np.float32), mask, body.astype(np.float32), full


def _disease_field(H, W, u, v, A, D, label, extent) -> np.ndarray:
    """Additive disease intensity (before contrast scaling and masking)."""
    if label == "normal":
        return np.zeros((H, W), np.float32)
    trng = np.random.default_rng(D["texture_seed"])
    if label == "pneumonia":
        P = D["pneumonia"]
        L = A["lungs"][P["side"]]
        dx, dy = _lung_local(u, v, L)
        dx, dy = dx - P["dx0"], dy - P["dy0"]
        c, s = math.cos(P["rot"]), math.sin(P["rot"])
        ex, ey = (c * dx + s * dy) / (P["ax"] * extent), (-s * dx + c * dy) / (P["by"] * extent)
        rho = np.sqrt(ex * ex + ey * ey)
        f = rho / _radius(np.arctan2(ey, ex), P["harm"]) - 1.0
        blob = _sigmoid(-f / 0.09)
        tex = 0.88 + 0.12 * np.tanh(_smooth_noise(trng, (H, W), max(1.0, 0.02 * min(H, W))))
        return (45.0 * P["severity"] * blob * tex).astype(np.float32)
    C = D["covid"]
    acc = np.zeros((H, W), np.float32)
    for side, lat, dy0, sx, sy, amp in C["patches"]:
        L = A["lungs"][side]
        dx, dy = _lung_local(u, v, L)
        lx = dx - L["s"] * lat  # towards the lateral edge
        ly = dy - dy0
        acc += amp * np.exp(-0.5 * ((lx / (sx * extent)) ** 2 + (ly / (sy * extent)) ** 2))
    field = (1.0 - np.exp(-1.6 * acc)) / (1.0 - math.exp(-1.6))
    haze = 0.7 + 0.3 * np.tanh(_smooth_noise(trng, (H, W), max(1.0, 0.03 * min(H, W))))
    return (25.0 * C["severity"] * field * haze).astype(np.float32)


def _lung_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) inclusive bounding box of each lung."""
    lab, _n = ndi.label(mask, structure=np.ones((3, 3), bool))
    return [(sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
            for sl in ndi.find_objects(lab) if sl is not None]


def _place(x0, y0, w, h, H, W, boxes, right: bool, bottom: bool, margin: float = 2.0):
    """Move (then shrink) a corner rectangle until it clears every lung bounding box.
    Returns (x0, y0, scale). Falls back to the original place (the caller still keeps
    the lungs untouched)."""
    def clear(x, y, ww, hh):
        return all(x + ww + margin < bx0 or x - margin > bx1 or y + hh + margin < by0
                   or y - margin > by1 for bx0, by0, bx1, by1 in boxes)

    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        ww, hh = w * scale, h * scale
        xe = W - 2.0 - ww if right else 1.0  # pushed against the image edge
        ye = H - 2.0 - hh if bottom else 1.0
        xs = x0 + (w - ww) if right else x0
        ys = y0 + (h - hh) if bottom else y0
        for x, y in ((xs, ys), (xs, ye), (xe, ys), (xe, ye)):
            if clear(x, y, ww, hh):
                return x, y, scale
    return x0, y0, 1.0


def _signature(img, H, W, body, source, S, strength, boxes) -> np.ndarray:
    """The site's acquisition signature over the whole image; the caller keeps it outside
    the lungs only. Pointwise in `img` (no neighbourhood), so lung pixels never leak out.
    Markers sit in image corners, moved clear of the lungs' bounding boxes."""
    out = img.copy()
    if strength == 0:
        return out
    g = 1.0 + strength * (S["gamma"][source] - 1.0)
    if g != 1.0:
        out = 255.0 * np.clip(out / 255.0, 0.0, 1.0) ** g
    yy = np.arange(H, dtype=np.float32)[:, None]
    xx = np.arange(W, dtype=np.float32)[None, :]

    def box(x0, y0, x1, y1):
        return ((_sigmoid((xx - x0) * 3) * _sigmoid((x1 - xx) * 3))
                * (_sigmoid((yy - y0) * 3) * _sigmoid((y1 - yy) * 3)))

    if source == "hospital_a":
        bl, br = S["a_border"] * W
        bt, bb = S["a_border_tb"] * H
        if boxes:  # collimation stops short of the lungs
            bl = min(bl, max(0.0, min(b[0] for b in boxes) - 3.0))
            br = min(br, max(0.0, W - 1 - max(b[2] for b in boxes) - 3.0))
            bt = min(bt, max(0.0, min(b[1] for b in boxes) - 3.0))
            bb = min(bb, max(0.0, H - 1 - max(b[3] for b in boxes) - 3.0))
        border = 1.0 - (_sigmoid((xx - bl) * 2) * _sigmoid((W - 1 - br - xx) * 2)
                        * _sigmoid((yy - bt) * 2) * _sigmoid((H - 1 - bb - yy) * 2))
        w = 0.9 * strength * border
        out = out * (1 - w) + 6.0 * w
        mx, my, ms = S["a_marker"]
        x0, y0, sz = bl + mx * W, bt + my * H, ms * min(H, W)
        x0, y0, sc = _place(x0, y0, sz, sz, H, W, boxes, right=False, bottom=False)
        sz *= sc
        th = max(1.5, 0.3 * sz)
        if S["a_marker_kind"] == 0:  # "L"
            mk = np.maximum(box(x0, y0, x0 + th, y0 + sz), box(x0, y0 + sz - th, x0 + 0.75 * sz, y0 + sz))
        else:  # square block
            mk = box(x0, y0, x0 + 0.8 * sz, y0 + 0.8 * sz)
        w = strength * mk
        out = out * (1 - w) + 240.0 * w
    elif source == "hospital_b":
        out = out + strength * S["b_offset"] * body
        mx, my, bw, nlines = S["b_block"]
        lh = max(2.0, 0.028 * H)
        bw = bw * W
        bh = nlines * lh * 1.7
        x0, y0, sc = _place(W - 1 - mx * W - bw, H - 1 - my * H - bh, bw, bh, H, W, boxes,
                            right=True, bottom=True)
        bw, lh = bw * sc, max(1.5, lh * sc)
        x1 = x0 + bw
        grng = np.random.default_rng(S["b_glyph_seed"])
        gw = max(2.0, 0.022 * W * sc)
        txt = np.zeros((H, W), np.float32)
        for li in range(int(nlines)):
            ly0 = y0 + li * lh * 1.7
            x = x0
            while x + gw <= x1:
                if grng.random() < 0.8:
                    txt = np.maximum(txt, box(x, ly0, x + gw * 0.8, ly0 + lh))
                x += gw * (1.0 + (grng.random() < 0.15))
        w = strength * txt
        out = out * (1 - w) + 230.0 * w
    else:  # hospital_c
        out = out + strength * S["c_air"] * (1.0 - body)
        nrng = np.random.default_rng(S["c_noise_seed"])
        out = out + strength * S["c_noise"] * nrng.standard_normal((H, W), dtype=np.float32)
    return out


def _render(H: int, W: int, label: str, source: str, cfg: Mapping, A: dict, G: dict, D: dict,
            S: dict, Q: dict) -> tuple[np.ndarray, np.ndarray]:
    _check_label_source(label, source)
    u, v = _grid(H, W, G)
    img, mask, body, _full = _anatomy(H, W, u, v, A, G)
    img = _blur(img, Q["blur"])
    dc = float(cfg.get("disease_contrast", 1.0))
    if dc != 0.0 and label != "normal":
        soft = mask.astype(np.float32) * _blur(mask.astype(np.float32), 1.0)
        img = img + dc * soft * _disease_field(H, W, u, v, A, D, label, Q["extent"])
    # class- and source-independent acquisition jitter
    img = (img - 110.0) * Q["contrast"] + 110.0 + Q["brightness"]
    nrng = np.random.default_rng(Q["noise_seed"])
    img = img + Q["noise"] * nrng.standard_normal((H, W), dtype=np.float32)
    # site signature last, outside the lungs only
    sig = _signature(img, H, W, body, source, S, float(cfg.get("signature_strength", 1.0)),
                     _lung_boxes(mask))
    img = np.where(mask, img, sig)
    img8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img8, (mask.astype(np.uint8) * 255)


def _streams(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    seeds = rng.integers(0, 2**63 - 1, size=len(_STREAMS), dtype=np.int64)
    return {k: np.random.default_rng(int(s)) for k, s in zip(_STREAMS, seeds)}


def render_case(rng: np.random.Generator, height: int, width: int, label: str, source: str,
                cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """One radiograph (uint8 HxW gray) and its ground-truth lung mask (uint8 0/255).

    The rng is split into independent streams first, so the same rng state with a
    different label changes nothing outside the mask, and a different source changes
    nothing inside it."""
    st = _streams(rng)
    return _render(int(height), int(width), label, source, cfg,
                   _anatomy_params(st["anatomy"]), _geometry_params(st["geometry"]),
                   _disease_params(st["disease"]), _signature_params(st["signature"]),
                   _acquisition_params(st["acquisition"]))


# ----------------------------------------------------------------------------- writing


def _write_png(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), arr, _PNG):
        raise OSError(f"could not write {tmp}")
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, key)]))


def _covidx_plan(cfg: dict) -> list[tuple[str, list]]:
    """Per partition: list of patients (pid, class index, source, (H, W), n_images, seeds)."""
    seed = cfg["seed"]
    plans = []
    pid = 0
    shortcut = float(cfg["shortcut"])
    p2 = float(cfg["second_image_prob"])
    for part, n_per in (("train", cfg["n_train_per_class"]), ("test", cfg["n_test_per_class"])):
        patients = []
        for ci, _label in enumerate(CLASSES):
            count, k = 0, 0
            while count < int(n_per):
                r = _rng(seed, _PART[part], ci, k)
                src = ci if r.random() < shortcut else int(r.integers(0, len(SOURCES)))
                n_img = 2 if r.random() < p2 else 1
                n_img = min(n_img, int(n_per) - count)
                size = case_size(r, cfg["long_side"])
                patients.append((pid, ci, src, size, n_img, (part, ci, k)))
                count += n_img
                k += 1
                pid += 1
        plans.append((part, patients))
    return plans


def generate_phantom(out_dir: str | Path, cfg: dict) -> None:
    """Write the whole phantom data set:

    out_dir/covidx/{images,masks}/pNNNNN_k.png, out_dir/covidx/{train,test}.txt
    out_dir/seg/train/images/<tag><k>.png, out_dir/seg/train/masks/<tag>mask.png
    out_dir/seg/{nih,cohen}/{images,masks}/<name>.png
    """
    from tqdm import tqdm

    cfg = _with_defaults(cfg)
    seg = cfg["seg"]
    seed = int(cfg["seed"])
    out = Path(out_dir)
    cdir = out / "covidx"
    for d in (cdir / "images", cdir / "masks", out / "seg/train/images", out / "seg/train/masks",
              out / "seg/nih/images", out / "seg/nih/masks", out / "seg/cohen/images",
              out / "seg/cohen/masks"):
        d.mkdir(parents=True, exist_ok=True)

    plans = _covidx_plan(cfg)
    n_tags, per_tag = int(seg["n_train_tags"]), int(seg["images_per_tag"])
    total = (sum(p[4] for _, pats in plans for p in pats) + n_tags * per_tag
             + int(seg["n_nih"]) + int(seg["n_cohen"]))
    bar = tqdm(total=total, desc="phantom", unit="img", file=sys.stderr, mininterval=1.0)

    # --- classification set (COVIDx format)
    for part, patients in plans:
        lines = []
        for pid, ci, si, (H, W), n_img, key in patients:
            pr = _rng(seed, _PART[part], *key[1:], 1)  # patient-level streams
            st = _streams(pr)
            A = _anatomy_params(st["anatomy"])
            D = _disease_params(st["disease"])
            S = _signature_params(st["signature"])
            label, source = CLASSES[ci], SOURCES[si]
            for k in range(n_img):
                ir = _streams(_rng(seed, _PART[part], *key[1:], 2, k))  # per image
                img, mask = _render(H, W, label, source, cfg, A, _geometry_params(ir["geometry"]),
                                    D, S, _acquisition_params(ir["acquisition"]))
                name = f"p{pid:05d}_{k}.png"
                _write_png(cdir / "images" / name, img)
                _write_png(cdir / "masks" / name, mask)
                lines.append(f"p{pid:05d} {name} {label} {source}\n")
                bar.update(1)
        _write_text(cdir / f"{part}.txt", "".join(lines))

    # --- segmentation training set, Tang et al. XLSor "Augmentation" naming
    for t in range(n_tags):
        tr = _rng(seed, _PART["seg_train"], t)
        H, W = case_size(tr, cfg["long_side"])
        st = _streams(tr)
        A, G = _anatomy_params(st["anatomy"]), _geometry_params(st["geometry"])
        labels = [CLASSES[i % len(CLASSES)] for i in range(per_tag)]
        labels = [labels[i] for i in tr.permutation(per_tag)]
        tag = f"t{t:04d}"
        mask0 = None
        for k in range(per_tag):
            ir = _streams(_rng(seed, _PART["seg_train"], t, 1, k))
            src = SOURCES[int(ir["signature"].integers(0, len(SOURCES)))]
            img, mask = _render(H, W, labels[k], src, cfg, A, G, _disease_params(ir["disease"]),
                                _signature_params(ir["signature"]),
                                _acquisition_params(ir["acquisition"]))
            mask0 = mask if mask0 is None else mask0
            _write_png(out / "seg/train/images" / f"{tag}{k}.png", img)
            bar.update(1)
        if mask0 is None:  # images_per_tag == 0: still write the tag's mask
            mask0 = _render(H, W, "normal", SOURCES[0], cfg, A, G, _disease_params(st["disease"]),
                            _signature_params(st["signature"]),
                            _acquisition_params(st["acquisition"]))[1]
        _write_png(out / "seg/train/masks" / f"{tag}mask.png", mask0)

    # --- segmentation test sets standing in for NIH and Cohen
    for name, n, probs in (("nih", int(seg["n_nih"]), _NIH_P), ("cohen", int(seg["n_cohen"]), _COHEN_P)):
        for i in range(n):
            r = _rng(seed, _PART[f"seg_{name}"], i)
            H, W = case_size(r, cfg["long_side"])
            label = CLASSES[int(r.choice(len(CLASSES), p=probs))]
            src = SOURCES[int(r.integers(0, len(SOURCES)))]
            img, mask = render_case(r, H, W, label, src, cfg)
            fn = f"{name}_{i:04d}.png"
            _write_png(out / "seg" / name / "images" / fn, img)
            _write_png(out / "seg" / name / "masks" / fn, mask)
            bar.update(1)
    bar.close()


# ----------------------------------------------------------------------------- contact sheet


def make_contact_sheet(covidx_dir: str | Path, out_png: str | Path, per_cell: int = 2) -> None:
    """Grid class (rows) x source (columns) of sample images from covidx_dir/train.txt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    covidx_dir = Path(covidx_dir)
    out_png = Path(out_png)
    cells: dict[tuple[str, str], list[str]] = {}
    n_all = n_home = 0
    for line in (covidx_dir / "train.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        label = parts[2]
        source = parts[3] if len(parts) > 3 else "?"
        if label in CLASSES and source in SOURCES:
            n_all += 1
            n_home += CLASSES.index(label) == SOURCES.index(source)
        lst = cells.setdefault((label, source), [])
        if len(lst) < per_cell:
            lst.append(parts[1])

    per_cell = max(1, int(per_cell))
    nr, nc = len(CLASSES), len(SOURCES) * per_cell
    fig, axes = plt.subplots(nr, nc, figsize=(2.2 * nc, 2.6 * nr), squeeze=False)
    for ri, label in enumerate(CLASSES):
        for si, source in enumerate(SOURCES):
            names = cells.get((label, source), [])
            for j in range(per_cell):
                ax = axes[ri][si * per_cell + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(names):
                    im = cv2.imread(str(covidx_dir / "images" / names[j]), cv2.IMREAD_GRAYSCALE)
                    if im is not None:
                        ax.imshow(im, cmap="gray", vmin=0, vmax=255)
                    ax.set_xlabel(names[j], fontsize=6)
                else:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=9,
                            color="0.4", transform=ax.transAxes)
                if ri == 0 and j == 0:
                    ax.set_title(source, fontsize=10, loc="left")
                if si == 0 and j == 0:
                    ax.set_ylabel(label, fontsize=10)
    title = "Phantom radiographs: class (rows) x acquisition site (columns)"
    if n_all:
        title += f"; train images at their class's home site: {n_home / n_all:.0%}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    os.replace(tmp, out_png)
