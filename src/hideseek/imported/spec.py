"""The ``imported_models`` config entries: parse-time checks and their resolved form.

Standard library only: :func:`hideseek.plan.check_config` calls :func:`check_imported_models`
at scheduling time, and the scheduler never imports numpy, pandas or torch. The schema has
already checked types and filled defaults; this module checks what the schema cannot say
(which keys a format needs or forbids, that labels name real classes and outputs, that the
channels fit the intensity scaling and the family), naming the key and what to do.
"""

from __future__ import annotations

import logging

from ..errors import InputError
from ..vocabulary import CLASSES

log = logging.getLogger(__name__)

FORMATS = ("torchvision", "timm", "torchxrayvision", "onnx", "hideseek")
XRV_ARCHITECTURES = ("densenet121", "resnet50")
# torchxrayvision's 18 outputs (``xrv.datasets.default_pathologies``, the order of the heads of
# its "all" DenseNet and ResNet weights); tests/test_imported_spec.py checks the copy against
# the installed package, so a new torchxrayvision release that changes it fails a test.
XRV_PATHOLOGIES = (
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
    "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia", "Lung Lesion",
    "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
)
DISEASES = ("pneumonia", "COVID-19")


def _key(name: str, *parts: str) -> str:
    return ".".join(("imported_models", name, *parts))


def check_imported_models(config: dict) -> None:
    """Every entry of ``imported_models`` (see :func:`check_entry`); nothing when it is empty."""
    long_side = (config.get("store") or {}).get("long_side")
    for name, entry in (config.get("imported_models") or {}).items():
        check_entry(name, entry, long_side)


def check_entry(name: str, entry: dict, store_long_side: int | None = None) -> None:
    """Raise InputError naming the key when one imported model's entry cannot work."""
    fmt = entry["format"]
    if fmt == "hideseek":
        for key in ("preprocessing", "labels", "architecture"):
            if key in entry:
                raise InputError(f"{_key(name, key)}: a hideseek model.pt carries its own {key} (its training "
                                 f"recipe and classes); remove {key} from this entry")
        return
    for key in ("preprocessing", "labels"):
        if key not in entry:
            raise InputError(f"{_key(name, key)}: missing; a {fmt} model needs its {key} stated "
                             "(config/README.md, imported_models)")
    _check_architecture(name, entry)
    _check_preprocessing(name, fmt, entry["preprocessing"], store_long_side)
    _check_labels(name, entry)


def _check_architecture(name: str, entry: dict) -> None:
    fmt, arch = entry["format"], entry.get("architecture")
    if fmt in ("torchvision", "timm") and not arch:
        raise InputError(f"{_key(name, 'architecture')}: missing; a {fmt} state_dict needs the model name it was "
                         f"saved from (e.g. {'resnet18' if fmt == 'torchvision' else 'resnet10t'})")
    if fmt == "torchxrayvision" and arch is not None and arch not in XRV_ARCHITECTURES:
        raise InputError(f"{_key(name, 'architecture')}: {arch!r} is not a torchxrayvision classifier; use one "
                         f"of {', '.join(XRV_ARCHITECTURES)}")
    if fmt == "onnx" and arch is not None:
        raise InputError(f"{_key(name, 'architecture')}: an ONNX file holds its own graph; remove architecture")


def _check_preprocessing(name: str, fmt: str, pre: dict, store_long_side: int | None) -> None:
    channels, intensity = pre["channels"], pre["intensity"]
    if fmt == "torchxrayvision" and channels != 1:
        raise InputError(f"{_key(name, 'preprocessing', 'channels')}: {channels}, but torchxrayvision models take "
                         "one channel; set channels: 1")
    if intensity == "imagenet" and channels != 3:
        raise InputError(f"{_key(name, 'preprocessing', 'intensity')}: imagenet scales three channels with "
                         f"ImageNet's per-channel mean/std, but channels is {channels}; set channels: 3 or give "
                         "intensity: {mean: ..., std: ...}")
    if isinstance(intensity, dict):
        for stat in ("mean", "std"):
            value = intensity[stat]
            if isinstance(value, list) and len(value) not in (1, channels):
                raise InputError(f"{_key(name, 'preprocessing', 'intensity', stat)}: {len(value)} values for "
                                 f"{channels} channel(s); give one value or one per channel")
    size = pre["input_size"]
    if store_long_side is not None and size > store_long_side:
        log.warning("%s: %d px is larger than the stored images (store.long_side: %d), so every image is "
                    "upsampled for this model; raise store.long_side to at least %d to avoid it",
                    _key(name, "preprocessing", "input_size"), size, store_long_side, size)


def default_output_names(entry: dict) -> list[str] | None:
    """The entry's output names: its own, else torchxrayvision's 18 pathologies, else None."""
    names = (entry.get("labels") or {}).get("output_names")
    if names:
        return list(names)
    return list(XRV_PATHOLOGIES) if entry["format"] == "torchxrayvision" else None


def _check_labels(name: str, entry: dict) -> None:
    labels = entry["labels"]
    outputs = labels["outputs"]
    unknown = [cls for cls in outputs if cls not in CLASSES]
    if unknown:
        raise InputError(f"{_key(name, 'labels', 'outputs')}: {', '.join(map(repr, unknown))} "
                         f"{'is not a class' if len(unknown) == 1 else 'are not classes'}; the classes are "
                         f"{', '.join(CLASSES)} (spelled exactly so)")
    if labels["kind"] == "softmax":
        bad = [cls for cls, value in outputs.items() if not isinstance(value, int)]
        if bad:
            raise InputError(f"{_key(name, 'labels', 'outputs', bad[0])}: a softmax head maps each class to one "
                             "output index (an integer); use kind: multilabel to map output names")
        if len(set(outputs.values())) != len(outputs):
            raise InputError(f"{_key(name, 'labels', 'outputs')}: two classes share an output index "
                             f"({outputs}); give each class its own")
        if len(outputs) < 2:
            raise InputError(f"{_key(name, 'labels', 'outputs')}: maps only {list(outputs)}; a softmax head needs "
                             "at least two classes mapped")
        if "output_names" in labels:
            raise InputError(f"{_key(name, 'labels', 'output_names')}: used by kind: multilabel only; remove it")
        return
    bad = [cls for cls, value in outputs.items() if not isinstance(value, list)]
    if bad:
        raise InputError(f"{_key(name, 'labels', 'outputs', bad[0])}: a multilabel head maps each class to a list "
                         "of output names (e.g. [Pneumonia, Consolidation])")
    names = default_output_names(entry)
    if names is None:
        raise InputError(f"{_key(name, 'labels', 'output_names')}: missing; a multilabel {entry['format']} model "
                         "needs the name of each of its outputs, in order")
    seen: dict[str, str] = {}
    for cls, mapped in outputs.items():
        for output in mapped:
            if output not in names:
                raise InputError(f"{_key(name, 'labels', 'outputs', cls)}: {output!r} is not an output of this "
                                 f"model; its outputs are {', '.join(names)}")
            if output in seen and seen[output] != cls:
                raise InputError(f"{_key(name, 'labels', 'outputs')}: output {output!r} is mapped to both "
                                 f"{seen[output]} and {cls}; map it to one class")
            seen[output] = cls
    if not any(cls in outputs for cls in DISEASES):
        raise InputError(f"{_key(name, 'labels', 'outputs')}: maps neither pneumonia nor COVID-19; map at least "
                         "one disease class to the model's outputs")


def mapping_note(entry: dict) -> str:
    """The label mapping and decision rule in one sentence (outputs quote it)."""
    labels = entry.get("labels")
    if not labels:
        return "the model.pt's own 3-class softmax head (normal, pneumonia, COVID-19)"
    outputs = labels["outputs"]
    if labels["kind"] == "softmax":
        mapped = ", ".join(f"{cls} = output {idx}" for cls, idx in outputs.items())
        return f"softmax over the mapped outputs ({mapped}; other outputs ignored), predicted = the largest"
    mapped = "; ".join(f"{cls} = max of {', '.join(names)}" for cls, names in outputs.items())
    act = "sigmoid of each output" if labels["activation"] == "sigmoid" else "outputs as given"
    if "normal" in outputs:
        rule = "predicted = the class with the largest score"
    else:
        rule = (f"normal when no disease score reaches {labels['threshold']:g}, else the disease with the "
                f"largest score (normal's score: 1 - the largest disease score)")
    return f"multilabel ({act}): {mapped}; other outputs ignored; {rule}"
