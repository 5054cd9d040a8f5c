"""Every trained model of one architecture, scored on an external set's matching representation."""

from __future__ import annotations

import logging

import pandas as pd

from ..classification.prediction import evaluate_classifier
from ..io import write_csv_atomic

log = logging.getLogger(__name__)


def write_external_predictions(models: dict, stores: dict, out_csv, *, device: str = "auto",
                               threads: int = 1) -> pd.DataFrame:
    """The external_predictions job. `models`: (train_rep, seed) -> model.pt; `stores`:
    rep -> (pixels, index) of the external set. Each model is tested on its own representation
    only; the per-image rows (PREDICTION_COLUMNS) of all models go to `out_csv`."""
    frames = []
    for (rep, seed), model in models.items():
        frame = evaluate_classifier(model, {rep: stores[rep]}, rep, int(seed), device=device, threads=threads)
        log.info("%s trained on %s (seed %s): accuracy %.3f on the external set (%d images)", frame["arch"].iloc[0],
                 rep, seed, (frame["true"] == frame["predicted"]).mean(), len(frame))
        frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    write_csv_atomic(predictions, out_csv)
    return predictions
