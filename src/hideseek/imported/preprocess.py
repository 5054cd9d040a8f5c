"""An imported model's own preprocessing: geometry (top crop, square by centre crop or zero
padding, resize) on the stored 8-bit image, then intensity scaling and channels on the tensor.

The geometry is applied to the lung mask exactly as to the image (:func:`mask_to_input`), so a
centre crop that drops the periphery drops it from the mask too and every lung-attention share
is measured in the frame the model saw. With ``top_crop: 0.08`` and ``square: centre_crop`` the
geometry is this workflow's own classifier input
(:func:`hideseek.classification.inputs.classifier_input`; tests/test_imported_models.py checks it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..classification.performance import IMAGENET_MEAN, IMAGENET_STD
from ..data.store import ImageStore
from ..io import read_table
from ..resize import resize

# torchxrayvision's scaling (xrv.datasets.normalize(img, 255)): 8-bit 0..255 -> -1024..1024.
XRV_RANGE = 1024.0


def geometry(gray: np.ndarray, pre: dict) -> np.ndarray:
    """A 2-D uint8 image as the model's square input: cut the top `top_crop`, make it square
    (centre crop, or zero padding centred), resize to `input_size`."""
    gray = np.asarray(gray)
    height = gray.shape[0]
    gray = gray[int(height * pre["top_crop"]):, :]
    height, width = gray.shape
    if pre["square"] == "centre_crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = gray[top:top + side, left:left + side]
    else:
        side = max(height, width)
        square = np.zeros((side, side), dtype=gray.dtype)
        top, left = (side - height) // 2, (side - width) // 2
        square[top:top + height, left:left + width] = gray
    return resize(square, pre["input_size"], pre["input_size"])


def mask_to_input(mask: np.ndarray, pre: dict) -> np.ndarray:
    """A store-frame lung mask (bool or 0/255) through the same geometry as the image (area
    resize, then >= half: the rule :func:`hideseek.audit.attention.region_to_input` uses)."""
    return geometry(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, pre) >= 128


def intensity_stats(pre: dict) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) per channel applied after scaling to [0, 1]; None for unit and xrv."""
    intensity, channels = pre["intensity"], pre["channels"]
    if intensity == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if isinstance(intensity, dict):
        def per_channel(value):
            values = value if isinstance(value, list) else [value]
            return tuple(float(v) for v in (values * channels if len(values) == 1 else values))
        return per_channel(intensity["mean"]), per_channel(intensity["std"])
    return None


def to_input(x01, pre: dict):
    """A float tensor (B, C, S, S) with values in [0, 1] (what
    :func:`hideseek.classification.performance.to_model_input` makes with ``normalize: none``;
    the first channel is used, the image is gray) -> the model's input (B, channels, S, S)."""
    import torch

    x = x01[:, :1]
    if pre["intensity"] == "xrv":
        x = x * (2 * XRV_RANGE) - XRV_RANGE
    x = x.expand(-1, pre["channels"], -1, -1)
    stats = intensity_stats(pre)
    if stats is not None:
        mean = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x.contiguous()


def load_partition(pixels_path, index_path, pre: dict, partition: str = "test"):
    """(uint8 tensor (N, S, S) through :func:`geometry`, the partition's index rows) of one store
    (the labels were checked at ingestion)."""
    index = read_table(index_path)
    ids = index.loc[index["partition"] == partition, "image_id"].tolist()
    images, frame = load_images(pixels_path, index, ids, pre)
    return images, frame.reset_index()


def load_images(pixels_path, index, image_ids, pre: dict) -> tuple:
    """(uint8 tensor (N, S, S), index rows by image_id) of the given image ids, in that order
    (`index`: the store's index CSV or frame)."""
    import torch

    store = ImageStore(pixels_path, index)
    position = pd.Series(np.arange(len(store.index)), index=store.index["image_id"])
    size = pre["input_size"]
    images = np.zeros((len(image_ids), size, size), np.uint8)
    for out, image_id in enumerate(image_ids):
        images[out] = geometry(store[int(position[image_id])], pre)
    return torch.from_numpy(images), store.index.set_index("image_id").loc[list(image_ids)]
