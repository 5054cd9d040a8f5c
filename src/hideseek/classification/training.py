"""Training one classifier: one architecture × representation × seed on in-memory splits.

:func:`train_classifier` assembles the parts: a fresh or resumed :class:`_Run` (model,
optimizer, random streams, history, best epoch), then per epoch :func:`train_one_epoch`,
:func:`validate` (precise-BN recalibration, validation logits, metrics) and model selection on
validation balanced accuracy, with a :func:`checkpoint_payload` written in the background
(:mod:`hideseek.checkpoints`). :func:`write_training_outputs` writes the selected model, the
history and the run's info.

The images of both splits stay one ``uint8`` tensor each on the training device; batches are
indexed from it, augmented (:mod:`.augment`) and converted to the model's input
(:mod:`.performance`), so no image is decoded during training.

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
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .. import checkpoints
from ..devices import resolve_device
from ..errors import InputError
from ..io import atomic_path, write_csv_atomic, write_text_atomic
from ..seeding import seed_everything
from ..vocabulary import CLASSES
from .augment import AugmentConfig, augment_batch
from .inputs import Split, split_fingerprint
from .performance import autocast, make_optimizer, performance_settings, probed_settings, to_model_input
from .prediction import MODEL_FORMAT, predict_logits
from .samplers import make_sampler

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"



def label_keys(labels) -> list[str]:
    """Each label in snake_case, as in the history's ``val_sens_<key>`` columns: the diagnosis
    classes give ``normal``, ``pneumonia``, ``covid_19``; the source probe's sources their own."""
    keys = [re.sub(r"[^0-9a-z]+", "_", str(label).lower()).strip("_") for label in labels]
    clashes = sorted({k for k in keys if keys.count(k) > 1 or not k})
    if clashes:
        raise InputError(f"labels {list(labels)} do not give one distinct column name each ({clashes}): "
                         "rename them in the data (e.g. the split files' source column)")
    return keys


def history_columns(keys) -> list[str]:
    """One epoch's row of the history (the table adds ``selected`` at the end), for label `keys`."""
    return ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
            *(f"val_sens_{key}" for key in keys), "train_images", "train_seconds", "train_images_per_s",
            "val_seconds", "checkpoint_seconds"]


@dataclass
class TrainResult:
    history: pd.DataFrame
    best_epoch: int
    best_state: dict
    info: dict
    labels: tuple = CLASSES  # the targets' names, in the order of the model's outputs


@dataclass
class _Run:
    """What a training carries from epoch to epoch, and through a checkpoint."""

    model: Any
    optimizer: Any
    generators: dict  # "sampler", "augment": torch.Generators of their own
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None
    best_key: tuple | None = None


@dataclass
class _OnDevice:
    """The images and labels a training reads, moved to its device once."""

    train_images: Any
    train_labels: Any
    recalibration_order: Any  # a fixed, class-mixed order of training images for BN recalibration
    val_images: Any


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
    with torch.no_grad(), autocast(perf):
        for start in range(0, len(subset), batch_size):
            batch = subset[start:start + batch_size]
            if len(batch) > 1:
                model(to_model_input(batch.to(device, non_blocking=True), perf))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def class_metrics(true: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, balanced accuracy (the mean over the classes present in `true`) and
    ``sensitivity``, one per class 0 .. n_classes - 1 (NaN for a class absent from `true`)."""
    sens = [float(np.mean(pred[true == index] == index)) if (true == index).any() else float("nan")
            for index in range(n_classes)]
    return dict(accuracy=float(np.mean(true == pred)) if len(true) else float("nan"), sensitivity=sens,
                balanced_accuracy=float(np.nanmean(sens)) if not all(math.isnan(s) for s in sens) else float("nan"))


def _selection_key(row: dict) -> tuple:
    """Higher is better: val balanced accuracy (the mean of the per-class sensitivities, i.e.
    what accuracy is on a class-balanced test set like COVIDx5's), then lower val loss."""
    score = row["val_balanced_accuracy"]
    return (-math.inf if math.isnan(score) else score, -row["val_loss"])


def _fingerprint(arch: str, seed: int, recipe: dict, pretrained_weights, train: Split, val: Split, labels) -> str:
    """What a checkpoint must match to be resumed: architecture, seed, recipe, weights, data, labels."""
    return hashlib.sha1(json.dumps(
        dict(arch=arch, seed=seed, recipe=recipe, pretrained=str(pretrained_weights) if recipe["pretrained"] else None,
             train=split_fingerprint(train), val=split_fingerprint(val), labels=list(labels)),
        sort_keys=True).encode()).hexdigest()


def _new_run(arch: str, recipe: dict, seed: int, dev, pretrained_weights, build: Callable | None,
             n_classes: int) -> tuple[_Run, dict]:
    """A fresh run on `dev` and the performance settings it trains with."""
    import torch

    if build is None:
        from .models import build_model as build
    model = build(arch, num_classes=n_classes, width=recipe["width"],
                  pretrained_weights=pretrained_weights if recipe["pretrained"] else None)
    perf = performance_settings(recipe, dev, probe=lambda candidates: probed_settings(
        arch, model, recipe, n_classes, dev, candidates))
    model = model.to(dev, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
    optimizer, fused = make_optimizer(model, recipe, dev)
    perf["fused_adam"] = fused
    perf["threads"] = torch.get_num_threads() if dev.type == "cpu" else None
    generators = dict(sampler=torch.Generator().manual_seed(seed),
                      augment=torch.Generator().manual_seed(seed + 1_000_003))
    return _Run(model, optimizer, generators), perf


def resume(run: _Run, checkpoint_path: Path, fingerprint: str) -> int:
    """Put `run` where the checkpoint at `checkpoint_path` left it, if that is one of this run;
    returns the epoch to train next (1 without one)."""
    checkpoint = checkpoints.load(checkpoint_path, fingerprint)
    if checkpoint is None:
        return 1
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.history = list(checkpoint["history"])
    run.best_epoch = checkpoint["best"]["epoch"]
    run.best_state = checkpoint["best"]["state_dict"]
    run.best_key = _selection_key(run.history[run.best_epoch - 1])
    checkpoints.set_rng_state(checkpoint["rng"], run.generators)
    log.info("resuming %s from %s after epoch %d", checkpoint["arch"], checkpoint_path, checkpoint["epoch"])
    return checkpoint["epoch"] + 1


def _on_device(train: Split, val: Split, seed: int, dev) -> _OnDevice:
    """The splits' images and the training labels on `dev`, with the recalibration order."""
    import torch

    return _OnDevice(train_images=train.images.to(dev), train_labels=train.labels.to(dev),
                     recalibration_order=torch.from_numpy(
                         np.random.default_rng(seed).permutation(len(train)).astype(np.int64)).to(dev),
                     val_images=val.images.to(dev))


def learning_rate(recipe: dict, progress: float) -> float:
    """Adam's rate at `progress` (0 at the first step, 1 after the last) of the whole training:
    ``none`` keeps ``lr`` constant; ``cosine`` decays it from ``lr`` to 0 (half a cosine). A function
    of the step alone, so a resumed run continues on the same curve without a scheduler state."""
    if recipe["scheduler"] == "cosine":
        return recipe["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return recipe["lr"]


def train_one_epoch(run: _Run, sampler, data: _OnDevice, recipe: dict, perf: dict, augment_cfg: AugmentConfig,
                    class_weights, epoch: int, desc: str, progress: bool) -> dict:
    """One pass of `sampler` over the training images (epoch `epoch`, 1-based); the history's
    train_* fields."""
    import torch.nn.functional as F
    from tqdm import tqdm

    run.model.train()
    batches = sampler.epoch()
    started = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress, file=sys.stderr, mininterval=2.0, leave=False)
    for step, batch_index in enumerate(bar):
        rate = learning_rate(recipe, (epoch - 1 + step / len(batches)) / recipe["epochs"])
        for group in run.optimizer.param_groups:
            group["lr"] = rate
        batch_index = batch_index.to(data.train_images.device)
        x = to_model_input(data.train_images[batch_index], perf,
                           lambda t: augment_batch(t, augment_cfg, run.generators["augment"]))
        y = data.train_labels[batch_index]
        with autocast(perf):
            logits = run.model(x)
        loss = F.cross_entropy(logits.float(), y, weight=class_weights)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        loss_sum = loss_sum + loss.detach() * len(y)  # stays on the device: no sync per step
        correct = correct + (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    bar.close()
    loss_sum, correct = float(loss_sum), int(correct)
    seconds = time.perf_counter() - started
    # train_accuracy: on the sampled, augmented batches as the model saw them during the epoch
    return dict(train_loss=loss_sum / max(seen, 1), train_accuracy=correct / max(seen, 1), train_images=seen,
                train_seconds=seconds, train_images_per_s=seen / seconds if seconds > 0 else float("nan"))


def validate(model, data: _OnDevice, val: Split, recipe: dict, perf: dict, keys) -> dict:
    """Recalibrate BatchNorm, then score `val` on the label `keys` (:func:`label_keys`); the
    history's val_* fields (val_seconds includes the recalibration)."""
    import torch.nn.functional as F

    started = time.perf_counter()
    n_images = recipe["bn_recalibration_images"]
    recalibrate_batchnorm(model, data.train_images[data.recalibration_order[:n_images]], perf, recipe["batch_size"],
                          n_images)
    logits = predict_logits(model, data.val_images, perf, recipe["eval_batch_size"])
    val_loss = float(F.cross_entropy(logits, val.labels)) if len(val) else float("nan")
    metrics = class_metrics(val.labels.numpy(), logits.argmax(1).numpy(), len(keys))
    return dict(val_loss=val_loss, val_accuracy=metrics["accuracy"], val_balanced_accuracy=metrics["balanced_accuracy"],
                **{f"val_sens_{key}": value for key, value in zip(keys, metrics["sensitivity"])},
                val_seconds=time.perf_counter() - started)


def _record(run: _Run, row: dict) -> None:
    """Append the epoch's `row` to the history; keep the model if it is the best so far."""
    run.history.append(row)
    key = _selection_key(row)
    if run.best_key is None or key > run.best_key:
        run.best_epoch, run.best_key = row["epoch"], key
        run.best_state = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
    log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.3f, val balanced acc %.3f, %.1f img/s%s",
             row["epoch"], row["train_loss"], row["val_loss"], row["val_accuracy"], row["val_balanced_accuracy"],
             row["train_images_per_s"], " (best so far)" if run.best_epoch == row["epoch"] else "")


def checkpoint_payload(run: _Run, epoch: int, fingerprint: str, arch: str, seed: int, recipe: dict,
                       perf: dict) -> dict:
    """Everything :func:`resume` needs, as detached CPU copies (written while training goes on)."""
    model_state = checkpoints.snapshot(run.model.state_dict())
    return dict(
        fingerprint=fingerprint, arch=arch, seed=seed, epoch=epoch,
        config=recipe, model=model_state, optimizer=checkpoints.snapshot(run.optimizer.state_dict()),
        # Same tensors as `model` when this epoch is the best: torch.save stores them once.
        best=dict(epoch=run.best_epoch, state_dict=model_state if run.best_epoch == epoch else run.best_state),
        history=[dict(r) for r in run.history], rng=checkpoints.rng_state(run.generators), run_info=dict(perf),
    )


def train_classifier(arch: str, recipe: dict, train: Split, val: Split, seed: int, checkpoint_dir: str | os.PathLike,
                     *, device: str = "auto", threads: int = 1, pretrained_weights: str | None = None,
                     build: Callable | None = None, progress: bool = True, stop_after_epoch: int | None = None,
                     checkpoint_every: int = 1, labels=CLASSES) -> TrainResult:
    """Train `arch` with `recipe` on `train`, select the epoch on `val`; resume from
    `checkpoint_dir` if it holds a checkpoint of the same run.

    `labels` names the targets (the splits' labels index it; the source probe's are sources): one
    model output and one history column ``val_sens_<label>`` each; selection averages over all.

    `build(arch, num_classes=, width=, pretrained_weights=)` makes the model (default:
    :func:`hideseek.classification.models.build_model`). `stop_after_epoch` ends the call right
    after that epoch's checkpoint, as a kill would (for tests).
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (CUDA)
    seed_everything(seed)
    dev = resolve_device(device, "classification.device")
    if dev.type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    keys = label_keys(labels)
    run, perf = _new_run(arch, recipe, seed, dev, pretrained_weights, build, len(labels))
    sampler = make_sampler(recipe, train.labels, run.generators["sampler"])
    augment_cfg = AugmentConfig.from_config(recipe["augment"])
    class_weights = torch.tensor(recipe["class_weights"], dtype=torch.float32, device=dev)

    fingerprint = _fingerprint(arch, seed, recipe, pretrained_weights, train, val, labels)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    start_epoch = resume(run, checkpoint_path, fingerprint)

    data = _on_device(train, val, seed, dev)
    log.info("%s: %d train / %d val images at %d px; %s", arch, len(train), len(val), recipe["input_size"], perf)
    writer = checkpoints.CheckpointWriter()
    for epoch in range(start_epoch, recipe["epochs"] + 1):
        fields = dict(epoch=epoch, **train_one_epoch(run, sampler, data, recipe, perf, augment_cfg, class_weights, epoch,
                                                     f"{arch} epoch {epoch}/{recipe['epochs']}", progress),
                      **validate(run.model, data, val, recipe, perf, keys), checkpoint_seconds=0.0)
        row = {column: fields[column] for column in history_columns(keys)}
        _record(run, row)
        # The checkpoint after the last epoch is skipped: the outputs are written right away,
        # and a kill before they are complete just repeats the last epoch.
        last = epoch == recipe["epochs"]
        if not last and checkpoint_every > 0 and (epoch % checkpoint_every == 0 or epoch == stop_after_epoch):
            started = time.perf_counter()  # time the training loop waits: snapshot + previous write
            writer.save(checkpoint_path, checkpoint_payload(run, epoch, fingerprint, arch, seed, recipe, perf))
            row["checkpoint_seconds"] = time.perf_counter() - started
        if stop_after_epoch is not None and epoch == stop_after_epoch and not last:
            writer.wait()
            raise KeyboardInterrupt(f"stopped after epoch {epoch} (stop_after_epoch)")
    writer.wait()
    return _result(run, arch, seed, recipe, len(train), len(val), pretrained_weights, perf, tuple(labels))


def _result(run: _Run, arch: str, seed: int, recipe: dict, n_train: int, n_val: int, pretrained_weights,
            perf: dict, labels: tuple) -> TrainResult:
    """The history table (with the selected epoch marked), the selected weights, the run's info."""
    import torch

    frame = pd.DataFrame(run.history, columns=history_columns(label_keys(labels)))
    frame["selected"] = frame["epoch"] == run.best_epoch
    info = dict(arch=arch, seed=seed, best_epoch=run.best_epoch, epochs=recipe["epochs"], n_train=n_train, n_val=n_val,
                recipe=recipe, pretrained_weights=str(pretrained_weights) if recipe["pretrained"] else None,
                selection="validation balanced accuracy (mean per-class sensitivity), ties: lower val loss",
                torch_version=torch.__version__, **perf)
    return TrainResult(history=frame, best_epoch=run.best_epoch, best_state=run.best_state, info=info, labels=labels)


def write_training_outputs(result: TrainResult, model_path, history_path, info_path, extra: dict | None = None) -> None:
    """model.pt (selected weights + everything needed to rebuild and evaluate), history CSV, info JSON."""
    import torch

    info = dict(result.info, **(extra or {}))
    with atomic_path(model_path) as tmp:
        torch.save(dict(format=MODEL_FORMAT, arch=info["arch"], classes=list(result.labels),
                        state_dict=result.best_state, epoch=result.best_epoch, recipe=info["recipe"],
                        info=json.loads(json.dumps(info, default=str))), tmp)
    write_csv_atomic(result.history, history_path)
    write_text_atomic(info_path, json.dumps(info, indent=2, default=str) + "\n")


def remove_checkpoints(checkpoint_dir) -> None:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def run_training_job(arch: str, rep: str, seed: int, recipe: dict, pixels, index, out: dict, *, checkpoint_dir,
                     pretrained_weights=None, device: str = "auto", threads: int = 1, checkpoint_every: int = 1,
                     keep_checkpoints: bool = False) -> TrainResult:
    """The train_classifier job: load the train and val partitions of representation `rep`'s
    store, train, write ``out`` (model, history, info) and drop the checkpoints unless kept."""
    from .inputs import load_split

    train = load_split(pixels, index, "train", recipe["input_size"], per_class=recipe["train_images_per_class"])
    val = load_split(pixels, index, "val", recipe["input_size"])
    result = train_classifier(arch, recipe, train, val, seed, checkpoint_dir, device=device, threads=threads,
                              pretrained_weights=pretrained_weights, checkpoint_every=checkpoint_every)
    write_training_outputs(result, out["model"], out["history"], out["info"], extra=dict(representation=rep))
    if not keep_checkpoints:
        remove_checkpoints(checkpoint_dir)
    log.info("selected epoch %d of %d", result.best_epoch, recipe["epochs"])
    return result
