"""Training-time augmentation on batched tensors, with random parameters drawn per image.

torchvision's v2 transforms applied to a batch tensor draw one set of random parameters for
the whole batch. Here every image gets its own: all geometric steps (ratio resize, rotation,
translation, zoom, horizontal flip) are folded into one affine matrix per image and applied
with a single ``F.affine_grid`` + ``F.grid_sample`` call, on whatever device the batch is on;
brightness is a per-image multiplicative factor. Parameters come from a dedicated
``torch.Generator`` (on the CPU) whose state the training checkpoint stores, so a resumed run
draws the same transforms as an uninterrupted one.

The recipes follow COVID-Net's training script (Wang et al. 2020), which Sadre et al. 2021
reuse: random ratio resize (probability 0.3, aspect ratio ±0.1, the shrunk axis zero-padded),
rotation ±10°, translation ±10 % of the size, zoom ±15 %, brightness ×[0.9, 1.1], and, for
COVID-Net only, a horizontal flip (the torchvision models never flip: anatomically
unrealistic for frontal radiographs). Filled areas are 0, like the representations' fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    ratio_resize_prob: float = 0.3
    ratio_resize_delta: float = 0.1
    brightness: float = 0.1
    rotation_deg: float = 10.0
    translate: float = 0.1
    zoom: float = 0.15
    hflip: bool = False
    enabled: bool = True

    @classmethod
    def from_config(cls, cfg: dict | None) -> "AugmentConfig":
        cfg = dict(cfg or {})
        known = {k: cfg.pop(k) for k in list(cfg) if k in cls.__dataclass_fields__}
        if cfg:
            raise ValueError(f"unknown augmentation keys: {sorted(cfg)}")
        return cls(**known)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def draw_params(batch_size: int, cfg: AugmentConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random parameters, one value per image (float64 on the CPU).

    Every draw happens whether or not its augmentation is enabled, so the generator advances
    by the same amount for any configuration of the same batch size.
    """
    n = batch_size
    ratio_apply = torch.rand(n, generator=generator, dtype=torch.float64) < cfg.ratio_resize_prob
    ratio = _uniform(n, 1 - cfg.ratio_resize_delta, 1 + cfg.ratio_resize_delta, generator)
    angle = _uniform(n, -cfg.rotation_deg, cfg.rotation_deg, generator)
    tx = _uniform(n, -cfg.translate, cfg.translate, generator)
    ty = _uniform(n, -cfg.translate, cfg.translate, generator)
    zoom = _uniform(n, 1 - cfg.zoom, 1 + cfg.zoom, generator)
    bright = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator)
    flip = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
    ratio = torch.where(ratio_apply, ratio, torch.ones_like(ratio))
    return dict(ratio=ratio, angle=angle, tx=tx, ty=ty, zoom=zoom, brightness=bright,
                flip=flip & bool(cfg.hflip))


def affine_matrices(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-image 2×3 matrices for ``F.affine_grid`` (output → input, normalised coordinates).

    The content is transformed as flip ∘ translate ∘ rotate ∘ zoom ∘ ratio-resize (in that
    order, as COVID-Net applies ratio resize before Keras' ImageDataGenerator); the sampling
    grid needs the inverse, composed in reverse.
    """
    n = params["angle"].shape[0]
    eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)

    def scale(sx, sy):
        m = eye.clone()
        m[:, 0, 0], m[:, 1, 1] = sx, sy
        return m

    # Ratio resize: one axis shrinks by the drawn aspect change, the other keeps its size.
    r = params["ratio"]
    ratio_fwd = scale(torch.clamp(r, max=1.0), torch.clamp(1.0 / r, max=1.0))
    zoom_fwd = scale(params["zoom"], params["zoom"])
    a = params["angle"] * math.pi / 180.0
    rot_fwd = eye.clone()
    rot_fwd[:, 0, 0], rot_fwd[:, 0, 1] = torch.cos(a), -torch.sin(a)
    rot_fwd[:, 1, 0], rot_fwd[:, 1, 1] = torch.sin(a), torch.cos(a)
    shift_fwd = eye.clone()
    shift_fwd[:, 0, 2], shift_fwd[:, 1, 2] = 2 * params["tx"], 2 * params["ty"]  # [-1, 1] spans 2
    flip_fwd = scale(torch.where(params["flip"], -1.0, 1.0).double(), torch.ones(n, dtype=torch.float64))
    forward = flip_fwd @ shift_fwd @ rot_fwd @ zoom_fwd @ ratio_fwd
    return torch.linalg.inv(forward)[:, :2, :]


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)`` in [0, 1]; each image gets its own parameters."""
    if not cfg.enabled:
        return images
    if params is None:
        params = draw_params(images.shape[0], cfg, generator)
    theta = affine_matrices(params).to(device=images.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    bright = params["brightness"].to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)
    return (out * bright).clamp_(0.0, 1.0)
