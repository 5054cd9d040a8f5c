"""Per-site acquisition signatures, applied only outside the lungs.

hospital_a: collimation border and a lead marker; hospital_b: a lifted body and a burnt-in
text block; hospital_c: lifted air and detector noise. Each site also has its own gamma.
Markers sit in image corners, moved clear of the lungs' bounding boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imaging import sigmoid

GAMMA = {"hospital_a": 1.0, "hospital_b": 0.92, "hospital_c": 1.15}
COLLIMATED_GREY, MARKER_GREY, TEXT_GREY = 6.0, 240.0, 230.0
LUNG_CLEARANCE = 3.0  # px the collimation border stays away from the lungs
LINE_SPACING = 1.7  # text line pitch over glyph height

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (inclusive)


class _Canvas:
    """Pixel coordinates of one image, for drawing soft-edged rectangles."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.yy = np.arange(height, dtype=np.float32)[:, None]
        self.xx = np.arange(width, dtype=np.float32)[None, :]

    def box(self, x0, y0, x1, y1) -> np.ndarray:
        return ((sigmoid((self.xx - x0) * 3) * sigmoid((x1 - self.xx) * 3))
                * (sigmoid((self.yy - y0) * 3) * sigmoid((y1 - self.yy) * 3)))


def _paint(image: np.ndarray, weight: np.ndarray, grey: float) -> np.ndarray:
    return image * (1 - weight) + grey * weight


def place_clear_of(x0, y0, w, h, canvas: _Canvas, boxes: list[Box], right: bool, bottom: bool,
                   margin: float = 2.0) -> tuple[float, float, float]:
    """Move (then shrink) a corner rectangle until it clears every lung bounding box.
    Returns (x0, y0, scale). Falls back to the original place (the caller still keeps
    the lungs untouched)."""
    def clear(x, y, ww, hh):
        return all(x + ww + margin < bx0 or x - margin > bx1 or y + hh + margin < by0
                   or y - margin > by1 for bx0, by0, bx1, by1 in boxes)

    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        ww, hh = w * scale, h * scale
        xe = canvas.width - 2.0 - ww if right else 1.0  # pushed against the image edge
        ye = canvas.height - 2.0 - hh if bottom else 1.0
        xs = x0 + (w - ww) if right else x0
        ys = y0 + (h - hh) if bottom else y0
        for x, y in ((xs, ys), (xs, ye), (xe, ys), (xe, ye)):
            if clear(x, y, ww, hh):
                return x, y, scale
    return x0, y0, 1.0


@dataclass(frozen=True)
class Collimation:
    """hospital_a: a dark border (fractions of the image side) and an "L" or square marker."""

    border_left_right: np.ndarray
    border_top_bottom: np.ndarray
    marker_x: float  # inside the border, fractions of the width / height / short side
    marker_y: float
    marker_size: float
    marker_kind: int  # 0: "L", 1: square block

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Collimation:
        return cls(rng.uniform(0.03, 0.06, size=2), rng.uniform(0.0, 0.025, size=2),
                   rng.uniform(0.02, 0.05), rng.uniform(0.025, 0.05), rng.uniform(0.055, 0.08),
                   int(rng.integers(0, 2)))

    def apply(self, out, canvas: _Canvas, body, strength: float, boxes: list[Box]) -> np.ndarray:
        H, W, xx, yy = canvas.height, canvas.width, canvas.xx, canvas.yy
        bl, br = self.border_left_right * W
        bt, bb = self.border_top_bottom * H
        if boxes:  # collimation stops short of the lungs
            bl = min(bl, max(0.0, min(b[0] for b in boxes) - LUNG_CLEARANCE))
            br = min(br, max(0.0, W - 1 - max(b[2] for b in boxes) - LUNG_CLEARANCE))
            bt = min(bt, max(0.0, min(b[1] for b in boxes) - LUNG_CLEARANCE))
            bb = min(bb, max(0.0, H - 1 - max(b[3] for b in boxes) - LUNG_CLEARANCE))
        border = 1.0 - (sigmoid((xx - bl) * 2) * sigmoid((W - 1 - br - xx) * 2)
                        * sigmoid((yy - bt) * 2) * sigmoid((H - 1 - bb - yy) * 2))
        out = _paint(out, 0.9 * strength * border, COLLIMATED_GREY)
        x0, y0, size = bl + self.marker_x * W, bt + self.marker_y * H, self.marker_size * min(H, W)
        x0, y0, scale = place_clear_of(x0, y0, size, size, canvas, boxes, right=False, bottom=False)
        size *= scale
        if self.marker_kind == 0:
            bar = max(1.5, 0.3 * size)
            marker = np.maximum(canvas.box(x0, y0, x0 + bar, y0 + size),
                                canvas.box(x0, y0 + size - bar, x0 + 0.75 * size, y0 + size))
        else:
            marker = canvas.box(x0, y0, x0 + 0.8 * size, y0 + 0.8 * size)
        return _paint(out, strength * marker, MARKER_GREY)


@dataclass(frozen=True)
class TextLabel:
    """hospital_b: the body a little brighter, and a block of burnt-in text bottom right."""

    margin_x: float  # fractions of the width / height
    margin_y: float
    width: float
    n_lines: int
    glyph_seed: int
    body_offset: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> TextLabel:
        return cls(rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.05), rng.uniform(0.18, 0.28),
                   int(rng.integers(2, 4)), int(rng.integers(0, 2**31)), rng.uniform(8, 14))

    def _glyphs(self, canvas: _Canvas, boxes: list[Box]) -> np.ndarray:
        H, W = canvas.height, canvas.width
        line_h = max(2.0, 0.028 * H)
        block_w = self.width * W
        block_h = self.n_lines * line_h * LINE_SPACING
        x0, y0, scale = place_clear_of(W - 1 - self.margin_x * W - block_w,
                                       H - 1 - self.margin_y * H - block_h, block_w, block_h,
                                       canvas, boxes, right=True, bottom=True)
        block_w, line_h = block_w * scale, max(1.5, line_h * scale)
        x1 = x0 + block_w
        rng = np.random.default_rng(self.glyph_seed)
        glyph_w = max(2.0, 0.022 * W * scale)
        text = np.zeros((H, W), np.float32)
        for line in range(self.n_lines):
            ly0 = y0 + line * line_h * LINE_SPACING
            x = x0
            while x + glyph_w <= x1:
                if rng.random() < 0.8:
                    text = np.maximum(text, canvas.box(x, ly0, x + glyph_w * 0.8, ly0 + line_h))
                x += glyph_w * (1.0 + (rng.random() < 0.15))  # now and then a space
        return text

    def apply(self, out, canvas: _Canvas, body, strength: float, boxes: list[Box]) -> np.ndarray:
        out = out + strength * self.body_offset * body
        return _paint(out, strength * self._glyphs(canvas, boxes), TEXT_GREY)


@dataclass(frozen=True)
class NoisyDetector:
    """hospital_c: air lifted to a grey, and extra detector noise."""

    noise: float
    air_lift: float
    noise_seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> NoisyDetector:
        return cls(rng.uniform(7, 10), rng.uniform(35, 50), int(rng.integers(0, 2**31)))

    def apply(self, out, canvas: _Canvas, body, strength: float, boxes: list[Box]) -> np.ndarray:
        out = out + strength * self.air_lift * (1.0 - body)
        noise = np.random.default_rng(self.noise_seed).standard_normal((canvas.height, canvas.width),
                                                                       dtype=np.float32)
        return out + strength * self.noise * noise


@dataclass(frozen=True)
class SiteSignature:
    """Every site's parameters, always all drawn (a fixed draw order whatever the source)."""

    hospital_a: Collimation
    hospital_b: TextLabel
    hospital_c: NoisyDetector

    @classmethod
    def draw(cls, rng: np.random.Generator) -> SiteSignature:
        return cls(Collimation.draw(rng), TextLabel.draw(rng), NoisyDetector.draw(rng))

    def apply(self, image: np.ndarray, body: np.ndarray, source: str, strength: float,
              lung_boxes: list[Box]) -> np.ndarray:
        """`source`'s signature over the whole image; the caller keeps it outside the lungs
        only. Pointwise in `image` (no neighbourhood), so lung pixels never leak out."""
        out = image.copy()
        if strength == 0:
            return out
        gamma = 1.0 + strength * (GAMMA[source] - 1.0)
        if gamma != 1.0:
            out = 255.0 * np.clip(out / 255.0, 0.0, 1.0) ** gamma
        canvas = _Canvas(*image.shape)
        return getattr(self, source).apply(out, canvas, body, strength, lung_boxes)
