"""Classifier recipes: the paper's per family, updated by the per-architecture settings.

A recipe is a flat dict (see ``config/README.md``): optimizer settings, epochs, batch size,
class weights, sampler, augmentation, input size, input normalisation and performance
switches. Standard library only: the rule files resolve recipes at scheduling time without
importing numpy or torch; for the same reason the classifier input's top crop is defined here
(:mod:`.inputs` applies it, :mod:`hideseek.plan` checks the store is large enough for it).
"""

from __future__ import annotations

import json
import math

from ..errors import InputError
from ..vocabulary import is_covidnet

# Keys a resolved recipe has; config/README.md documents each one.
RECIPE_KEYS = (
    "family", "input_size", "width", "epochs", "batch_size", "lr", "scheduler", "weight_decay", "betas",
    "class_weights", "sampler", "covid_percent", "augment", "pretrained", "precision",
    "channels_last", "eval_batch_size", "bn_recalibration_images", "train_images_per_class", "normalize",
)

TOP_CROP = 0.08  # COVID-Net and the seed cut the top 8 % (burned-in text) before anything else


def store_side_needed(input_size: int) -> int:
    """The smallest stored long side from which a classifier input of `input_size` px is cut
    without upsampling: the top crop leaves ``1 - TOP_CROP`` of the height (input / 0.92)."""
    return math.ceil(round(input_size / (1 - TOP_CROP), 6))  # round: 92 / 0.92 must give 100, not 101


def recipe_family(arch: str) -> str:
    return "covidnet" if is_covidnet(arch) else "torchvision"


def resolve_recipe(classification_cfg: dict, arch: str) -> dict:
    """The recipe of `arch`: its family's recipe (the paper's, by default) updated by
    ``models.<arch>`` (the per-architecture settings, e.g. the embedded default's scale-down).
    ImageNet weights (``pretrained``) exist for the torchvision models only: the COVID-Net
    re-implementations always start from scratch, as the paper retrained COVID-Net."""
    family = recipe_family(arch)
    recipe = json.loads(json.dumps(classification_cfg["recipes"][family]))  # deep copy
    overrides = json.loads(json.dumps((classification_cfg.get("models") or {}).get(arch) or {}))
    augment_override = overrides.pop("augment", None)
    recipe.update(overrides)
    if augment_override:
        recipe["augment"] = {**recipe["augment"], **augment_override}
    recipe["family"] = family
    # Set for the whole grid, recorded in each recipe (and so in every output and fingerprint).
    recipe["pretrained"] = bool(classification_cfg.get("pretrained", False)) and family == "torchvision"
    recipe["train_images_per_class"] = classification_cfg.get("train_images_per_class")
    missing = [key for key in RECIPE_KEYS if key not in recipe]
    if missing:
        raise InputError(f"classification recipe for {arch} lacks {', '.join(missing)}")
    return recipe
