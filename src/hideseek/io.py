"""The one atomic writer: files, tables and figures appear whole or not at all, so no reader
ever sees a half-written output. And the one CSV reader of the project's own tables."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, and setting it while another thread
# (write_store decodes in threads) creates a file would give that file the wrong mode.
UMASK = _read_umask()
# mkstemp creates 0600 files; outputs get the mode an ordinary open() would give them, so the
# group can read them on a shared cluster when the user's umask says so.
OUTPUT_MODE = 0o666 & ~UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
            os.chmod(tmp, OUTPUT_MODE)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as error:
            if not _is_write_failure(error):
                raise
            message = (f"could not write {path}: {error} ({_free_space(path.parent)} free on its file system; "
                       "if that is little, free space or move results/ and the checkpoints (checkpoint_root) "
                       "to a larger disk)")
            raise (OSError if isinstance(error, OSError) else RuntimeError)(message) from error
    finally:
        tmp.unlink(missing_ok=True)


def _is_write_failure(error: Exception) -> bool:
    """A full disk, quota or I/O error — and torch.save's way of saying so ("basic_ios::clear:
    iostream error", "unexpected pos"): errors raised by the block's own work pass through as they are."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
    return any(sign in str(error) for sign in ("iostream error", "unexpected pos", "PytorchStreamWriter"))


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**30:.1f} GiB"
    except OSError:
        return "unknown space"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv_atomic(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (index off unless asked for)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


# Columns of our tables that hold text (ids, file names, labels, sources, QC flags), read as
# strings whatever they look like: patient '007' must not become 7 (and merge with patient
# '7'), nor a source '1' a number, nor an all-empty flag column floats.
TEXT_COLUMNS = ("image_id", "patient_id", "filename", "label", "source", "split_file", "true", "predicted",
                "true_class", "predicted_source", "set", "image", "mask", "group", "flag",
                # the DICOM header fields of the store index (hideseek.data.dicom.INDEX_COLUMNS)
                "PatientID", "Manufacturer", "ManufacturerModelName", "InstitutionName", "ViewPosition",
                "BurnedInAnnotation", "pixel_spacing_mm", "pixel_spacing_tag")


def read_table(path: str | os.PathLike, **kwargs):
    """A CSV the project wrote, read back with pandas so that only an empty cell is missing.

    pandas' default turns the strings NA, null, None, nan, N/A, ... into missing values, so a
    patient or source called ``NA`` would vanish from counts and the leakage check. Our writer
    (pandas' to_csv) writes every missing value as an empty cell, so reading only empty cells as
    missing loses nothing; numeric columns still parse as numbers. :data:`TEXT_COLUMNS` are read
    as strings. Keyword arguments go to :func:`pandas.read_csv`; a ``dtype`` given is added to
    the text columns.
    """
    import pandas as pd

    dtype = {column: str for column in TEXT_COLUMNS}
    dtype.update(kwargs.pop("dtype", None) or {})
    kwargs.setdefault("keep_default_na", False)
    kwargs.setdefault("na_values", [""])
    return pd.read_csv(path, dtype=dtype, **kwargs)


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 150) -> None:
    """Save a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
