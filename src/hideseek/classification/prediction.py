"""Predictions of a trained classifier: logits in eval mode, and per-image test predictions on
every representation's test split (the hide-at-test-time matrix)."""

from __future__ import annotations

import logging
import time
from typing import Callable

import pandas as pd

from ..devices import resolve_device
from ..seeding import seed_everything
from ..vocabulary import CLASSES
from .inputs import load_split
from .performance import autocast, inference_settings, to_model_input

log = logging.getLogger(__name__)

MODEL_FORMAT = 1  # model.pt written by training.write_training_outputs

def predict_logits(model, images_u8, perf: dict, batch_size: int):
    """Logits (float32, on the CPU) for a uint8 (N, S, S) tensor, in eval mode, no augmentation."""
    import torch

    device = torch.device(perf["device"])
    model.eval()
    chunks = []
    with torch.inference_mode(), autocast(perf):
        for start in range(0, len(images_u8), batch_size):
            batch = images_u8[start:start + batch_size].to(device, non_blocking=True)
            chunks.append(model(to_model_input(batch, perf)).float().cpu())
    if not chunks:
        return torch.empty(0, len(CLASSES))
    return torch.cat(chunks)


PREDICTION_COLUMNS = [
    "arch", "train_rep", "seed", "test_rep", "image_id", "patient_id", "source", "true", "predicted",
    "p_normal", "p_pneumonia", "p_covid",
]


def load_trained(model_path, device: str = "auto", build: Callable | None = None):
    """(model on the device, saved payload, performance settings) from a model.pt."""
    import torch

    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    dev = resolve_device(device, "classification.device")
    if build is None:
        from .models import build_model as build
    recipe = payload["recipe"]
    model = build(payload["arch"], num_classes=len(payload["classes"]), width=recipe["width"], pretrained_weights=None)
    model.load_state_dict(payload["state_dict"])
    perf = inference_settings(payload.get("info", {}), recipe, dev)
    model = model.to(dev, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
    return model, payload, perf


def evaluate_classifier(model_path, stores: dict, train_rep: str, seed: int, *, device: str = "auto",
                        threads: int = 1, partition: str = "test", build: Callable | None = None,
                        split_cache: dict | None = None) -> pd.DataFrame:
    """Per-image predictions of one model on `partition` of every store in `stores`
    (``{test_rep: (pixels_path, index_path)}``), in that order. `split_cache` (a dict the
    caller keeps) holds the loaded splits for the next model of the same input size."""
    import torch

    seed_everything(seed)
    if resolve_device(device, "classification.device").type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    model, payload, perf = load_trained(model_path, device, build)
    recipe = payload["recipe"]
    split_cache = {} if split_cache is None else split_cache
    frames = []
    for test_rep, (pixels, index) in stores.items():
        key = (str(pixels), str(index), partition, int(recipe["input_size"]))
        if key not in split_cache:
            split_cache[key] = load_split(pixels, index, partition, recipe["input_size"])
        split = split_cache[key]
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


HIDING_REP = "data"  # the model tested on every representation: test_time_hiding_{arch}.csv


def write_predictions(runs: dict, stores: dict, outputs: dict, *, device: str = "auto", threads: int = 1,
                      build: Callable | None = None) -> None:
    """The evaluate_classifier job, one per architecture: each model of `runs` (``{(train_rep,
    seed): model.pt}``) on its own representation's test split, and the models trained on
    :data:`HIDING_REP` on every store's (test-time hiding: the only cross-representation
    predictions any table reads), written to ``outputs[(train_rep, seed)]``. One process and one
    load of each test split for all of an architecture's models: per model, a job of its own cost
    a Python start, the torch import and five store loads."""
    from ..io import write_csv_atomic

    split_cache: dict = {}
    for (train_rep, seed), model_path in runs.items():
        started = time.perf_counter()
        tested = stores if train_rep == HIDING_REP else {train_rep: stores[train_rep]}
        predictions = evaluate_classifier(model_path, tested, train_rep, seed, device=device, threads=threads,
                                          build=build, split_cache=split_cache)
        write_csv_atomic(predictions, outputs[(train_rep, seed)])
        own = predictions[predictions["test_rep"] == train_rep]
        log.info("%s trained on %s (seed %d): accuracy %.3f on its own test split (%d images); %d predictions in "
                 "%.1f s", predictions["arch"].iloc[0], train_rep, seed, (own["true"] == own["predicted"]).mean(),
                 len(own), len(predictions), time.perf_counter() - started)
