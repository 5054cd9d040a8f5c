"""cxr-hideseek: the ROI Hide-and-Seek audit of chest X-ray classifiers (Sadre et al. 2021).

One sub-package per workflow stage, named like the rule files: ``data``, ``segmentation``,
``representations``, ``classification``, ``audit``. Shared pieces live beside them:
``vocabulary`` (classes, representations, architectures; standard library only), ``errors``,
``io`` (atomic writes), ``checkpoints``, ``devices``, ``resize``, ``stats`` (the bootstrap),
``seeding`` and ``rulelog``. The top-level import is light on purpose (no numpy, no torch).
"""

import os as _os

__version__ = "0.1.0"

# Torch's OpenMP threads spin while they wait: with another CPU-bound process on the cores a
# two-thread job slowed ~15x (real-lung U-Net epoch 4 s -> 60 s). Sleeping waiters cost little on
# free cores (scripts/bench_shared_cores.py). Set before any job imports torch (every rule script
# imports hideseek first); an OMP_WAIT_POLICY already in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
