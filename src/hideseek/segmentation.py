"""Lung segmentation with a MONAI U-Net: network, pre/post-processing and batched inference.

The pipeline, identical in training, evaluation (Table 2) and when segmenting the
classification images (DESIGN §4):

1. zero-pad the 8-bit gray image to a square (centred), resize to the U-Net size;
2. per-image z-score; the network gives background/lung logits;
3. the lung probability is resized back to the padded square, the padding cropped, and
   thresholded at 0.5;
4. the two largest 8-connected components are kept (hole filling is an option; the seed
   code does not fill).

An empty prediction is a valid result here (no crash); the mask QC decides what to do with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from . import InputError
from .representations import keep_largest_components

log = logging.getLogger(__name__)

MODEL_FORMAT = "hideseek-unet-1"
NORMS = {"batch": "batch", "instance": "instance", "none": None}


# ----------------------------------------------------------------------------- torch set-up


def configure_torch(threads: int) -> None:
    """CPU jobs use exactly the threads Snakemake gave them; MONAI returns plain tensors."""
    import torch
    from monai.data import set_track_meta

    torch.set_num_threads(max(1, int(threads)))
    cv2.setNumThreads(max(1, int(threads)))
    set_track_meta(False)


def resolve_device(name: str):
    """`auto` = CUDA if available, else CPU; `cuda` without a GPU is an input error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("segmentation.device is cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def build_unet(network: dict):
    """MONAI UNet, 1 input channel, 2 output classes (background, lung); strides 2 between levels."""
    from monai.networks.nets import UNet

    channels = tuple(int(c) for c in network["channels"])
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=int(network["num_res_units"]),
        norm=NORMS[network["norm"]],
        dropout=float(network["dropout"]),
    )


# ----------------------------------------------------------------------------- geometry


def pad_square(gray: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad to a centred square; return the square and the (top, left) offset of the image."""
    height, width = gray.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    if side == height == width:
        return gray, (0, 0)
    square = np.zeros((side, side), dtype=gray.dtype)
    square[top:top + height, left:left + width] = gray
    return square, (top, left)


def image_to_model(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 gray image → padded, resized uint8 square of side `size`."""
    square, _ = pad_square(gray)
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def mask_to_model(mask: np.ndarray, size: int) -> np.ndarray:
    """bool mask → padded, resized (nearest neighbour) uint8 0/1 square of side `size`."""
    square, _ = pad_square(np.asarray(mask, dtype=np.uint8))
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_NEAREST)


def model_to_image(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float map at model size → the original image geometry (resize to the padded square, crop)."""
    height, width = shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    if prob.shape[0] != side:
        prob = cv2.resize(prob, (side, side), interpolation=cv2.INTER_LINEAR)
    return prob[top:top + height, left:left + width]


def zscore(batch):
    """Per-image z-score of a (B, 1, H, W) float tensor."""
    flat = batch.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (batch - mean) / std


def postprocess(prob: np.ndarray, keep_components: int = 2, fill_holes: bool = False,
                threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Lung probability → (raw bool mask, final bool mask with the largest components kept)."""
    raw = prob > threshold
    mask = keep_largest_components(raw, keep_components) if keep_components > 0 else raw
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    return raw, mask


# ----------------------------------------------------------------------------- model files


def save_model(path: str | Path, state_dict: dict, network: dict, image_size: int, meta: dict) -> None:
    """The selected weights + what is needed to rebuild the net (loadable with weights_only=True)."""
    import torch

    from .io import atomic_path

    payload = dict(format=MODEL_FORMAT, state_dict=state_dict, network=dict(network), image_size=int(image_size),
                   meta=dict(meta))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, device="cpu"):
    """(model in eval mode, image size, file payload without weights)."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != MODEL_FORMAT:
        raise InputError(f"{path} is not a hideseek U-Net file (format {payload.get('format')!r})")
    model = build_unet(payload["network"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, int(payload["image_size"]), info


# ----------------------------------------------------------------------------- inference


class LungSegmenter:
    """Batched lung segmentation: preprocessing of the next batch and post-processing of the
    previous one run in a worker thread while the network computes (OpenCV, SciPy and torch
    release the GIL), so the pipeline runs close to the bare forward pass. ``workers=0`` does
    everything in the calling thread (the pre/post-processing costs ~2 ms an image)."""

    def __init__(self, model, image_size: int, device="cpu", batch_size: int = 16, keep_components: int = 2,
                 fill_holes: bool = False, workers: int = 1):
        self.model = model
        self.image_size = int(image_size)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.keep_components = int(keep_components)
        self.fill_holes = bool(fill_holes)
        self.workers = max(0, int(workers))

    @classmethod
    def from_file(cls, path: str | Path, device="cpu", **kwargs) -> "LungSegmenter":
        model, size, _ = load_model(path, device)
        return cls(model, size, device=device, **kwargs)

    def _prepare(self, images: list[np.ndarray]):
        import torch

        batch = np.stack([image_to_model(image, self.image_size) for image in images])
        tensor = torch.from_numpy(batch).unsqueeze(1).float()
        return zscore(tensor), [image.shape for image in images]

    def _forward(self, tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(tensor.to(self.device, non_blocking=True))
            return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()

    def _finish(self, probs: np.ndarray, shapes) -> list[tuple[np.ndarray, np.ndarray]]:
        return [postprocess(model_to_image(prob, shape), self.keep_components, self.fill_holes)
                for prob, shape in zip(probs, shapes)]

    def segment(self, images: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (raw mask, final mask) per image, in order; both bool, at each image's shape."""
        chunks = _chunks(images, self.batch_size)
        if self.workers == 0:  # everything in the calling thread
            for chunk in chunks:
                tensor, shapes = self._prepare(chunk)
                yield from self._finish(self._forward(tensor), shapes)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            first = next(chunks, None)
            if first is None:
                return
            pending = pool.submit(self._prepare, first)
            finishing = None
            while pending is not None:
                tensor, shapes = pending.result()
                following = next(chunks, None)
                pending = pool.submit(self._prepare, following) if following is not None else None
                probs = self._forward(tensor)
                if finishing is not None:
                    yield from finishing.result()
                finishing = pool.submit(self._finish, probs, shapes)
            yield from finishing.result()

    def masks(self, images: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for _, mask in self.segment(images):
            yield mask


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
