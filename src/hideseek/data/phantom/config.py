"""The phantom's configuration (config.yaml's `phantom` section) with its defaults, and the
acquisition sites."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ...vocabulary import CLASSES

SOURCES = ("hospital_a", "hospital_b", "hospital_c")  # index i is the home site of class i


def _check_keys(cls, settings: Mapping, where: str) -> None:
    unknown = sorted(set(settings) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {where} setting(s) {unknown}")


@dataclass(frozen=True)
class SegCounts:
    """Sizes of the segmentation sets: Tang-style training tags (one mask, several images
    each) and the two test sets standing in for NIH and Cohen."""

    n_train_tags: int = 40
    images_per_tag: int = 6
    n_nih: int = 30
    n_cohen: int = 30

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, int(getattr(self, f.name)))


@dataclass(frozen=True)
class PhantomConfig:
    seed: int = 0
    n_train_per_class: int = 200
    n_test_per_class: int = 100
    second_image_prob: float = 0.3
    long_side: tuple[int, int] = (160, 224)  # range of the long side in px
    shortcut: float = 0.9  # share of patients imaged at their class's home site
    disease_contrast: float = 6.0  # 0 removes the disease; 1 is faint (see config/config.yaml)
    signature_strength: float = 1.0  # 0 removes the site signatures
    seg: SegCounts = field(default_factory=SegCounts)

    def __post_init__(self):
        # settings arrive from YAML or callers as any numbers or lists: normalise them once
        for name in ("seed", "n_train_per_class", "n_test_per_class"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("second_image_prob", "shortcut", "disease_contrast", "signature_strength"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "long_side", (int(self.long_side[0]), int(self.long_side[1])))

    @classmethod
    def of(cls, cfg: Mapping | PhantomConfig | None) -> PhantomConfig:
        """From a (partial) mapping such as config.yaml's section; missing keys take defaults."""
        if isinstance(cfg, PhantomConfig):
            return cfg
        settings = dict(cfg or {})
        _check_keys(cls, settings, "phantom")
        seg = dict(settings.pop("seg", None) or {})
        _check_keys(SegCounts, seg, "phantom.seg")
        return cls(**settings, seg=SegCounts(**seg))


def check_label_source(label: str, source: str) -> None:
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
