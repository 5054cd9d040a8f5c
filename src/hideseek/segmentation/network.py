"""The lung U-Net (MONAI ``UNet``) and its model file."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

MODEL_FORMAT = "hideseek-unet-1"


NORMS = {"batch": "batch", "instance": "instance", "none": None}


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


def save_model(path: str | Path, state_dict: dict, network: dict, image_size: int, meta: dict) -> None:
    """The selected weights + what is needed to rebuild the net (loadable with weights_only=True)."""
    import torch

    from ..io import atomic_path

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
