"""COVIDx-format split files: parse, check, drop exact duplicates, attribute sources.

Every problem is collected before anything fails, so a user sees the whole list of bad
lines at once, each as ``file:line: reason``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, Problem
from ..vocabulary import CLASSES, UNKNOWN_SOURCE

log = logging.getLogger(__name__)







def _escapes_root(filename: str) -> bool:
    """True when a split file's file name points outside the image folder."""
    if filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", filename):
        return True
    depth = 0
    for part in re.split(r"[\\/]+", filename):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def parse_split_file(path: str | Path, partition: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Parse a COVIDx split file: ``patient_id filename label [source]`` per line, no header.

    Returns the valid rows and the problems found (wrong column count, unknown label,
    file name escaping the image folder, conflicting duplicates). Exact duplicate lines are
    kept once; they are not problems but are reported by :func:`duplicate_notes`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split file not found: {path} (check classification_data in your config)")
    rows, problems = [], []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) not in (3, 4):
                problems.append(Problem(str(path), line_no, f"expected 3 or 4 space-separated columns (patient_id filename label [source]), found {len(fields)}"))
                continue
            patient_id, filename, label = fields[:3]
            source = fields[3] if len(fields) == 4 else None
            if label not in CLASSES:
                hint = ""
                matches = [c for c in CLASSES if c.lower() == label.lower()]
                if matches:
                    hint = f" (labels are case-sensitive: did you mean '{matches[0]}'?)"
                problems.append(Problem(str(path), line_no, f"label '{label}' is not one of {', '.join(CLASSES)}{hint}"))
                continue
            if _escapes_root(filename):
                problems.append(Problem(str(path), line_no, f"file name '{filename}' points outside the image folder"))
                continue
            rows.append(
                dict(patient_id=patient_id, filename=filename, label=label, source=source,
                     split_file=str(path), line=line_no, partition=partition)
            )
    frame = pd.DataFrame(rows, columns=["patient_id", "filename", "label", "source", "split_file", "line", "partition"])
    return frame, problems


def split_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem], list[Problem]]:
    """Drop exact repeats of a file; a file listed twice with different contents is a problem.

    Returns (deduplicated frame, conflicting-duplicate problems, exact-duplicate notes).
    """
    problems, notes = [], []
    keep = np.ones(len(frame), dtype=bool)
    first_seen: dict[str, int] = {}
    for position, row in enumerate(frame.itertuples(index=False)):
        if row.filename not in first_seen:
            first_seen[row.filename] = position
            continue
        first = frame.iloc[first_seen[row.filename]]
        keep[position] = False
        where = f"{first.split_file}:{first.line}"
        if (row.patient_id, row.label, row.partition) == (first.patient_id, first.label, first.partition):
            notes.append(Problem(row.split_file, row.line, f"duplicate of {where}; kept once"))
        else:
            problems.append(
                Problem(row.split_file, row.line,
                        f"'{row.filename}' is also listed at {where} with a different patient, label or partition")
            )
    return frame[keep].reset_index(drop=True), problems, notes


def attribute_sources(frame: pd.DataFrame, source_rules: list[dict]) -> pd.DataFrame:
    """Fill `source` from the 4th column, else the first matching file-name rule, else 'unknown'.

    Adds `source_origin` ∈ {column, rule, unknown} so Table 1 can say how sources were known.
    """
    frame = frame.copy()
    compiled = []
    for index, rule in enumerate(source_rules):
        try:
            compiled.append((re.compile(rule["pattern"]), rule["source"]))
        except re.error as error:
            raise InputError(f"classification_data.source_rules[{index}].pattern is not a valid regex: {error}") from error
    origins, sources = [], []
    for source, filename in zip(frame["source"], frame["filename"]):
        if isinstance(source, str) and source:
            sources.append(source)
            origins.append("column")
            continue
        name = Path(filename).name
        matched = next((src for pattern, src in compiled if pattern.search(name)), None)
        sources.append(matched or UNKNOWN_SOURCE)
        origins.append("rule" if matched else "unknown")
    frame["source"] = sources
    frame["source_origin"] = origins
    return frame








