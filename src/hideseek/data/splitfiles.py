"""COVIDx-format split files: parse, check, drop exact duplicates, attribute sources.

Every problem is collected before anything fails, so a user sees the whole list of bad
lines at once, each as ``file:line: reason``.
"""

from __future__ import annotations

import codecs
import io
import logging
import posixpath
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, Problem
from ..vocabulary import CLASSES, UNKNOWN_SOURCE

log = logging.getLogger(__name__)







def _climbs_out(filename: str) -> bool:
    """True when a file name, read as text, is absolute or climbs above its folder with '..'."""
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


def _escapes_root(filename: str, image_dir: str | Path | None = None) -> str | None:
    """Why a split file's file name lies outside the image folder, or None when it lies inside.

    Without `image_dir` the check is textual (`_climbs_out`). With it, the name is resolved in
    the folder, symlinks followed: a symlink that points out is caught, and an absolute name
    that lies inside the folder is accepted.
    """
    if image_dir is None:
        return f"file name '{filename}' points outside the image folder" if _climbs_out(filename) else None
    folder = Path(image_dir).absolute()
    target = (folder / filename).resolve()
    if target.is_relative_to(folder.resolve()):
        return None
    if _climbs_out(filename):
        return f"file name '{filename}' points outside the image folder {folder}"
    return f"file name '{filename}' resolves to {target}, outside the image folder {folder} (a symlink?)"


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _resave_hint(path: Path, encoding: str) -> str:
    return (f"Re-save it as UTF-8 (in an editor, or: iconv -f {encoding} -t UTF-8 {path} > fixed.txt, "
            "then use fixed.txt)")


def _read_utf8(path: Path) -> str:
    """A split file's text. It must be UTF-8 (a BOM is fine): decoding anything else with
    replacement characters would give bad lines whose messages make no sense."""
    data = path.read_bytes()
    if data.startswith(_UTF16_BOMS) or b"\0" in data:
        nul_line = data.count(b"\n", 0, data.find(b"\0")) + 1
        why = ("it starts with a UTF-16 byte-order mark" if data.startswith(_UTF16_BOMS)
               else f"line {nul_line} has NUL bytes")
        raise InputError(f"{path}: the split file looks like UTF-16 ({why}), not UTF-8. "
                         + _resave_hint(path, "UTF-16"))
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        bad = bom + error.start
        line_start = max(bom, data.rfind(b"\n", 0, bad) + 1)
        line_end = data.find(b"\n", bad)
        line_no = data.count(b"\n", 0, bad) + 1
        line = data[line_start:line_end if line_end >= 0 else len(data)].rstrip(b"\r")
        line = line.decode("utf-8", "backslashreplace")  # shows the bad byte as \xe9
        raise InputError(
            f"{path}:{line_no}: the split file is not UTF-8: byte 0x{data[bad]:02x} at "
            f"byte offset {bad} (column {bad - line_start + 1} of '{line}') "
            "is not valid UTF-8 (saved as latin-1 or Windows-1252?). " + _resave_hint(path, "LATIN1")) from None


def parse_split_file(path: str | Path, partition: str,
                     image_dir: str | Path | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """Parse a COVIDx split file: ``patient_id filename label [source]`` per line, no header.

    Returns the valid rows and the problems found (wrong column count, unknown label,
    file name outside the image folder, resolved in `image_dir` when given, else textually).
    Every field stays a string (a patient ``NA`` is a patient). A file that is not UTF-8
    raises InputError. Exact and conflicting duplicates are left to :func:`split_duplicates`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split file not found: {path} (check classification_data in your config)")
    rows, problems = [], []
    for line_no, raw in enumerate(io.StringIO(_read_utf8(path), newline=None), start=1):
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
        outside = _escapes_root(filename, image_dir)
        if outside:
            problems.append(Problem(str(path), line_no, outside))
            continue
        rows.append(
            dict(patient_id=patient_id, filename=filename, label=label, source=source,
                 split_file=str(path), line=line_no, partition=partition)
        )
    frame = pd.DataFrame(rows, columns=["patient_id", "filename", "label", "source", "split_file", "line", "partition"])
    return frame, problems


def split_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem], list[Problem]]:
    """Drop repeats of a file; a file listed twice with a different patient, label or
    partition is a problem.

    Names are compared normalised (``./x.png``, ``sub/../x.png`` and ``x.png`` are one file,
    which would otherwise slip into train and test), and the kept rows carry the normalised name.
    Returns (deduplicated frame, conflicting-duplicate problems, exact-duplicate notes).
    """
    problems, notes = [], []
    keep = np.ones(len(frame), dtype=bool)
    first_seen: dict[str, int] = {}
    normalised = [posixpath.normpath(name) for name in frame["filename"]]
    for position, (row, name) in enumerate(zip(frame.itertuples(index=False), normalised)):
        if name not in first_seen:
            first_seen[name] = position
            continue
        first = frame.iloc[first_seen[name]]
        keep[position] = False
        where = f"{first.split_file}:{first.line}" + (f" as '{first.filename}'" if first.filename != row.filename else "")
        differ = [f"{field} '{getattr(row, field)}' here, '{first[field]}' there"
                  for field in ("patient_id", "label", "partition") if getattr(row, field) != first[field]]
        if not differ:
            notes.append(Problem(row.split_file, row.line, f"duplicate of {where}; kept once"))
        else:
            problems.append(Problem(row.split_file, row.line,
                                    f"'{row.filename}' is also listed at {where}, with {'; '.join(differ)}"))
    return frame.assign(filename=normalised)[keep].reset_index(drop=True), problems, notes


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








