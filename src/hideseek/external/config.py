"""The external test sets of the config: parse-time checks and what the rules need to know.

Standard library only: :func:`hideseek.plan.check_config` and the rule files call these at
scheduling time, and the scheduler never imports numpy, pandas or torch.
"""

from __future__ import annotations

import logging
import os

from ..errors import InputError

log = logging.getLogger(__name__)


def external_sets(config: dict) -> dict[str, dict]:
    """The external test sets the workflow runs, by name: the enabled ones, and phantom_external
    sets only on the phantom (the embedded default's set is merged into every config, and has
    no meaning beside a model trained on other images). Empty when there are none."""
    phantom = config["classification_data"]["kind"] == "phantom"
    return {name: ext for name, ext in (config.get("external_test_sets") or {}).items()
            if ext["enabled"] and (phantom or not is_phantom(ext))}


def is_phantom(ext_cfg: dict) -> bool:
    return ext_cfg["kind"] == "phantom_external"


def check_external_sets(config: dict) -> None:
    """Rules between keys that the schema cannot express; raise InputError naming the key."""
    data = config["classification_data"]
    training_files = {os.path.normpath(str(data[key])) for key in ("train_split", "test_split", "labels_csv")
                      if data.get(key)}
    for name, ext in (config.get("external_test_sets") or {}).items():
        key = f"external_test_sets.{name}"
        if is_phantom(ext) and ext["enabled"] and data["kind"] != "phantom":
            log.info("%s (kind: phantom_external) is left out: it needs classification_data.kind: phantom", key)
        if is_phantom(ext) or not ext["enabled"]:
            continue
        if config["segmentation"]["masks"] == "ground_truth":
            raise InputError(
                f"{key}: segmentation.masks: ground_truth needs true lung masks, which only the phantom has; "
                "use segmentation.masks: predicted, or kind: phantom_external for this set")
        listing = "labels_csv" if ext["kind"] == "labels_csv" else "test_split"
        if os.path.normpath(str(ext[listing])) in training_files:
            raise InputError(
                f"{key}.{listing}: {ext[listing]} lists the images of classification_data, so this set "
                "would score models on their own data; name the other site's file")


def n_per_class(ext_cfg: dict, phantom_cfg: dict) -> int:
    """Images per class of a phantom_external set: its n_per_class, else the phantom's test split size."""
    value = ext_cfg.get("n_per_class")
    return int(phantom_cfg.get("n_test_per_class", 100) if value is None else value)


def description(name: str, ext_cfg: dict, phantom_cfg: dict | None = None) -> str:
    """One line saying what the external set is, quoted by its outputs."""
    if is_phantom(ext_cfg):
        shortcut = ext_cfg.get("shortcut")
        shortcut = (phantom_cfg or {}).get("shortcut") if shortcut is None else shortcut
        mix = {"reversed": f"the training shortcut reversed (each class imaged at the next class's home site with "
                           f"probability {shortcut}, else at a random site)",
               "independent": "sites drawn independently of the label"}[ext_cfg["mix"]]
        return (f"external set '{name}': the built-in phantom, {n_per_class(ext_cfg, phantom_cfg or {})} images per class, "
                f"seed {ext_cfg['seed']}, {mix}")
    listing = ext_cfg["labels_csv"] if ext_cfg["kind"] == "labels_csv" else ext_cfg["test_split"]
    return f"external set '{name}': {listing} (images under {ext_cfg['image_dir']})"


# --- Paths (the rule files call these; `root` is results/external, `tables` results/tables) ---
def set_folder(root: str, name: str, *parts: str) -> str:
    """A path inside one external set's folder: ``root/name/parts...``."""
    return "/".join([root, name, *parts])


def input_files(sets: dict, root: str, name: str) -> dict:
    """Image folder and the file listing the images (test_split, or labels_csv) of an external set;
    a phantom set's are made by rule external_phantom."""
    ext = sets[name]
    if is_phantom(ext):
        folder = set_folder(root, name, "phantom", "covidx")
        return dict(image_dir=f"{folder}/images", test_split=f"{folder}/external.txt")
    if ext["kind"] == "labels_csv":
        return dict(image_dir=ext["image_dir"], labels_csv=ext["labels_csv"])
    return dict(image_dir=ext["image_dir"], test_split=ext["test_split"])


def listing_file(sets: dict, root: str, name: str) -> str:
    files = input_files(sets, root, name)
    return files.get("test_split") or files["labels_csv"]


def image_inputs(sets: dict, root: str, name: str) -> list[str]:
    """What a change of the external images reruns ingestion on: the phantom's image folder, or
    every listed image that exists (as rule ingest lists them)."""
    from .. import plan  # plan imports this module

    files = input_files(sets, root, name)
    if is_phantom(sets[name]):
        return [files["image_dir"]]
    if "labels_csv" in files:
        return plan.labels_csv_images(files["image_dir"], files["labels_csv"])
    return plan.listed_images(files["image_dir"], files["test_split"])


def prediction_files(root: str, name: str, archs) -> list[str]:
    """Each architecture's predictions on one external set."""
    return [set_folder(root, name, "predictions", f"{arch}.csv") for arch in archs]


def generalisation_targets(sets: dict, tables: str) -> list[str]:
    """The cross-site table (the verdict's generalisation gap), when external sets are configured."""
    return [f"{tables}/external_generalisation.csv"] if sets else []


def targets(sets: dict, root: str, tables: str, archs) -> list[str]:
    """Every external set's tables, ingestion report and mask summary, and the cross-site table."""
    return [
        *(f"{tables}/external_{name}_{arch}.{suffix}" for name in sets for arch in archs for suffix in ("csv", "md")),
        *(set_folder(root, name, "data", "ingest_report.md") for name in sets),
        *(set_folder(root, name, "segmentation", "mask_summary.md") for name in sets),
        *generalisation_targets(sets, tables),
    ]
