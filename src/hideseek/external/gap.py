"""The verdict's generalisation gap: per architecture, how much accuracy its models lose on each
external set (from ``external_generalisation.csv``), as columns and one sentence per set.

A shortcut-reading model drops on a site whose signature or site mix it has not seen; a
lung-reading model keeps its accuracy. The sentence names the data model's gap and the
representation whose model loses least, so the two can be compared.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _fmt(value, low, high) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def gap_columns(arch: str, table: pd.DataFrame) -> dict:
    """``external_gap_{set}`` (the data model's external − internal accuracy) with its unpaired CI
    and ``external_drop_{set}`` (CI below 0), per external set; NaN where the set has no data row."""
    out = {}
    rows = table[table["arch"] == arch]
    for name in dict.fromkeys(table["external_set"]):
        data = rows[(rows["external_set"] == name) & (rows["representation"] == "data")]
        row = data.iloc[0] if len(data) else None
        for suffix, column in (("", "gap"), ("_ci_low", "gap_ci_low"), ("_ci_high", "gap_ci_high")):
            out[f"external_gap_{name}{suffix}"] = float(row[column]) if row is not None else np.nan
        out[f"external_drop_{name}"] = bool(row["drop"]) if row is not None else np.nan
    return out


DATA_MODEL = "the data model's accuracy"  # a trained-here architecture's subject
IMPORTED_MODEL = "its accuracy on the full images"  # an imported model's (one model, no data model)


def gap_sentences(arch: str, table: pd.DataFrame, subject: str = DATA_MODEL) -> list[str]:
    """One sentence per external set on which `arch` was scored."""
    sentences = []
    rows = table[table["arch"] == arch]
    for name, sub in rows.groupby("external_set", sort=False):
        data = sub[sub["representation"] == "data"]
        if data.empty:
            continue
        d = data.iloc[0]
        text = (f"On the external set `{name}` {subject} goes from {d.internal_accuracy:.3f} to "
                f"{d.external_accuracy:.3f} (gap {_fmt(d.gap, d.gap_ci_low, d.gap_ci_high)}, unpaired bootstrap)"
                + (", a drop" if d["drop"] else ", no clear drop"))
        others = sub[sub["representation"] != "data"]
        if len(others):
            best = others.loc[others["gap"].idxmax()]
            text += (f"; the {best.representation} model's gap is {_fmt(best.gap, best.gap_ci_low, best.gap_ci_high)}"
                     + (f", no clear drop: what the data model lost lies outside what the {best.representation} "
                        "model sees" if d["drop"] and not best["drop"] else ""))
        sentences.append(text + " (external_generalisation.csv).")
    return sentences


def add_generalisation_gap(verdict: pd.DataFrame, table: pd.DataFrame, subject: str = DATA_MODEL) -> pd.DataFrame:
    """The verdict frame with the gap columns appended and the sentences added to each paragraph."""
    verdict = verdict.copy()
    columns = pd.DataFrame([gap_columns(arch, table) for arch in verdict["arch"]], index=verdict.index)
    verdict["paragraph"] = [" ".join([paragraph, *gap_sentences(arch, table, subject)])
                            for arch, paragraph in zip(verdict["arch"], verdict["paragraph"])]
    return pd.concat([verdict, columns], axis=1)
