"""Turn COVIDx-format split files into the checked, split, preprocessed image store.

The one entry point is :func:`ingest_classification_data`; it fails before writing any
output when the input is bad, listing every bad line, or drops bad lines and reports them,
as the config's ``on_missing`` says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MAX_LISTED_PROBLEMS, InputError, Problem, format_problems
from ..io import write_csv_atomic, write_text_atomic
from ..vocabulary import CLASSES, PARTITIONS
from .splitfiles import attribute_sources, parse_split_file, split_duplicates
from .store import write_store

log = logging.getLogger(__name__)

INDEX_ORDER = [
    "image_id", "patient_id", "filename", "label", "source", "source_origin", "partition",
    "split_file", "line", "offset", "height", "width", "orig_height", "orig_width",
]


def ingest_classification_data(
    data_cfg: dict,
    store_long_side: int,
    image_dir: str | Path,
    train_split: str | Path,
    test_split: str | Path | None,
    out_index: str | Path,
    out_pixels: str | Path,
    out_dropped: str | Path,
    out_report: str | Path,
    threads: int = 1,
) -> pd.DataFrame:
    """Parse, validate, attribute sources, decode into the store, split; return the index.

    `data_cfg` is the validated ``classification_data`` config section. Outputs: the store
    (`out_pixels` + `out_index`), a CSV of dropped lines and a Markdown report.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"image folder not found: {image_dir} (classification_data.image_dir)")

    frame, duplicate_notes = read_split_files(train_split, test_split)
    frame = attribute_sources(frame, data_cfg["source_rules"])
    frame["image_id"] = frame["filename"]

    log.info("decoding %d images from %s", len(frame), image_dir)
    kept, image_problems = write_store(frame, image_dir, store_long_side, out_pixels, threads=threads)
    dropped = pd.DataFrame(
        [dict(split_file=p.file, line=p.line, reason=p.reason) for p in image_problems],
        columns=["split_file", "line", "reason"],
    )
    if image_problems and data_cfg["on_missing"] == "fail":
        Path(out_pixels).unlink(missing_ok=True)
        raise InputError(format_problems(
            image_problems, f"images listed in the split files are missing or unreadable under {image_dir}",
            "Fix or remove these lines, or set classification_data.on_missing: drop to drop them and get a report."))
    if image_problems:
        log.warning("dropped %d lines whose image is missing or unreadable (on_missing: drop)", len(image_problems))

    kept = _assign_partitions(kept, data_cfg, has_test_split=test_split is not None)
    try:
        assert_no_leakage(kept)
        assert_every_class_present(kept)
    except InputError:
        Path(out_pixels).unlink(missing_ok=True)
        raise

    kept = kept[INDEX_ORDER]
    write_csv_atomic(dropped, out_dropped)
    write_text_atomic(out_report, ingest_report(kept, dropped, duplicate_notes, data_cfg))
    write_csv_atomic(kept, out_index)
    return kept


def read_split_files(train_split, test_split) -> tuple[pd.DataFrame, list[Problem]]:
    """Every usable line of the split files, exact repeats dropped, and the notes on those
    repeats; raise InputError listing every bad line. Without a test split all lines form
    one pool that the test split is carved from."""
    frames, problems = [], []
    for path, partition in ((train_split, "train"), (test_split, "test")):
        if path is None:
            continue
        frame, found = parse_split_file(path, "pool" if test_split is None else partition)
        frames.append(frame)
        problems += found
    frame, conflicts, duplicate_notes = split_duplicates(pd.concat(frames, ignore_index=True))
    problems += conflicts
    if problems:
        raise InputError(format_problems(
            problems, "the split files have lines that cannot be used",
            "Fix these lines; on_missing: drop only covers missing or unreadable images."))
    if frame.empty:
        raise InputError(f"no image lines found in {train_split}" + (f" or {test_split}" if test_split else ""))
    return frame, duplicate_notes


def _assign_partitions(frame: pd.DataFrame, data_cfg: dict, has_test_split: bool) -> pd.DataFrame:
    """Carve test (if there is no test split) and validation, both grouped by patient."""
    frame = frame.copy()
    seed = data_cfg["split_seed"]
    if not has_test_split:
        test_rows = carve_grouped(frame, data_cfg["test_fraction"], seed, "test")
        frame["partition"] = ["test" if t else "train" for t in test_rows]
    train = frame["partition"] == "train"
    # Patients in both given splits would be moved to val only partly: the audit below catches them.
    val_rows = carve_grouped(frame[train].reset_index(drop=True), data_cfg["val_fraction"], seed + 1, "validation")
    frame.loc[frame.index[train][val_rows], "partition"] = "val"
    return frame


def ingest_report(index: pd.DataFrame, dropped: pd.DataFrame, duplicate_notes: list[Problem], data_cfg: dict) -> str:
    """A short Markdown account of what ingestion did."""
    lines = ["# Ingestion report", ""]
    counts = index.groupby("partition").size().reindex(PARTITIONS, fill_value=0)
    lines.append("Images kept: " + ", ".join(f"{part} {n}" for part, n in counts.items()) + f" (total {len(index)}).")
    lines.append(f"Patients: {index['patient_id'].nunique()}; no patient is in two partitions.")
    lines.append(
        f"Validation: {data_cfg['val_fraction']:.0%} of training patients, class-stratified, seed {data_cfg['split_seed'] + 1}."
    )
    origin = index["source_origin"].value_counts()
    lines.append(
        "Source attribution: "
        + ", ".join(f"{origin.get(k, 0)} from {label}" for k, label in
                    (("column", "the 4th column"), ("rule", "source_rules"), ("unknown", "nothing (unknown)")))
        + "."
    )
    lines += ["", f"## Dropped lines ({len(dropped)})", ""]
    if dropped.empty:
        lines.append("None.")
    else:
        lines += [f"- {row.split_file}:{row.line}: {row.reason}" for row in dropped.itertuples()]
    lines += ["", f"## Exact duplicate lines, kept once ({len(duplicate_notes)})", ""]
    lines += [f"- {note}" for note in duplicate_notes] or ["None."]
    labels = index.groupby(["partition", "label"]).size().unstack(fill_value=0).reindex(columns=list(CLASSES), fill_value=0)
    lines += ["", "## Images per class", "", labels.to_markdown(), ""]
    return "\n".join(lines)


def carve_grouped(frame: pd.DataFrame, fraction: float, seed: int, what: str) -> np.ndarray:
    """Boolean mask of rows to move out: about `fraction` of patients, class-stratified.

    Uses scikit-learn's StratifiedGroupKFold, so a patient is never cut in two.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_patients = frame["patient_id"].nunique()
    n_splits = max(2, round(1.0 / fraction))
    if n_patients < n_splits:
        raise InputError(
            f"cannot carve a {what} split of {fraction:.0%} from {n_patients} patients: "
            f"need at least {n_splits} patients (lower the fraction or add data)"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held_out = next(splitter.split(np.zeros(len(frame)), frame["label"], frame["patient_id"]))
    mask = np.zeros(len(frame), dtype=bool)
    mask[held_out] = True
    return mask


def leaking_patients(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Patients found in more than one partition, with the partitions they are in."""
    per_patient = frame.groupby("patient_id")["partition"].unique()
    return {patient: sorted(parts) for patient, parts in per_patient.items() if len(parts) > 1}


def assert_no_leakage(frame: pd.DataFrame) -> None:
    leaks = leaking_patients(frame)
    if leaks:
        listed = "\n".join(f"  patient {p}: {', '.join(parts)}" for p, parts in list(leaks.items())[:MAX_LISTED_PROBLEMS])
        raise InputError(
            f"{len(leaks)} patient(s) appear in more than one of train/val/test, which leaks "
            f"patients between training and evaluation:\n{listed}\n"
            "Fix the split files so that each patient is in one partition only."
        )


def assert_every_class_present(frame: pd.DataFrame) -> None:
    """Each partition needs every class, or sensitivities and PPVs are undefined."""
    missing = [
        f"  {part}: no '{label}' images"
        for part in ("train", "val", "test")
        for label in CLASSES
        if not ((frame["partition"] == part) & (frame["label"] == label)).any()
    ]
    if missing:
        raise InputError("after splitting, some partitions lack a class:\n" + "\n".join(missing)
                         + "\nAdd data for those classes or change val_fraction/test_fraction.")
