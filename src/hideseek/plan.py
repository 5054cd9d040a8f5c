"""What the workflow runs, decided from the validated config: cross-key checks, which
architecture probes the source, which weights a model starts from, and the one-line
descriptions that outputs quote.

Standard library only: the rule files call these at scheduling time, and the scheduler must
not import numpy, pandas or torch.
"""

from __future__ import annotations

import logging
import os
import posixpath

from .classification.recipes import TOP_CROP, resolve_recipe, store_side_needed
from .errors import InputError
from .external.config import check_external_sets
from .imported.spec import check_imported_models
from .vocabulary import is_covidnet

log = logging.getLogger(__name__)
# Tang et al.'s augmented segmentation set: six images <tag>0..5.png share <tag>mask.png.
TANG_PAIRING = dict(image_regex=r"^(?P<tag>.+?)(?P<k>\d)\.png$", mask_name="{tag}mask.png", group="{tag}")
# Cheapest first, measured per model on the phantom at the default scale: the source probe
# trains one model per representation, so it uses the cheapest configured architecture.
PROBE_COST_ORDER = ("alexnet", "covidnet_cxr3a", "covidnet_cxr4a", "resnet50", "vgg11")


def check_config(config: dict) -> None:
    """Rules between keys that the schema cannot express; raise InputError naming the keys."""
    if config["segmentation"]["masks"] == "ground_truth" and config["classification_data"]["kind"] != "phantom":
        raise InputError(
            "segmentation.masks: ground_truth uses the phantom's true lung masks, so it needs "
            f"classification_data.kind: phantom (this config has kind: {config['classification_data']['kind']}); "
            "use masks: predicted for your own images")
    _check_audit_has_data(config)
    _check_store_side(config)
    _warn_unnormalised_pretrained(config)
    check_imported_models(config)  # imported_models: hideseek.imported.spec
    check_external_sets(config)  # external_test_sets: hideseek.external.config
    _check_labels_csv(config)


def _check_audit_has_data(config: dict) -> None:
    """The audit (Grad-CAM, lung attention, test-time hiding, comparisons, the verdict) is
    always on and measures every representation against the model trained on `data`."""
    reps = config["classification"]["representations"]
    if "data" not in reps:
        raise InputError(
            f"classification.representations: {reps} lacks data, so Grad-CAM, lung attention, test-time "
            "hiding and the verdict would not be made (each compares against the model trained on the "
            "unmasked images); add data to classification.representations")


def _check_store_side(config: dict) -> None:
    """Every classifier input is cut from the stored image without upsampling."""
    long_side = config["store"]["long_side"]
    sizes = {arch: resolve_recipe(config["classification"], arch)["input_size"]
             for arch in config["classification"]["architectures"]}
    arch = max(sizes, key=sizes.get)
    needed = store_side_needed(sizes[arch])
    if long_side < needed:
        raise InputError(
            f"store.long_side: {long_side} is below the {needed} px that {arch}'s classifier input of "
            f"{sizes[arch]} px needs (input_size / {1 - TOP_CROP:g}: the input crops the top {TOP_CROP:.0%}), "
            f"so every image would be upsampled; set store.long_side: {needed} or more, or lower "
            f"{arch}'s input_size (classification.models.{arch}.input_size)")


def _warn_unnormalised_pretrained(config: dict) -> None:
    """ImageNet weights fed [0, 1] inputs (as the seed did) is allowed, but said."""
    archs = [arch for arch in config["classification"]["architectures"]
             if uses_pretrained(config["classification"], arch)
             and resolve_recipe(config["classification"], arch)["normalize"] == "none"]
    if archs:
        log.warning(
            "classification.pretrained: true, but %s train with normalize: none: ImageNet weights expect "
            "ImageNet-normalised inputs (the seed fed them [0, 1] values); set "
            "classification.recipes.torchvision.normalize: imagenet (or per model, classification.models.<arch>)",
            ", ".join(archs))


def _check_labels_csv(config: dict) -> None:
    """kind labels_csv reads no split files, and kind covidx no labels CSV: a key of the other kind is a mistake."""
    data = config["classification_data"]
    needed = {"labels_csv": ("image_dir", "labels_csv"), "covidx": ("image_dir", "train_split"), "phantom": ()}
    missing = [key for key in needed[data["kind"]] if not data.get(key)]
    if missing:
        raise InputError(f"classification_data.{missing[0]} is empty but kind: {data['kind']} needs it: give "
                         f"the {'split file' if missing[0] == 'train_split' else 'path'}, or change kind")
    other = {"labels_csv": ("train_split", "test_split"), "covidx": ("labels_csv",),
             "phantom": ("labels_csv",)}[data["kind"]]
    given = [key for key in other if data.get(key)]
    if given:
        raise InputError(
            f"classification_data.{given[0]} does not apply to kind: {data['kind']}; a folder with a labels CSV is "
            "kind: labels_csv (image_dir + labels_csv), split files are kind: covidx (image_dir + train_split "
            f"[+ test_split]): remove the key or change kind (in a config layered on one that sets it, such as "
            f"config/real_seg.yaml, write `{given[0]}: null`)")


def dataset_description(config: dict) -> str:
    """The classification data set, in one phrase (tables and the verdict quote it)."""
    data = config["classification_data"]
    if data["kind"] == "phantom":
        ph = config["phantom"]
        return (f"built-in phantom, seed {ph['seed']}, shortcut {ph['shortcut']}, "
                f"disease_contrast {ph['disease_contrast']}")
    if data["kind"] == "labels_csv":
        return f"images under {data['image_dir']} labelled by {data['labels_csv']}"
    return f"COVIDx-format data from {data['train_split']}" + (
        f" and {data['test_split']}" if data.get("test_split") else "")


def segmentation_dataset_description(config: dict) -> str:
    """The segmentation training and test sets, in one phrase (Table 2 quotes it)."""
    data = config["segmentation_data"]
    if data["kind"] == "phantom":
        return f"built-in phantom segmentation sets (seed {config['phantom']['seed']})"
    return f"trained on {data['train']['images']}; test sets " + ", ".join(
        f"{name} ({folder['images']})" for name, folder in data["test_sets"].items())


def uses_pretrained(classification: dict, arch: str) -> bool:
    """ImageNet weights exist for the torchvision models only."""
    return bool(resolve_recipe(classification, arch)["pretrained"]) and not is_covidnet(arch)


def classifier_run_note(classification: dict, arch: str) -> str:
    """One line for a table: the scale this architecture ran at (the paper's differs)."""
    r = resolve_recipe(classification, arch)
    per_class = classification["train_images_per_class"]
    seeds = ", ".join(str(int(s)) for s in classification["seeds"])
    return (
        f"Run: {r['input_size']} px, {r['epochs']} epochs, batch {r['batch_size']}, Adam {r['lr']:g}"
        f"{' (cosine)' if r['scheduler'] == 'cosine' else ''}, "
        f"{'ImageNet-pretrained' if r['pretrained'] else 'from scratch'}"
        + (f", width {r['width']:g}" if is_covidnet(arch) else "")
        + f", {'all' if per_class is None else f'at most {per_class}'} training images per class, "
        f"seeds {seeds} (recipes: results/classifiers/{arch}/<rep>/seed<seed>/train_info.json).")


def probe_arch(config: dict) -> str:
    """audit.source_probe.arch, else the cheapest configured architecture."""
    chosen = config["audit"]["source_probe"].get("arch")
    return chosen or min(config["classification"]["architectures"], key=PROBE_COST_ORDER.index)


def probe_recipe(config: dict) -> dict:
    recipe = dict(resolve_recipe(config["classification"], probe_arch(config)))
    if config["audit"]["source_probe"].get("epochs"):
        recipe["epochs"] = config["audit"]["source_probe"]["epochs"]
    return recipe


def probe_representations(config: dict) -> list[str]:
    grid = config["classification"]["representations"]
    return [r for r in config["audit"]["source_probe"]["representations"] if r in grid]


def runs_source_probe(config: dict) -> bool:
    return bool(config["audit"]["source_probe"]["enabled"] and probe_representations(config))


def verdict_notes(config: dict) -> list[str]:
    """How the verdict's numbers were made, for the summary page."""
    audit = config["audit"]
    return [
        "CIs: percentile bootstrap, patients resampled within class "
        f"({audit['n_boot']} resamples, seed {audit['boot_seed']}).",
        f"Margin for non_lung_signal: {audit['margin']}; for learned: {audit['learned_margin']}; "
        f"inconclusive below {audit['min_test_images']} test images.",
        _source_probe_note(config),
    ]


def _source_probe_note(config: dict) -> str:
    if runs_source_probe(config):
        return (f"Source probe ({probe_arch(config)}, representation data; it skips data where every class has "
                "one source): results/tables/source_probe.csv.")
    if not config["audit"]["source_probe"]["enabled"]:
        return "Source probe: disabled (audit.source_probe.enabled: false)."
    return "Source probe: not run (none of audit.source_probe.representations is in classification.representations)."


def listed_images(image_dir: str, train_split: str, test_split: str | None = None) -> list[str]:
    """The image files the split files name that exist now (rule ingest's inputs).

    Plain text parsing (2nd column, normalised like split_duplicates does), no validation:
    ingestion checks every line. Missing files are left out, not made missing inputs, so
    on_missing: drop still runs; restoring one changes the input set and reruns ingest.
    Split files that do not exist yet (the phantom's, before it is made) list nothing.
    """
    names = set()
    for split in (train_split, test_split):
        if not split or not os.path.isfile(split):
            continue
        with open(split, encoding="utf-8-sig", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and not fields[0].startswith("#"):
                    names.add(posixpath.normpath(fields[1]))
    paths = (os.path.join(image_dir, name) for name in sorted(names))
    return [path for path in paths if os.path.isfile(path)]


def labels_csv_images(image_dir: str, labels_csv: str) -> list[str]:
    """The image files a labels CSV names that exist now (rule ingest's inputs, as :func:`listed_images`).

    Keyed by filename: those files. Keyed by SOPInstanceUID, which only the headers hold: every
    file under `image_dir`. A CSV that does not exist yet lists nothing; ingestion checks every row.
    """
    import csv

    if not os.path.isfile(labels_csv):
        return []
    with open(labels_csv, encoding="utf-8-sig", errors="replace", newline="") as handle:
        rows = csv.reader(handle)
        header = [cell.strip() for cell in next(rows, [])]
        if "filename" not in header:
            return sorted(os.path.join(root, name) for root, _, names in os.walk(image_dir) for name in names)
        column = header.index("filename")
        names = {posixpath.normpath(row[column].strip()) for row in rows if len(row) > column and row[column].strip()}
    paths = (os.path.join(image_dir, name) for name in sorted(names))
    return [path for path in paths if os.path.isfile(path)]
