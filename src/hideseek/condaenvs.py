"""Pinned conda environments (envs/*.yaml), generated from requirements.lock.

One environment per rule family. Conda cannot create environments on our development
machines (no channel is reachable), so these files are generated and checked for consistency
with the pip lock instead; on a cluster `snakemake --sdm conda` builds them.

    python -m hideseek.condaenvs          # rewrite envs/*.yaml from requirements.lock
    python -m hideseek.condaenvs --check  # exit 1 if any file differs from what the lock gives
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# Direct dependencies of each rule family (PyPI names, as in the lock).
_DATA = ["numpy", "pandas", "scipy", "scikit-learn", "opencv-python-headless", "matplotlib",
         "tqdm", "tabulate", "pyyaml", "jsonschema",
         # DICOM ingestion with the codecs for compressed transfer syntaxes.
         "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"]
# Imported models: ONNX (run and convert), timm and torchxrayvision architectures.
_IMPORT = ["onnx", "onnxruntime", "onnx2torch", "timm", "torchxrayvision"]
FAMILIES = {
    "data": ("Data, tables and figures: no torch.", _DATA + ["statsmodels"]),
    "torch": ("PyTorch stages: U-Net, classifiers, Grad-CAM. torch/torchvision are the lock's "
              "builds; on a CUDA node they use the GPU.",
              ["torch", "torchvision", "monai", "kornia", "grad-cam"] + _DATA + ["statsmodels"] + _IMPORT),
}


def read_lock(lock: Path) -> dict[str, str]:
    """Map of normalised package name -> pinned version."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if not match:
            raise ValueError(f"{lock}: cannot read pin {line!r} (expected name==version)")
        pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def render_env(family: str, pins: dict[str, str]) -> str:
    description, packages = FAMILIES[family]
    lines = [f"# {description}", "# Generated from requirements.lock by `python -m hideseek.condaenvs`; do not edit.",
             "channels:", "  - conda-forge", "  - nodefaults", "dependencies:", "  - python=3.11", "  - pip",
             "  - pip:"]
    for package in packages:
        version = pins.get(_normalise(package))
        if version is None:
            raise KeyError(f"{package} is not pinned in requirements.lock")
        lines.append(f"      - {package}=={version}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--check", action="store_true", help="report differences instead of writing")
    args = parser.parse_args(argv)
    pins = read_lock(args.repo / "requirements.lock")
    stale = []
    for family in FAMILIES:
        path = args.repo / "envs" / f"{family}.yaml"
        text = render_env(family, pins)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date with requirements.lock (run python -m hideseek.condaenvs): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
