"""The one device resolver and thread set-up for torch jobs."""

from __future__ import annotations

from .errors import InputError


def resolve_device(name: str, setting: str = "device"):
    """`auto` = CUDA if available, else CPU; `cuda` without a GPU is an input error naming `setting`."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{setting} is cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """CPU jobs use exactly the threads Snakemake gave them (torch and OpenCV)."""
    import cv2
    import torch

    torch.set_num_threads(max(1, int(threads)))
    cv2.setNumThreads(max(1, int(threads)))
