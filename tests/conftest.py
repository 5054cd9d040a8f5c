"""Shared fixtures: repository paths, the shared real radiographs, small image writers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The precision probe's cache (hideseek.classification.performance.probe_cache_dir): one fresh
# folder per test session, inherited by the workflow runs the tests start; never ~/.cache.
os.environ.setdefault("HIDESEEK_CACHE", tempfile.mkdtemp(prefix="hideseek_cache_"))
# The real fixtures live outside the repository (never copied into it): ../shared/data/real.
SHARED_REAL = Path(os.environ.get("HIDESEEK_SHARED_REAL", REPO.parent / "shared" / "data" / "real"))


def load_module(name: str, path: Path):
    """A module loaded from its file (tests/slurm/cluster.py, scripts/*.py: not packages), once."""
    import importlib.util
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def config() -> dict:
    """The embedded default config (config/config.yaml), schema-checked: a fresh copy per test."""
    import yaml
    from snakemake.utils import validate

    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(shipped, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return shipped


@pytest.fixture
def shared_real() -> Path:
    if not (SHARED_REAL / "cls-mini" / "labels.txt").is_file():
        pytest.skip(f"real radiograph fixtures not found at {SHARED_REAL} (set HIDESEEK_SHARED_REAL)")
    return SHARED_REAL


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def gradient_image(height: int = 40, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width), dtype=np.uint8)


@pytest.fixture
def tiny_covidx(tmp_path: Path):
    """A small valid COVIDx-format data set: 10 patients per class, 1-2 images each."""
    image_dir = tmp_path / "images"
    train_lines, test_lines = [], []
    labels = ("normal", "pneumonia", "COVID-19")
    sources = ("rsna", "cohen", "sirm")
    for class_index, label in enumerate(labels):
        for patient in range(10):
            pid = f"{label[:3]}{patient:02d}"
            for shot in range(1 + patient % 2):
                name = f"{pid}_{shot}.png"
                # One seed per image: copies of one image across partitions are an input error.
                write_png(image_dir / name, gradient_image(seed=100 * class_index + 2 * patient + shot))
                line = f"{pid} {name} {label} {sources[class_index]}"
                (test_lines if patient >= 7 else train_lines).append(line)
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text("\n".join(train_lines) + "\n")
    test.write_text("\n".join(test_lines) + "\n")
    return dict(image_dir=image_dir, train_split=train, test_split=test)
