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
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import checkpoints
from ..devices import resolve_device
from ..io import atomic_path, write_csv_atomic, write_text_atomic
from ..seeding import seed_everything
from ..vocabulary import CLASSES
from .augment import AugmentConfig, augment_batch
from .inputs import Split, split_fingerprint
from .performance import autocast, make_optimizer, performance_settings, to_model_input
from .prediction import MODEL_FORMAT, predict_logits
from .samplers import make_sampler

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"

































# --------------------------------------------------------------------------------------------
# Forward passes
# --------------------------------------------------------------------------------------------






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

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (CUDA)
    seed_everything(seed)
    dev = resolve_device(device, "classification.device")
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
    checkpoint = checkpoints.load(checkpoint_path, fingerprint)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        history = list(checkpoint["history"])
        best_epoch = checkpoint["best"]["epoch"]
        best_state = checkpoint["best"]["state_dict"]
        best_key = _selection_key(history[best_epoch - 1])
        checkpoints.set_rng_state(checkpoint["rng"], dict(sampler=sampler_gen, augment=augment_gen))
        start_epoch = checkpoint["epoch"] + 1
        log.info("resuming %s from %s after epoch %d", arch, checkpoint_path, checkpoint["epoch"])
    del checkpoint

    train_images = train.images.to(dev)
    train_labels = train.labels.to(dev)
    # A fixed, class-mixed order of training images for BatchNorm recalibration.
    recalibration_order = torch.from_numpy(
        np.random.default_rng(seed).permutation(len(train)).astype(np.int64)).to(dev)
    val_images = val.images.to(dev)
    val_true = val.labels.numpy()
    log.info("%s: %d train / %d val images at %d px; %s", arch, len(train), len(val), recipe["input_size"], perf)

    writer = checkpoints.CheckpointWriter()
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
            with autocast(perf):
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
            model_state = checkpoints.snapshot(model.state_dict())
            writer.save(checkpoint_path, dict(
                fingerprint=fingerprint, arch=arch, seed=seed, epoch=epoch,
                config=recipe, model=model_state, optimizer=checkpoints.snapshot(optimizer.state_dict()),
                # Same tensors as `model` when this epoch is the best: torch.save stores them once.
                best=dict(epoch=best_epoch, state_dict=model_state if best_epoch == epoch else best_state),
                history=[dict(r) for r in history], rng=checkpoints.rng_state(dict(sampler=sampler_gen, augment=augment_gen)), run_info=dict(perf),
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
        torch.save(dict(format=MODEL_FORMAT, arch=info["arch"], classes=list(CLASSES),
                        state_dict=result.best_state, epoch=result.best_epoch, recipe=info["recipe"],
                        info=json.loads(json.dumps(info, default=str))), tmp)
    write_csv_atomic(result.history, history_path)
    write_text_atomic(info_path, json.dumps(info, indent=2, default=str) + "\n")


def remove_checkpoints(checkpoint_dir) -> None:
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Evaluation: predictions of one trained model on the test partition of every representation
# --------------------------------------------------------------------------------------------




