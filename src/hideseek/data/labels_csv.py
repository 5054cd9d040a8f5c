"""A folder of images with a labels CSV: a data set without split files (``classification_data.kind: labels_csv``).

The CSV has a header row, then one image a row:

- ``filename`` (relative to ``image_dir``) **or** ``SOPInstanceUID`` (the DICOM files are then
  found anywhere under ``image_dir``, by the UID in their headers): the key, exactly one of the two;
- ``label``: ``normal``, ``pneumonia`` or ``COVID-19``;
- ``patient_id``: optional when ``classification_data.patient_from`` takes it from the headers;
- ``source``: optional (else ``source_from``, ``source_rules``, or ``unknown``).

Other columns are ignored. The rows become split-file rows of one pool (``split_file`` is the
CSV, ``line`` its line), so the checks, duplicate handling and the carving of the test split by
patient are those of a single labels file (:mod:`.ingest`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

import pandas as pd

from ..errors import InputError, Problem, format_problems
from ..vocabulary import CLASSES
from .splitfiles import _escapes_root, _read_utf8, split_duplicates

log = logging.getLogger(__name__)

KEY_COLUMNS = ("filename", "SOPInstanceUID")
FRAME_COLUMNS = ["patient_id", "filename", "label", "source", "split_file", "line", "partition"]


def read_labels_csv(path: str | Path, image_dir: str | Path, patient_from: str | None = None,
                    partition: str = "pool") -> tuple[pd.DataFrame, list[Problem], list[Problem]]:
    """The CSV's rows as split-file rows of `partition` (``pool``: the test split is carved from it).

    Returns (rows, notes on rows listed twice and kept once, rows whose SOPInstanceUID no file
    under `image_dir` has: missing images, for ``on_missing``). Malformed rows (label, key, a
    name outside the folder, a row listed twice with a different label or patient, a UID in
    several files) raise one InputError listing every one as ``file:line: reason``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels CSV not found: {path} (classification_data.labels_csv)")
    records = csv.reader(io.StringIO(_read_utf8(path), newline=""))
    header = next((row for row in records if any(cell.strip() for cell in row)), None)
    if header is None:
        raise InputError(f"{path}: the labels CSV is empty; it needs a header row (filename or SOPInstanceUID, "
                         "label, optional patient_id and source) and one row per image")
    header = [cell.strip() for cell in header]
    key = _key_column(path, header, patient_from)
    rows, problems, missing, uids = [], [], [], []
    for record in records:
        line = records.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            problems.append(Problem(str(path), line, f"expected {len(header)} comma-separated fields "
                                                     f"({', '.join(header)}), found {len(record)}"))
            continue
        cells = {name: cell.strip() for name, cell in zip(header, record)}
        reason = _row_problem(cells, key, patient_from, image_dir)
        if reason:
            problems.append(Problem(str(path), line, reason))
            continue
        rows.append(dict(patient_id=cells.get("patient_id", ""), filename=cells.get("filename", ""),
                         label=cells["label"], source=cells.get("source") or None, split_file=str(path),
                         line=line, partition=partition))
        uids.append(cells.get("SOPInstanceUID", ""))
    if key == "SOPInstanceUID" and rows:
        rows, found = _resolve_uids(path, rows, uids, image_dir)
        problems += found["ambiguous"]
        missing = found["missing"]
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame, conflicts, notes = split_duplicates(frame)
    problems += conflicts
    if problems:
        raise InputError(format_problems(problems, f"the labels CSV {path} has rows that cannot be used",
                                         "Fix these rows; on_missing: drop only covers missing or unreadable images."))
    if frame.empty and not missing:
        raise InputError(f"no image rows found in {path}")
    return frame, notes, missing


def _key_column(path: Path, header: list[str], patient_from: str | None) -> str:
    keys = [name for name in KEY_COLUMNS if name in header]
    found = f"(its header is: {', '.join(header)})"
    if len(keys) != 1:
        raise InputError(f"{path}: the labels CSV needs exactly one key column, filename or SOPInstanceUID "
                         f"{found}; {'keep one of the two' if keys else 'name the column holding the key'}")
    if "label" not in header:
        raise InputError(f"{path}: the labels CSV has no label column {found}")
    if "patient_id" not in header and not patient_from:
        raise InputError(f"{path}: the labels CSV has no patient_id column {found}, and "
                         "classification_data.patient_from is not set: add the column, or set patient_from: "
                         "PatientID to take each patient from the DICOM headers")
    return keys[0]


def _row_problem(cells: dict[str, str], key: str, patient_from: str | None, image_dir) -> str | None:
    label = cells["label"]
    if label not in CLASSES:
        matches = [c for c in CLASSES if c.lower() == label.lower()]
        hint = f" (labels are case-sensitive: did you mean '{matches[0]}'?)" if matches else ""
        return f"label '{label}' is not one of {', '.join(CLASSES)}{hint}"
    if not cells[key]:
        return f"the {key} cell is empty"
    if not patient_from and not cells.get("patient_id"):
        return "the patient_id cell is empty (or set classification_data.patient_from to take it from the headers)"
    return _escapes_root(cells["filename"], image_dir) if key == "filename" else None


def dicom_files_by_uid(image_dir: str | Path, progress: bool = True) -> dict[str, list[str]]:
    """Every DICOM file under `image_dir` (recursively, any name) by its SOPInstanceUID, as paths
    relative to the folder; files that do not parse or carry no UID are left out (and counted in the log)."""
    import pydicom
    from tqdm import tqdm

    from .dicom import is_dicom

    image_dir = Path(image_dir)
    paths = sorted(Path(root, name) for root, _, names in os.walk(image_dir) for name in names)
    by_uid: dict[str, list[str]] = {}
    skipped = 0
    for file in tqdm(paths, desc="reading SOPInstanceUIDs", unit="file", disable=not progress, mininterval=2.0):
        if not is_dicom(file):
            continue
        try:
            uid = str(pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPInstanceUID"],
                                      force=True).get("SOPInstanceUID", "")).strip()
        except Exception:  # a broken file is reported only if a row needs it (as a missing UID)
            uid = ""
        if not uid:
            skipped += 1
            continue
        by_uid.setdefault(uid, []).append(file.relative_to(image_dir).as_posix())
    if skipped:
        log.warning("%d files under %s look like DICOM but have no readable SOPInstanceUID (DICOMDIR?)",
                    skipped, image_dir)
    return by_uid


def _resolve_uids(path: Path, rows: list[dict], uids: list[str], image_dir) -> tuple[list[dict], dict]:
    """Rows with the file name their UID is found in; rows whose UID is in no file, or in several."""
    by_uid = dicom_files_by_uid(image_dir)
    resolved, found = [], dict(missing=[], ambiguous=[])
    for row, uid in zip(rows, uids):
        files = by_uid.get(uid, [])
        if len(files) == 1:
            resolved.append({**row, "filename": files[0]})
        elif not files:
            found["missing"].append(Problem(str(path), row["line"],
                                            f"no DICOM file under {image_dir} has SOPInstanceUID {uid}"))
        else:
            found["ambiguous"].append(Problem(str(path), row["line"], f"SOPInstanceUID {uid} is in {len(files)} files: "
                                              f"{', '.join(files[:5])}; keep one, or key the CSV by filename"))
    log.info("labels CSV %s: %d of %d SOPInstanceUIDs found under %s", path, len(resolved), len(rows), image_dir)
    return resolved, found
