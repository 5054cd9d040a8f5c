"""The verdict: one row per architecture from its representation comparison, lung attention
and the source probe, with a plain-language paragraph, and the audit summary page."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io import write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)


def chance_level(true) -> float:
    """The majority-class rate of the test set (what always answering one class scores)."""
    values = pd.Series(np.asarray(true).astype(str))
    return float(values.value_counts(normalize=True).max()) if len(values) else float("nan")


def fmt_ci(value, low, high, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def verdict_row(arch: str, own: pd.DataFrame, chance: float, margin: float, learned_margin: float,
                attention: dict | None = None, probe: dict | None = None) -> dict:
    """One architecture's verdict from its representation comparison (`own`, the output of
    :func:`hideseek.audit.comparisons.representation_comparison`)."""
    def get(rep):
        hit = own[own["train_rep"] == rep]
        if hit.empty:
            return (np.nan, np.nan, np.nan)
        r = hit.iloc[0]
        return float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])

    row = {"arch": arch, "chance": chance, "margin": margin}
    for rep in ("data", "lungs_removed", "lungs_boxed_out", "lungs_isolated", "lungs_framed"):
        acc, lo, hi = get(rep)
        row.update({f"acc_{rep}": acc, f"acc_{rep}_ci_low": lo, f"acc_{rep}_ci_high": hi})
    row["learned"] = bool(np.isfinite(row["acc_data_ci_low"]) and row["acc_data_ci_low"] >= chance + learned_margin)
    boxed_lo = row["acc_lungs_boxed_out_ci_low"]
    row["non_lung_signal"] = bool(np.isfinite(boxed_lo) and boxed_lo > chance + margin)
    attention = attention or {}
    row["lung_attention_data"] = attention.get("ratio", np.nan)
    row["lung_attention_data_ci_low"] = attention.get("ci_low", np.nan)
    row["lung_attention_data_ci_high"] = attention.get("ci_high", np.nan)
    row["lung_energy_share_data"] = attention.get("share", np.nan)
    probe = probe or {}
    # The probe trains with a source-balanced sampler, so it is judged by balanced accuracy
    # (mean recall over a class's sources) against 1 / n_sources; its plain accuracy and the
    # within-class majority baseline stay in source_probe.csv.
    row["source_probe_balanced_accuracy"] = probe.get("balanced_accuracy", np.nan)
    row["source_probe_balanced_chance"] = probe.get("balanced_chance", np.nan)
    row["paragraph"] = verdict_paragraph(row)
    return row


def verdict_paragraph(row: dict) -> str:
    arch, chance, margin = row["arch"], row["chance"], row["margin"]
    data = fmt_ci(row["acc_data"], row["acc_data_ci_low"], row["acc_data_ci_high"])
    boxed = fmt_ci(row["acc_lungs_boxed_out"], row["acc_lungs_boxed_out_ci_low"], row["acc_lungs_boxed_out_ci_high"])
    removed = fmt_ci(row["acc_lungs_removed"], row["acc_lungs_removed_ci_low"], row["acc_lungs_removed_ci_high"])
    parts = [f"**{arch}** reaches accuracy {data} on the full images (chance, the majority-class rate: "
             f"{chance:.3f})."]
    if not row["learned"]:
        parts.append("That is not clearly above chance, so the model has not learned the task well enough "
                     "for the rest of the audit to mean much.")
    if row["non_lung_signal"]:
        parts.append(f"Trained and tested with both lungs boxed out it still reaches {boxed}: the lower CI "
                     f"bound is more than {margin:.2f} above chance, so **the images carry label information "
                     "outside the lungs** (a shortcut such as the hospital or scanner), and an accurate model "
                     "may be using it.")
    else:
        parts.append(f"With both lungs boxed out it reaches {boxed}, not more than {margin:.2f} above chance "
                     "with confidence: no evidence of label information outside the lungs.")
    parts.append(f"With the lungs removed (mask only): {removed}.")
    ratio = row.get("lung_attention_data", np.nan)
    if np.isfinite(ratio):
        parts.append(f"On the full images, {row['lung_energy_share_data']:.0%} of its Grad-CAM energy lies inside "
                     f"the lung mask: {ratio:.2f}× the mask's share of the image area "
                     f"(CI {row['lung_attention_data_ci_low']:.2f}–{row['lung_attention_data_ci_high']:.2f}; "
                     "1 = no preference for the lungs; read it with the CAM's coarse native grid in mind).")
    if np.isfinite(row.get("source_probe_balanced_accuracy", np.nan)):
        parts.append(f"A source probe trained on the full images predicts the data source within each class "
                     f"with balanced accuracy {row['source_probe_balanced_accuracy']:.3f} (chance "
                     f"{row['source_probe_balanced_chance']:.3f}): the further above chance, the more the "
                     "images say where they came from.")
    return " ".join(parts)


VERDICT_COLUMNS = [
    "arch", "chance", "margin", "learned", "non_lung_signal",
    "acc_data", "acc_data_ci_low", "acc_data_ci_high",
    "acc_lungs_removed", "acc_lungs_removed_ci_low", "acc_lungs_removed_ci_high",
    "acc_lungs_boxed_out", "acc_lungs_boxed_out_ci_low", "acc_lungs_boxed_out_ci_high",
    "acc_lungs_isolated", "acc_lungs_isolated_ci_low", "acc_lungs_isolated_ci_high",
    "acc_lungs_framed", "acc_lungs_framed_ci_low", "acc_lungs_framed_ci_high",
    "lung_attention_data", "lung_attention_data_ci_low", "lung_attention_data_ci_high", "lung_energy_share_data",
    "source_probe_balanced_accuracy", "source_probe_balanced_chance", "paragraph",
]


def summary_markdown(verdict: pd.DataFrame, dataset: str, notes=()) -> str:
    lines = ["# Audit summary", "", f"Data: {dataset}.", "",
             "`non_lung_signal`: the accuracy of a model trained and tested with both lungs boxed out "
             "has a 95 % CI (patients resampled within class) whose lower bound exceeds chance (the "
             "majority-class rate of the test set) by more than the margin. `learned`: the accuracy on "
             "the full images has a CI lower bound at least `learned_margin` above chance.", ""]
    table = pd.DataFrame({
        "architecture": verdict["arch"],
        "data": [fmt_ci(r.acc_data, r.acc_data_ci_low, r.acc_data_ci_high) for r in verdict.itertuples()],
        "lungs_removed": [fmt_ci(r.acc_lungs_removed, r.acc_lungs_removed_ci_low, r.acc_lungs_removed_ci_high)
                          for r in verdict.itertuples()],
        "lungs_boxed_out": [fmt_ci(r.acc_lungs_boxed_out, r.acc_lungs_boxed_out_ci_low,
                                   r.acc_lungs_boxed_out_ci_high) for r in verdict.itertuples()],
        "chance": [f"{c:.3f}" for c in verdict["chance"]],
        "lung attention (data)": [f"{v:.2f}" if np.isfinite(v) else "–" for v in verdict["lung_attention_data"]],
        "source probe (balanced acc.)": [f"{v:.3f}" if np.isfinite(v) else "–"
                                         for v in verdict["source_probe_balanced_accuracy"]],
        "learned": verdict["learned"],
        "non_lung_signal": verdict["non_lung_signal"],
    })
    lines += [table.to_markdown(index=False), ""]
    for row in verdict.itertuples():
        lines += [f"## {row.arch}", "", row.paragraph, ""]
    for note in notes:
        lines += [f"- {note}"]
    return "\n".join(lines) + "\n"


def _optional_path(paths) -> str | os.PathLike | None:
    """The first of `paths` (a path, a list of paths, or nothing): an optional rule input."""
    if paths is None or isinstance(paths, (str, os.PathLike)):
        return paths
    paths = list(paths)
    return paths[0] if paths else None


def probe_evidence(probe_csv) -> dict:
    """The source probe's balanced accuracy and its chance on ``data`` over all classes; empty
    without a probe table (probe disabled) or without that value (probe skipped)."""
    path = _optional_path(probe_csv)
    if path is None:
        return {}
    table = pd.read_csv(path)
    hit = table[(table["representation"] == "data") & (table["true_class"] == "all")]
    if "balanced_accuracy" not in table.columns or not len(hit) or pd.isna(hit.iloc[0]["balanced_accuracy"]):
        return {}
    return dict(balanced_accuracy=float(hit.iloc[0]["balanced_accuracy"]),
                balanced_chance=float(hit.iloc[0]["balanced_chance"]))


def attention_evidence(attention: pd.DataFrame) -> dict:
    """The lung-mask attention ratio (with CI) and energy share of the ``data`` model over all
    classes, from a lung attention table; empty if it has no such row."""
    hit = attention[(attention["representation"] == "data") & (attention["true_class"] == "all")]
    if not len(hit):
        return {}
    r = hit.iloc[0]
    return dict(ratio=r["mask_ratio"], ci_low=r["mask_ratio_ci_low"], ci_high=r["mask_ratio_ci_high"],
                share=r["mask_energy_share"])


def build_verdict(index_csv, comparison_csvs: Sequence, attention_csvs: Sequence, probe_csv, archs: Sequence,
                  margin: float, learned_margin: float) -> pd.DataFrame:
    """The verdict frame (:data:`VERDICT_COLUMNS`, one row per architecture of `archs`, whose
    comparison and lung attention tables come in the same order). Chance is the majority-class
    rate of the test images in `index_csv`; `probe_csv` may be absent (None or empty)."""
    index = pd.read_csv(index_csv)
    chance = chance_level(index.loc[index["partition"] == "test", "label"])
    probe = probe_evidence(probe_csv)
    rows = [verdict_row(arch, pd.read_csv(comparison), chance, margin, learned_margin,
                        attention_evidence(pd.read_csv(attention)), probe)
            for arch, comparison, attention in zip(archs, comparison_csvs, attention_csvs)]
    return pd.DataFrame(rows)[VERDICT_COLUMNS]


def write_verdict(verdict: pd.DataFrame, out_csv, out_md, dataset: str, notes=()) -> None:
    """verdict.csv and the audit summary page."""
    write_csv_atomic(verdict, out_csv)
    write_text_atomic(out_md, summary_markdown(verdict, dataset, notes))
    log.info("verdict:\n%s", verdict[["arch", "acc_data", "acc_lungs_boxed_out", "chance", "learned",
                                      "non_lung_signal"]].to_string())
