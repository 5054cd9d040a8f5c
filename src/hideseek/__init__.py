"""cxr-hideseek: the ROI Hide-and-Seek audit of chest X-ray classifiers (Sadre et al. 2021).

One sub-package per workflow stage, named like the rule files: ``data``, ``segmentation``,
``representations``, ``classification``, ``audit``. Shared pieces live beside them:
``vocabulary`` (classes, representations, architectures; standard library only), ``errors``,
``io`` (atomic writes), ``checkpoints``, ``devices``, ``resize``, ``stats`` (the bootstrap),
``seeding`` and ``rulelog``. The top-level import is light on purpose (no numpy, no torch).
"""

__version__ = "0.1.0"
