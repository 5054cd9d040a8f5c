"""The verdict's evidence tables, read into plain values: the source probe, Table 1's
source-only rule, lung attention (with the CAM randomisation test) and per-source accuracy.
Each reader tolerates an absent table (an optional rule input) or, for attention, the columns
of older tables."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..io import read_table

# A class × source cell of the boxed-out test set is named only from this many images: below it
# its CI is too wide to say the source is recognised.
MIN_SOURCE_IMAGES = 10
TOP_SOURCES = 3  # cells named per architecture, most accurate first


def optional_path(paths) -> str | os.PathLike | None:
    """The first of `paths` (a path, a list of paths, or nothing): an optional rule input."""
    if paths is None or isinstance(paths, (str, os.PathLike)):
        return paths
    paths = list(paths)
    return paths[0] if paths else None


def probe_evidence(probe_csv) -> dict:
    """The source probe's balanced accuracy and its chance on ``data`` over all classes; empty
    without a probe table (probe not run) or without that value; ``{"skipped": reason}`` when the
    probe skipped the data (its table's note, e.g. every class has a single source)."""
    path = optional_path(probe_csv)
    if path is None:
        return {}
    table = read_table(path)
    hit = table[(table["representation"] == "data") & (table["true_class"] == "all")]
    if "balanced_accuracy" not in table.columns or not len(hit) or pd.isna(hit.iloc[0]["balanced_accuracy"]):
        note = hit.iloc[0].get("note") if len(hit) else None
        if isinstance(note, str) and note.startswith("skipped"):
            return {"skipped": note.removeprefix("skipped").lstrip(": ") or "no reason given"}
        return {}
    return dict(balanced_accuracy=float(hit.iloc[0]["balanced_accuracy"]),
                balanced_chance=float(hit.iloc[0]["balanced_chance"]))


def shortcut_evidence(shortcut_csv) -> dict:
    """Table 1's source-only rule (``table1_shortcut.csv``): its test accuracy and chance; empty
    without the table."""
    path = optional_path(shortcut_csv)
    if path is None:
        return {}
    value = read_table(path).set_index("metric")["value"]
    return dict(accuracy=float(value["source-only accuracy"]), chance=float(value["chance (majority class of test)"]))


RANDOMISATION_COLUMNS = ("randomisation_spearman", "randomisation_spearman_ci_low", "randomisation_spearman_ci_high")


def _as_bool(value):
    """A bool cell as written to CSV (True/False, possibly read back as text); NaN when empty."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return np.nan
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def attention_evidence(attention: pd.DataFrame) -> dict:
    """The lung-mask attention ratio (with CI) and energy share of the ``data`` model over all
    classes, from a lung attention table, with the CAM randomisation test (rank correlation
    with CI, ``depends_on_weights``) when the table has it (older tables do not); empty if it
    has no such row."""
    hit = attention[(attention["representation"] == "data") & (attention["true_class"] == "all")]
    if not len(hit):
        return {}
    r = hit.iloc[0]
    evidence = dict(ratio=r["mask_ratio"], ci_low=r["mask_ratio_ci_low"], ci_high=r["mask_ratio_ci_high"],
                    share=r["mask_energy_share"])
    evidence.update({column: float(r[column]) for column in RANDOMISATION_COLUMNS if column in r.index})
    if "cam_depends_on_weights" in r.index:
        evidence["depends_on_weights"] = _as_bool(r["cam_depends_on_weights"])
    return evidence


def source_evidence(per_source: pd.DataFrame, min_images: int = MIN_SOURCE_IMAGES) -> list[dict]:
    """The class × source cells (``per_source_accuracy_{arch}.csv``) on which the
    ``lungs_boxed_out`` model is most accurate: up to :data:`TOP_SOURCES` cells of at least
    `min_images` test images, best first (ties: the higher CI low), as dicts with source, true,
    n_images, accuracy, ci_low, ci_high; empty without a boxed-out block or an eligible cell."""
    boxed = per_source[(per_source["representation"] == "lungs_boxed_out") & (per_source["n_images"] >= min_images)]
    best = boxed.sort_values(["accuracy", "ci_low"], ascending=False, kind="stable").head(TOP_SOURCES)
    return [dict(source=str(r.source), true=str(r.true), n_images=int(r.n_images), accuracy=float(r.accuracy),
                 ci_low=float(r.ci_low), ci_high=float(r.ci_high)) for r in best.itertuples()]
