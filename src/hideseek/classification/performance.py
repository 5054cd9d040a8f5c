"""How a classifier run feeds its model: the input tensor (:func:`to_model_input`, the one
place every consumer gets its inputs from) and the performance switches (precision, bf16
autocast, memory format, fused Adam)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# torchvision's ImageNet statistics (recipe key normalize: imagenet), per RGB channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: oneDNN runs bf16 convolutions and matmuls natively (≈2× on this
    project's CI CPU for ResNet-50 and VGG-11); without them bf16 autocast is emulated and slow."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def performance_settings(recipe: dict, device) -> dict:
    """What the run uses: input normalisation, bf16 autocast, channels_last (recorded in the outputs)."""
    fast = device.type == "cuda" or cpu_has_fast_bf16()
    precision = recipe["precision"]
    if precision == "auto":
        precision = "bf16" if fast else "fp32"
    channels_last = recipe["channels_last"]
    if channels_last == "auto":
        channels_last = fast
    # A model.pt written before the key existed was trained on [0, 1] inputs, i.e. "none".
    return dict(device=str(device), precision=precision, channels_last=bool(channels_last),
                cpu_fast_bf16=cpu_has_fast_bf16() if device.type == "cpu" else None,
                normalize=recipe.get("normalize", "none"))


def make_optimizer(model, recipe: dict, device):
    import torch

    kwargs = dict(lr=recipe["lr"], betas=tuple(recipe["betas"]), weight_decay=recipe["weight_decay"])
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs), True
    except (RuntimeError, TypeError) as error:  # fused Adam not supported on this device/build
        log.warning("fused Adam unavailable on %s (%s); using the foreach implementation", device, error)
        return torch.optim.Adam(model.parameters(), foreach=True, **kwargs), False


def to_model_input(batch_u8, perf: dict, augment_fn=None):
    """uint8 (B, S, S) on the device -> float (B, 3, S, S): values in [0, 1] (augmented there if
    asked, so the fill value stays black), then ImageNet mean/std per channel if
    ``perf["normalize"]`` is ``imagenet`` (what ImageNet-pretrained weights were trained on)."""
    import torch

    x = batch_u8.unsqueeze(1).float().div_(255.0)
    if augment_fn is not None:
        x = augment_fn(x)
    x = x.expand(-1, 3, -1, -1)
    if perf["normalize"] == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if perf["channels_last"] else torch.contiguous_format)


def autocast(perf: dict):
    import torch

    device_type = "cuda" if perf["device"].startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=perf["precision"] == "bf16")
