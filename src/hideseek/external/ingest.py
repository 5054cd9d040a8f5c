"""Ingest an external test set into its own store, and check it against the training data.

Ingestion is the classification data's (:func:`hideseek.data.ingest.ingest_classification_data`
with ``test_only``): the same split-file checks, source rules, decoding, 8-bit rule and store
long side, so the same models read the store. Then every external image is compared with every
image of the training store (train, val and test partitions):

* ``patient``: its patient id is also a patient of the training data;
* ``exact`` / ``near``: its pixels are a copy of a training image (the content checks of
  :mod:`hideseek.data.duplicates`: the same stored pixels, or detail thumbnails correlating at
  least ``near_duplicate_threshold``).

An external set that shares patients or images with the training data does not measure another
site. ``on_overlap: fail`` lists every such image and stops; ``drop`` leaves them out of the
external store and reports them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.duplicates import content_hashes, near_pairs, thumbnails
from ..data.ingest import _compact_store, ingest_classification_data
from ..data.store import ImageStore
from ..errors import InputError, format_problems
from ..io import write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)

OVERLAP_COLUMNS = ["image_id", "patient_id", "kind", "training_image_id", "training_patient_id",
                   "training_partition", "correlation", "action"]


def training_overlap(ext: ImageStore, train: ImageStore, threshold: float | None) -> pd.DataFrame:
    """External images that share a patient, or are a copy (exact or near), of a training image:
    one row per (external image, training image or patient, kind); columns OVERLAP_COLUMNS but action."""
    ei, ti = ext.index.reset_index(drop=True), train.index.reset_index(drop=True)
    rows = []
    first_of_patient = pd.Series(np.arange(len(ti)), index=ti["patient_id"].to_numpy())
    first_of_patient = first_of_patient[~first_of_patient.index.duplicated()]
    shared = ei["patient_id"].isin(first_of_patient.index).to_numpy()
    rows += [(int(e), int(first_of_patient[p]), "patient", np.nan)
             for e, p in zip(np.flatnonzero(shared), ei["patient_id"].to_numpy()[shared])]
    train_hash = pd.Series(np.arange(len(ti)), index=content_hashes(train.pixels, ti))
    train_hash = train_hash[~train_hash.index.duplicated()]
    for position, digest in enumerate(content_hashes(ext.pixels, ei)):
        if digest in train_hash.index:
            rows.append((position, int(train_hash[digest]), "exact", 1.0))
    if threshold is not None:
        stacked = np.vstack([thumbnails(train.pixels, ti), thumbnails(ext.pixels, ei)])
        i, j, r = near_pairs(stacked, threshold)
        across = (i < len(ti)) & (j >= len(ti))  # i < j: a training row with an external row
        exact = {(e, t) for e, t, kind, _ in rows if kind == "exact"}
        rows += [(int(e), int(t), "near", float(min(c, 1.0)))
                 for t, e, c in zip(i[across], j[across] - len(ti), r[across]) if (e, t) not in exact]
    frame = pd.DataFrame(rows, columns=["ext", "train", "kind", "correlation"])
    return pd.DataFrame({
        "image_id": ei["image_id"].to_numpy()[frame["ext"].to_numpy(np.int64)],
        "patient_id": ei["patient_id"].to_numpy()[frame["ext"].to_numpy(np.int64)],
        "kind": frame["kind"].to_numpy(),
        "training_image_id": ti["image_id"].to_numpy()[frame["train"].to_numpy(np.int64)],
        "training_patient_id": ti["patient_id"].to_numpy()[frame["train"].to_numpy(np.int64)],
        "training_partition": ti["partition"].to_numpy()[frame["train"].to_numpy(np.int64)],
        "correlation": frame["correlation"].round(4).to_numpy(),
    }).sort_values(["image_id", "kind", "training_image_id"], ignore_index=True)


def _overlap_reason(row) -> str:
    what = {"patient": f"patient {row.patient_id} is also a training-data patient (e.g. {row.training_image_id})",
            "exact": f"an exact copy of training image {row.training_image_id}",
            "near": f"a near copy (correlation {row.correlation:.4f}) of training image {row.training_image_id}"}
    return f"{row.image_id}: {what[row.kind]} ({row.training_partition})"


def ingest_external(name: str, ext_cfg: dict, store_cfg: dict, image_dir, test_split, training_pixels,
                    training_index, out: dict, threads: int = 1, labels_csv=None) -> pd.DataFrame:
    """The external_ingest job: the external store and its reports; return its index.

    `ext_cfg` is the validated ``external_test_sets.<name>`` section, `store_cfg` the ``store``
    section (the training store's long side and bit-depth rule). The images are listed by the split
    file `test_split` or (kind labels_csv) by `labels_csv`. `out` holds the paths index,
    pixels, dropped, duplicates, overlap, report. On an InputError no store is left behind.
    """
    key = f"external_test_sets.{name}"
    # the classification_data keys ingestion reads (DICOM: patient / source from the header, the window)
    data_cfg = dict(source_rules=ext_cfg["source_rules"], on_missing=ext_cfg["on_missing"],
                    near_duplicate_threshold=ext_cfg["near_duplicate_threshold"], on_duplicate="fail",
                    **{key: ext_cfg.get(key) for key in ("patient_from", "source_from", "dicom_window")})
    try:
        index = ingest_classification_data(
            data_cfg, store_cfg["long_side"], image_dir=image_dir, train_split=None, test_split=test_split,
            out_index=out["index"], out_pixels=out["pixels"], out_dropped=out["dropped"], out_report=out["report"],
            out_duplicates=out["duplicates"], threads=threads, bits_stored=store_cfg["bits_stored"], test_only=True,
            labels_csv=labels_csv)
    except InputError as err:
        raise InputError(f"{key}: {err}".replace("classification_data.", f"{key}.")) from None
    try:
        overlap = training_overlap(ImageStore(out["pixels"], index), ImageStore(training_pixels, training_index),
                                   ext_cfg["near_duplicate_threshold"])
        shared = overlap["image_id"].unique()
        if len(shared) and ext_cfg["on_overlap"] == "fail":
            raise InputError(format_problems(
                [_overlap_reason(row) for row in overlap.itertuples()],
                f"{key}: {len(shared)} external image(s) share a patient or are copies of the training data, so they "
                "would not measure another site",
                f"Remove them from {test_split or labels_csv}, or set {key}.on_overlap: drop to leave them out and "
                "report them."))
        overlap["action"] = "dropped" if len(shared) else []
        if len(shared):
            log.warning("%s: dropped %d image(s) shared with the training data (on_overlap: drop)", name, len(shared))
            index = index[~index["image_id"].isin(shared)].reset_index(drop=True)
            _compact_store(np.load(out["pixels"], mmap_mode="r"), index, out["pixels"], out["index"])
        write_csv_atomic(overlap[OVERLAP_COLUMNS], out["overlap"])
        report = Path(out["report"]).read_text().replace("# Ingestion report", f"# Ingestion report: {key}", 1)
        report = report.replace("classification_data.", f"{key}.")
        write_text_atomic(out["report"], report + "\n" + "\n".join(overlap_lines(overlap, ext_cfg)) + "\n")
    except BaseException:
        Path(out["pixels"]).unlink(missing_ok=True)
        raise
    log.info("%s: %d external test images of %d patients", name, len(index), index["patient_id"].nunique())
    return index


def overlap_lines(overlap: pd.DataFrame, ext_cfg: dict) -> list[str]:
    """The report's section on patients and images shared with the training data."""
    threshold = ext_cfg["near_duplicate_threshold"]
    how = ("the same patient id, the same stored pixels, or detail thumbnails correlating at least "
           f"{threshold}" if threshold is not None else "the same patient id or the same stored pixels")
    lines = [f"## Shared with the training data ({overlap['image_id'].nunique()} images)", "",
             f"Every external image against every training-store image (train, val, test): {how}; "
             f"on_overlap: {ext_cfg['on_overlap']}. Each match is a row of overlap.csv.", ""]
    if overlap.empty:
        return lines + ["None: no external patient or image is in the training data."]
    counts = overlap.groupby("kind")["image_id"].nunique().rename("external images")
    return lines + [counts.to_frame().to_markdown()]
