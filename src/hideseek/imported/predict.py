"""Per-image predictions of an imported model on the test split of every representation: the
hide-at-test-time matrix for a model trained elsewhere, in the prediction CSV format of
:mod:`hideseek.classification.prediction` (``arch`` = the imported model's name, ``train_rep``
= ``imported``, ``seed`` = 0: one model), so every table function of the audit reads it."""

from __future__ import annotations

import logging
import time

import pandas as pd

from ..classification.prediction import PREDICTION_COLUMNS
from ..vocabulary import CLASSES
from .model import ImportedModel, decide
from .preprocess import load_partition

log = logging.getLogger(__name__)

TRAIN_REP = "imported"  # the train_rep column of an imported model's predictions


def predict_stores(model: ImportedModel, stores: dict, partition: str = "test", batch_size: int = 32,
                   progress: bool = True) -> pd.DataFrame:
    """Predictions of `model` on `partition` of every store (``{rep: (pixels, index)}``), in that order."""
    from tqdm import tqdm

    frames = []
    for rep, (pixels, index) in tqdm(stores.items(), desc=f"{model.name}: representations", unit="rep",
                                     disable=not progress):
        images, frame = load_partition(pixels, index, model.pre, partition)
        started = time.perf_counter()
        probs, predicted = decide(model.scores(images, batch_size), model.labels)
        log.info("%s on %s/%s: %d images in %.1f s", model.name, rep, partition, len(frame),
                 time.perf_counter() - started)
        frames.append(pd.DataFrame({
            "arch": model.name, "train_rep": TRAIN_REP, "seed": 0, "test_rep": rep,
            "image_id": frame["image_id"], "patient_id": frame["patient_id"], "source": frame["source"],
            "true": frame["label"], "predicted": [CLASSES[int(i)] for i in predicted],
            "p_normal": probs[:, 0], "p_pneumonia": probs[:, 1], "p_covid": probs[:, 2],
        }))
    return pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]


def write_imported_predictions(name: str, entry: dict, stores: dict, out_csv, *, device: str = "auto",
                               threads: int = 1) -> pd.DataFrame:
    """The imported_predict job: load the model, predict every representation, write the CSV."""
    from ..devices import resolve_device, set_threads
    from ..io import write_csv_atomic
    from .model import load_imported

    set_threads(threads)
    model = load_imported(name, entry, str(resolve_device(device, "classification.device")))
    log.info("%s: %s; preprocessing %s; labels %s", name, model.description, model.pre,
             {k: v for k, v in model.labels.items() if k != "index"})
    predictions = predict_stores(model, stores, batch_size=entry.get("batch_size", 32))
    write_csv_atomic(predictions, out_csv)
    for rep, sub in predictions.groupby("test_rep", sort=False):
        log.info("%s on %s: accuracy %.3f (%d images)", name, rep, (sub["true"] == sub["predicted"]).mean(), len(sub))
    return predictions
