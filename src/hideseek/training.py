"""Classifier training and prediction: the paper's recipes on the preprocessed image store.

One entry point per stage: :func:`train_classifier` (one architecture × representation ×
seed, model selection on the validation partition, resumable per-epoch checkpoints) and
:func:`predict_store` (softmax probabilities on a partition of a store).

Data path: the representation store is read once per job; every image is cropped and resized
the way the seed code does it (top 8 % cut off, centre square, resize to the input size) into
one in-memory ``uint8`` tensor ``N × S × S``. Batches are indexed from that tensor on the
training device, converted to float in [0, 1], augmented with per-image parameters
(:mod:`hideseek.augment`) and repeated to 3 channels. No image is decoded during training.

Recipes: a recipe is a flat dict (see ``config/README.md``): optimizer settings, epochs, batch
size, class weights, sampler (``balanced``: a class-balanced sampler with replacement, as the
seed's torchvision training; ``covidnet``: COVID-Net's batch re-balancing, a pass over the
non-COVID images with ``max(int(covid_percent × batch), 1)`` of every batch replaced by
COVID-19 images; ``shuffle``: plain shuffling), augmentation, input size and performance
switches (``precision``, ``channels_last``).

Determinism: :func:`hideseek.seeding.seed_everything` is called first; the sampler and the
augmentation draw from their own ``torch.Generator`` s, whose states (with those of torch,
numpy and Python) are stored in every checkpoint, so a run killed and resumed reaches the
same final weights as an uninterrupted one on the same machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import CLASSES, InputError
from .io import atomic_path, write_csv_atomic, write_text_atomic
from .seeding import seed_everything

log = logging.getLogger(__name__)

TOP_CROP = 0.08  # COVID-Net and the seed cut the top 8 % (burned-in text) before anything else
COVID = CLASSES.index("COVID-19")
CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "last.pt"

# Keys a resolved recipe has; config/README.md documents each one.
RECIPE_KEYS = (
    "family", "input_size", "width", "epochs", "batch_size", "lr", "weight_decay", "betas",
    "class_weights", "sampler", "covid_percent", "augment", "pretrained", "precision",
    "channels_last", "eval_batch_size", "bn_recalibration_images", "train_images_per_class",
)


# --------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------
def recipe_family(arch: str) -> str:
    return "covidnet" if arch.startswith("covidnet") else "torchvision"


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


# --------------------------------------------------------------------------------------------
# Data: store -> in-memory uint8 tensors
# --------------------------------------------------------------------------------------------
def classifier_input(gray: np.ndarray, size: int) -> np.ndarray:
    """The seed's classifier input: crop the top 8 %, centre-crop a square, resize to `size`."""
    import cv2

    height, width = gray.shape
    gray = gray[int(height * TOP_CROP):, :]
    height = gray.shape[0]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = gray[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


@dataclass
class Split:
    """One partition of a store, preprocessed: ``images`` uint8 (N, S, S), ``labels`` int64 (N,)."""

    images: "torch.Tensor"  # noqa: F821
    labels: "torch.Tensor"  # noqa: F821
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


def load_split(pixels_path, index_path, partition: str, size: int,
               per_class: int | None = None, subset_seed: int = 0) -> Split:
    """Read one partition of a store into memory at the classifier's input size.

    `per_class` keeps at most that many images per class (a fixed random subset, the same
    for every architecture and seed); None keeps all.
    """
    import torch

    from .store import ImageStore

    store = ImageStore(pixels_path, index_path)
    frame = store.index
    unknown = sorted(set(frame["label"]) - set(CLASSES))
    if unknown:
        raise InputError(f"{index_path}: unknown labels {unknown}")
    rows = np.flatnonzero((frame["partition"] == partition).to_numpy())
    if per_class is not None:
        rng = np.random.default_rng(subset_seed)
        kept = []
        for label in CLASSES:
            of_class = rows[(frame["label"].to_numpy()[rows] == label)]
            if len(of_class) > per_class:
                of_class = np.sort(rng.choice(of_class, size=per_class, replace=False))
            kept.append(of_class)
        rows = np.sort(np.concatenate(kept))
    images = np.empty((len(rows), size, size), dtype=np.uint8)
    for out, row in enumerate(rows):
        images[out] = classifier_input(store[int(row)], size)
    sub = frame.iloc[rows].reset_index(drop=True)
    labels = torch.from_numpy(np.array([CLASSES.index(label) for label in sub["label"]], dtype=np.int64))
    return Split(images=torch.from_numpy(images), labels=labels, frame=sub)


def split_fingerprint(split: Split) -> str:
    digest = hashlib.sha1()
    digest.update("\n".join(map(str, split.frame["image_id"])).encode())
    digest.update(split.images.numpy().tobytes()[:: max(1, split.images.numel() // 100_000)])
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Samplers: every epoch is a list of index batches; randomness from one torch.Generator
# --------------------------------------------------------------------------------------------
def _batches(order, batch_size: int) -> list:
    """Split an index order into batches; a trailing batch of one image is dropped (BatchNorm
    cannot train on a single image with a 1 × 1 feature map)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


class BalancedSampler:
    """Class-balanced sampling with replacement (the seed's torchvision recipe; like
    ``WeightedRandomSampler`` with weights 1 / class count): ``len(labels)`` draws per epoch."""

    def __init__(self, labels, batch_size: int, generator):
        import torch

        counts = torch.bincount(labels, minlength=len(CLASSES)).double()
        self.weights = torch.where(counts[labels] > 0, 1.0 / counts[labels], torch.zeros(()))
        self.n = len(labels)
        self.batch_size = batch_size
        self.generator = generator

    def epoch(self):
        import torch

        order = torch.multinomial(self.weights, self.n, replacement=True, generator=self.generator)
        return _batches(order, self.batch_size)


class ShuffleSampler:
    """Every image once per epoch, in a fresh random order."""

    def __init__(self, labels, batch_size: int, generator):
        self.n = len(labels)
        self.batch_size = batch_size
        self.generator = generator

    def epoch(self):
        import torch

        return _batches(torch.randperm(self.n, generator=self.generator), self.batch_size)


class CovidRebalanceSampler:
    """COVID-Net's batch re-balancing (``BalanceCovidDataset`` of its training script).

    An epoch is one shuffled pass over the non-COVID images in batches of `batch_size`; in
    every batch, ``max(int(covid_percent × len(batch)), 1)`` random positions are replaced by
    COVID-19 images drawn without replacement (2 of 8 with the paper's 0.3 and batch 8).
    """

    def __init__(self, labels, batch_size: int, covid_percent: float, generator):
        import torch

        self.other = torch.nonzero(labels != COVID).flatten()
        self.covid = torch.nonzero(labels == COVID).flatten()
        if len(self.covid) == 0 or len(self.other) == 0:
            raise InputError("COVID-Net batch re-balancing needs COVID-19 and non-COVID training images")
        self.batch_size = batch_size
        self.covid_percent = covid_percent
        self.generator = generator

    def covid_count(self, batch_len: int) -> int:
        return min(batch_len, max(int(batch_len * self.covid_percent), 1))

    def epoch(self):
        import torch

        g = self.generator
        batches = []
        for batch in _batches(self.other[torch.randperm(len(self.other), generator=g)], self.batch_size):
            batch = batch.clone()
            k = min(self.covid_count(len(batch)), len(self.covid))
            positions = torch.randperm(len(batch), generator=g)[:k]
            batch[positions] = self.covid[torch.randperm(len(self.covid), generator=g)[:k]]
            batches.append(batch)
        return batches


def make_sampler(recipe: dict, labels, generator):
    kind = recipe["sampler"]
    if kind == "balanced":
        return BalancedSampler(labels, recipe["batch_size"], generator)
    if kind == "covidnet":
        return CovidRebalanceSampler(labels, recipe["batch_size"], recipe["covid_percent"], generator)
    if kind == "shuffle":
        return ShuffleSampler(labels, recipe["batch_size"], generator)
    raise InputError(f"unknown sampler {kind!r} (balanced, covidnet or shuffle)")


# --------------------------------------------------------------------------------------------
# Device and performance switches
# --------------------------------------------------------------------------------------------
def resolve_device(device: str) -> "torch.device":  # noqa: F821
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("classification.device is 'cuda' but no CUDA device is available")
    return torch.device(device)


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: oneDNN runs bf16 convolutions and matmuls natively (≈2× on this
    project's CI CPU for ResNet-50 and VGG-11); without them bf16 autocast is emulated and slow."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def performance_settings(recipe: dict, device) -> dict:
    """What the run uses: bf16 autocast, channels_last, fused Adam (recorded in the outputs)."""
    fast = device.type == "cuda" or cpu_has_fast_bf16()
    precision = recipe["precision"]
    if precision == "auto":
        precision = "bf16" if fast else "fp32"
    channels_last = recipe["channels_last"]
    if channels_last == "auto":
        channels_last = fast
    return dict(device=str(device), precision=precision, channels_last=bool(channels_last),
                cpu_fast_bf16=cpu_has_fast_bf16() if device.type == "cpu" else None)


def make_optimizer(model, recipe: dict, device):
    import torch

    kwargs = dict(lr=recipe["lr"], betas=tuple(recipe["betas"]), weight_decay=recipe["weight_decay"])
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs), True
    except (RuntimeError, TypeError) as error:  # fused Adam not supported on this device/build
        log.warning("fused Adam unavailable on %s (%s); using the foreach implementation", device, error)
        return torch.optim.Adam(model.parameters(), foreach=True, **kwargs), False


# --------------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------------
def to_model_input(batch_u8, perf: dict, augment_fn=None):
    """uint8 (B, S, S) on the device -> float (B, 3, S, S) in [0, 1] (augmented if asked)."""
    import torch

    x = batch_u8.unsqueeze(1).float().div_(255.0)
    if augment_fn is not None:
        x = augment_fn(x)
    x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last if perf["channels_last"] else torch.contiguous_format)


def _autocast(perf: dict):
    import torch

    device_type = "cuda" if perf["device"].startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=perf["precision"] == "bf16")


def predict_logits(model, images_u8, perf: dict, batch_size: int):
    """Logits (float32, on the CPU) for a uint8 (N, S, S) tensor, in eval mode, no augmentation."""
    import torch

    device = torch.device(perf["device"])
    model.eval()
    chunks = []
    with torch.inference_mode(), _autocast(perf):
        for start in range(0, len(images_u8), batch_size):
            batch = images_u8[start:start + batch_size].to(device, non_blocking=True)
            chunks.append(model(to_model_input(batch, perf)).float().cpu())
    if not chunks:
        return torch.empty(0, len(CLASSES))
    return torch.cat(chunks)


def recalibrate_batchnorm(model, images_u8, perf: dict, batch_size: int, n_images: int) -> int:
    """Recompute every BatchNorm's running statistics on `n_images` (clean) training images.

    "Precise BN": the running averages BatchNorm keeps during training lag behind the weights;
    after a few dozen steps from scratch they are far off, and eval-mode predictions collapse
    to one class although the network itself has learnt (observed on the phantom: ResNet-50
    after 3 short epochs, all-COVID in eval mode, ~0.8 accuracy with recalibrated statistics).
    Here the statistics become the plain average over batches of the first `n_images` training
    images, without augmentation, as they are seen at evaluation. Dropout stays off and no RNG
    is consumed. Returns the number of BatchNorm layers recalibrated.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms or n_images <= 0 or len(images_u8) == 0:
        return 0
    device = torch.device(perf["device"])
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
        norm.train()
    subset = images_u8[:n_images]
    with torch.no_grad(), _autocast(perf):
        for start in range(0, len(subset), batch_size):
            batch = subset[start:start + batch_size]
            if len(batch) > 1:
                model(to_model_input(batch.to(device, non_blocking=True), perf))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def class_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, balanced accuracy and per-class sensitivity (NaN for a class absent from `true`)."""
    out = dict(accuracy=float(np.mean(true == pred)) if len(true) else float("nan"))
    sens = []
    for index, label in enumerate(CLASSES):
        of_class = true == index
        value = float(np.mean(pred[of_class] == index)) if of_class.any() else float("nan")
        out[f"sens_{label}"] = value
        sens.append(value)
    out["balanced_accuracy"] = float(np.nanmean(sens)) if not all(math.isnan(s) for s in sens) else float("nan")
    return out


# --------------------------------------------------------------------------------------------
# RNG state <-> checkpoint (only tensors, lists, numbers, strings: loadable with weights_only)
# --------------------------------------------------------------------------------------------
def _rng_state(sampler_gen, augment_gen) -> dict:
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        python=[version, list(internal), gauss_next],
        sampler=sampler_gen.get_state(),
        augment=augment_gen.get_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, sampler_gen, augment_gen) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    sampler_gen.set_state(state["sampler"])
    augment_gen.set_state(state["augment"])


def _save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _snapshot(obj):
    """A deep copy whose tensors are detached CPU clones (safe to write while training goes on)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = {k: _snapshot(v) for k, v in obj.items()}
        if isinstance(obj, OrderedDict):  # a module state_dict: keep its version metadata
            out = OrderedDict(out)
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time, atomically.

    Writing VGG-11's checkpoint (weights + Adam state, ~1.5 GB) takes seconds to tens of
    seconds on a busy disk; training goes on meanwhile from a snapshot taken in memory. `wait`
    blocks until the last write is on disk and re-raises its error, if any.
    """

    def __init__(self):
        self._thread = None
        self._error = None

    def save(self, path: Path, payload: dict) -> None:
        self.wait()

        def run():
            try:
                _save_checkpoint(path, payload)
            except BaseException as error:  # noqa: BLE001 - re-raised by wait()
                self._error = error

        self._thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
HISTORY_COLUMNS = [
    "epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy",
    "val_sens_normal", "val_sens_pneumonia", "val_sens_COVID-19", "train_images", "train_seconds",
    "train_images_per_s", "val_seconds", "checkpoint_seconds", "selected",
]


@dataclass
class TrainResult:
    history: pd.DataFrame
    best_epoch: int
    best_state: dict
    info: dict


def _selection_key(row: dict) -> tuple:
    """Higher is better: val balanced accuracy (the mean of the per-class sensitivities, i.e.
    what accuracy is on a class-balanced test set like COVIDx5's), then lower val loss."""
    score = row["val_balanced_accuracy"]
    return (-math.inf if math.isnan(score) else score, -row["val_loss"])


def train_classifier(
    arch: str,
    recipe: dict,
    train: Split,
    val: Split,
    seed: int,
    checkpoint_dir: str | os.PathLike,
    *,
    device: str = "auto",
    threads: int = 1,
    pretrained_weights: str | None = None,
    build: Callable | None = None,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    checkpoint_every: int = 1,
) -> TrainResult:
    """Train `arch` with `recipe` on `train`, select the epoch on `val`; resume from
    `checkpoint_dir` if it holds a checkpoint of the same run.

    `build(arch, num_classes=, width=, pretrained_weights=)` makes the model (default:
    :func:`hideseek.models.build_model`). `stop_after_epoch` ends the call right after that
    epoch's checkpoint, as a kill would (for tests).
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from .augment import AugmentConfig, augment_batch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (CUDA)
    seed_everything(seed)
    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    if build is None:
        from .models import build_model as build
    perf = performance_settings(recipe, dev)
    model = build(arch, num_classes=len(CLASSES), width=recipe["width"],
                  pretrained_weights=pretrained_weights if recipe["pretrained"] else None)
    model = model.to(dev, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
    optimizer, fused = make_optimizer(model, recipe, dev)
    perf["fused_adam"] = fused
    perf["threads"] = torch.get_num_threads() if dev.type == "cpu" else None

    sampler_gen = torch.Generator().manual_seed(seed)
    augment_gen = torch.Generator().manual_seed(seed + 1_000_003)
    sampler = make_sampler(recipe, train.labels, sampler_gen)
    augment_cfg = AugmentConfig.from_config(recipe["augment"])
    class_weights = torch.tensor(recipe["class_weights"], dtype=torch.float32, device=dev)

    fingerprint = hashlib.sha1(json.dumps(
        dict(arch=arch, seed=seed, recipe=recipe, pretrained=str(pretrained_weights) if recipe["pretrained"] else None,
             train=split_fingerprint(train), val=split_fingerprint(val)), sort_keys=True).encode()).hexdigest()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME

    history: list[dict] = []
    best_epoch, best_state, best_key = 0, None, None
    start_epoch = 1
    if checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path)
        if checkpoint.get("format") == CHECKPOINT_FORMAT and checkpoint.get("fingerprint") == fingerprint:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            history = list(checkpoint["history"])
            best_epoch = checkpoint["best"]["epoch"]
            best_state = checkpoint["best"]["state_dict"]
            best_key = _selection_key(history[best_epoch - 1])
            _set_rng_state(checkpoint["rng"], sampler_gen, augment_gen)
            start_epoch = checkpoint["epoch"] + 1
            log.info("resuming %s from %s after epoch %d", arch, checkpoint_path, checkpoint["epoch"])
        else:
            log.warning("ignoring checkpoint %s: it belongs to a different run (recipe, data or seed changed)",
                        checkpoint_path)
        del checkpoint

    train_images = train.images.to(dev)
    train_labels = train.labels.to(dev)
    # A fixed, class-mixed order of training images for BatchNorm recalibration.
    recalibration_order = torch.from_numpy(
        np.random.default_rng(seed).permutation(len(train)).astype(np.int64)).to(dev)
    val_images = val.images.to(dev)
    val_true = val.labels.numpy()
    log.info("%s: %d train / %d val images at %d px; %s", arch, len(train), len(val), recipe["input_size"], perf)

    writer = CheckpointWriter()
    for epoch in range(start_epoch, recipe["epochs"] + 1):
        model.train()
        batches = sampler.epoch()
        started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        bar = tqdm(batches, desc=f"{arch} epoch {epoch}/{recipe['epochs']}", unit="batch", disable=not progress,
                   file=sys.stderr, mininterval=2.0, leave=False)
        for batch_index in bar:
            batch_index = batch_index.to(dev)
            x = to_model_input(train_images[batch_index], perf,
                               lambda t: augment_batch(t, augment_cfg, augment_gen))
            y = train_labels[batch_index]
            with _autocast(perf):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum = loss_sum + loss.detach() * len(y)  # stays on the device: no sync per step
            seen += len(y)
        bar.close()
        loss_sum = float(loss_sum)
        train_seconds = time.perf_counter() - started

        started = time.perf_counter()
        recalibrate_batchnorm(model, train_images[recalibration_order[:recipe["bn_recalibration_images"]]], perf, recipe["batch_size"],
                              recipe["bn_recalibration_images"])
        logits = predict_logits(model, val_images, perf, recipe["eval_batch_size"])
        val_loss = float(F.cross_entropy(logits, val.labels)) if len(val) else float("nan")
        metrics = class_metrics(val_true, logits.argmax(1).numpy())
        val_seconds = time.perf_counter() - started
        row = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), val_loss=val_loss,
                   val_accuracy=metrics["accuracy"], val_balanced_accuracy=metrics["balanced_accuracy"],
                   **{f"val_sens_{c}": metrics[f"sens_{c}"] for c in CLASSES},
                   train_images=seen, train_seconds=train_seconds,
                   train_images_per_s=seen / train_seconds if train_seconds > 0 else float("nan"),
                   val_seconds=val_seconds, checkpoint_seconds=0.0)  # val_seconds includes BN recalibration
        history.append(row)
        key = _selection_key(row)
        if best_key is None or key > best_key:
            best_epoch, best_key = epoch, key
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.3f, val balanced acc %.3f, %.1f img/s%s",
                 epoch, row["train_loss"], val_loss, row["val_accuracy"], row["val_balanced_accuracy"],
                 row["train_images_per_s"], " (best so far)" if best_epoch == epoch else "")

        # The checkpoint after the last epoch is skipped: the outputs are written right away,
        # and a kill before they are complete just repeats the last epoch.
        last = epoch == recipe["epochs"]
        if not last and checkpoint_every > 0 and (epoch % checkpoint_every == 0 or epoch == stop_after_epoch):
            started = time.perf_counter()  # time the training loop waits: snapshot + previous write
            model_state = _snapshot(model.state_dict())
            writer.save(checkpoint_path, dict(
                format=CHECKPOINT_FORMAT, fingerprint=fingerprint, arch=arch, seed=seed, epoch=epoch,
                config=recipe, model=model_state, optimizer=_snapshot(optimizer.state_dict()),
                # Same tensors as `model` when this epoch is the best: torch.save stores them once.
                best=dict(epoch=best_epoch, state_dict=model_state if best_epoch == epoch else best_state),
                history=[dict(r) for r in history], rng=_rng_state(sampler_gen, augment_gen), run_info=dict(perf),
            ))
            row["checkpoint_seconds"] = time.perf_counter() - started
        if stop_after_epoch is not None and epoch == stop_after_epoch and not last:
            writer.wait()
            raise KeyboardInterrupt(f"stopped after epoch {epoch} (stop_after_epoch)")
    writer.wait()

    frame = pd.DataFrame(history, columns=[c for c in HISTORY_COLUMNS if c != "selected"])
    frame["selected"] = frame["epoch"] == best_epoch
    info = dict(arch=arch, seed=seed, best_epoch=best_epoch, epochs=recipe["epochs"], n_train=len(train),
                n_val=len(val), recipe=recipe, pretrained_weights=str(pretrained_weights) if recipe["pretrained"] else None,
                selection="validation balanced accuracy (mean per-class sensitivity), ties: lower val loss",
                torch_version=torch.__version__, **perf)
    return TrainResult(history=frame, best_epoch=best_epoch, best_state=best_state, info=info)


def write_training_outputs(result: TrainResult, model_path, history_path, info_path, extra: dict | None = None) -> None:
    """model.pt (selected weights + everything needed to rebuild and evaluate), history CSV, info JSON."""
    import torch

    info = dict(result.info, **(extra or {}))
    with atomic_path(model_path) as tmp:
        torch.save(dict(format=CHECKPOINT_FORMAT, arch=info["arch"], classes=list(CLASSES),
                        state_dict=result.best_state, epoch=result.best_epoch, recipe=info["recipe"],
                        info=json.loads(json.dumps(info, default=str))), tmp)
    write_csv_atomic(result.history, history_path)
    write_text_atomic(info_path, json.dumps(info, indent=2, default=str) + "\n")


def remove_checkpoints(checkpoint_dir) -> None:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Evaluation: predictions of one trained model on the test partition of every representation
# --------------------------------------------------------------------------------------------
PREDICTION_COLUMNS = [
    "arch", "train_rep", "seed", "test_rep", "image_id", "patient_id", "source", "true", "predicted",
    "p_normal", "p_pneumonia", "p_covid",
]


def load_trained(model_path, device: str = "auto", build: Callable | None = None):
    """(model on the device, saved payload, performance settings) from a model.pt."""
    import torch

    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    dev = resolve_device(device)
    if build is None:
        from .models import build_model as build
    recipe = payload["recipe"]
    model = build(payload["arch"], num_classes=len(payload["classes"]), width=recipe["width"], pretrained_weights=None)
    model.load_state_dict(payload["state_dict"])
    perf = performance_settings(recipe, dev)
    model = model.to(dev, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
    return model, payload, perf


def evaluate_classifier(model_path, stores: dict, train_rep: str, seed: int, *, device: str = "auto",
                        threads: int = 1, partition: str = "test", build: Callable | None = None) -> pd.DataFrame:
    """Per-image predictions of one model on `partition` of every store in `stores`
    (``{test_rep: (pixels_path, index_path)}``), in that order."""
    import torch

    seed_everything(seed)
    if resolve_device(device).type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    model, payload, perf = load_trained(model_path, device, build)
    recipe = payload["recipe"]
    frames = []
    for test_rep, (pixels, index) in stores.items():
        split = load_split(pixels, index, partition, recipe["input_size"])
        started = time.perf_counter()
        probs = torch.softmax(predict_logits(model, split.images, perf, recipe["eval_batch_size"]), 1).numpy()
        log.info("%s on %s/%s: %d images in %.1f s", payload["arch"], test_rep, partition, len(split),
                 time.perf_counter() - started)
        frame = split.frame
        frames.append(pd.DataFrame({
            "arch": payload["arch"], "train_rep": train_rep, "seed": seed, "test_rep": test_rep,
            "image_id": frame["image_id"], "patient_id": frame["patient_id"], "source": frame["source"],
            "true": frame["label"], "predicted": [CLASSES[i] for i in probs.argmax(1)],
            "p_normal": probs[:, 0], "p_pneumonia": probs[:, 1], "p_covid": probs[:, 2],
        }))
    return pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
