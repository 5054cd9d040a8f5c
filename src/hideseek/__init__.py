"""cxr-hideseek: the ROI Hide-and-Seek audit of chest X-ray classifiers (Sadre et al. 2021).

The top-level import is light on purpose (no torch): table and figure rules import only
what they need.
"""

__version__ = "0.1.0"

# Exact COVIDx label strings, in the order used by every table and model head.
CLASSES = ("normal", "pneumonia", "COVID-19")
PARTITIONS = ("train", "val", "test")


class InputError(Exception):
    """Bad user input (config, split files, images). The message says what to fix."""
