"""The verdict: one row per architecture from its representation comparison, lung attention
and the source probe, with a plain-language paragraph, and the audit summary page.

Each architecture gets one of :data:`VERDICTS` (see :func:`judge`): ``non_lung_signal`` (a
model trained and tested with the lungs boxed out still beats chance + margin), ``no_evidence``
(the full-image model learned, the boxed-out one did not clear the bar) or ``inconclusive``
(too few test images, no boxed-out model, or a full-image model that did not learn, so a
boxed-out model at chance proves nothing).

Around the verdict, the evidence an auditor acts on: whether the lung masks themselves differ by
class (:mod:`hideseek.audit.mask_evidence`), the sources on which the boxed-out model is most
accurate, and whether the Grad-CAM passes the weight-randomisation test (Adebayo et al. 2018:
a CAM that does not change when the weights are re-initialised is void as evidence)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io import read_table, write_csv_atomic, write_text_atomic
from ..stats import accuracy_power
from .evidence import (MIN_SOURCE_IMAGES, attention_evidence, optional_path, probe_evidence, shortcut_evidence,
                       source_evidence)
from .mask_evidence import MASK_COLUMNS, mask_evidence, mask_section

log = logging.getLogger(__name__)


def chance_level(true) -> float:
    """The majority-class rate of the test set (what always answering one class scores)."""
    values = pd.Series(np.asarray(true).astype(str))
    return float(values.value_counts(normalize=True).max()) if len(values) else float("nan")


def fmt_ci(value, low, high, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


VERDICTS = ("non_lung_signal", "no_evidence", "inconclusive")
REPRESENTATION_ORDER = ("data", "lungs_removed", "lungs_boxed_out", "lungs_isolated", "lungs_framed")
TRAIN_MORE = "train longer, larger, or from ImageNet-pretrained weights (the paper's choice)"


def _accuracies(own: pd.DataFrame) -> dict:
    """acc_{rep}, acc_{rep}_ci_low, acc_{rep}_ci_high of each representation's own model (NaN if absent)."""
    row = {}
    for rep in REPRESENTATION_ORDER:
        hit = own[own["train_rep"] == rep]
        values = (np.nan,) * 3 if hit.empty else tuple(float(hit.iloc[0][c]) for c in ("accuracy", "ci_low", "ci_high"))
        row.update(dict(zip((f"acc_{rep}", f"acc_{rep}_ci_low", f"acc_{rep}_ci_high"), values)))
    return row


def size_of_test_set(own: pd.DataFrame) -> tuple[int, int]:
    """(images, patients) of the test set the CIs were computed on; every representation's
    model is scored on the same images (the comparison refuses otherwise)."""
    if own.empty:
        return 0, 0
    return int(own.iloc[0]["n_test"]), int(own.iloc[0]["n_patients"])


def judge(row: dict) -> tuple[str, str]:
    """(verdict, reason) from a verdict row's evidence and criteria, the first rule that applies:
    too few test images → inconclusive; no boxed-out model → inconclusive; boxed-out CI low >
    chance + margin → non_lung_signal (even if the full-image model did not learn: the boxed-out
    model found the information itself); full-image model not learned → inconclusive; else
    no_evidence."""
    chance, margin = row["chance"], row["margin"]
    flag_at, learned_at = chance + margin, chance + row["learned_margin"]
    boxed, boxed_low, data_low = row["acc_lungs_boxed_out"], row["acc_lungs_boxed_out_ci_low"], row["acc_data_ci_low"]
    if row["n_test_images"] < row["min_test_images"]:
        return "inconclusive", (f"the test set has {row['n_test_images']} images; at least {row['min_test_images']} "
                                "are needed (audit.min_test_images) for a CI to tell a shortcut from chance.")
    if not np.isfinite(boxed_low):
        return "inconclusive", ("there is no lungs_boxed_out model to judge (add lungs_boxed_out to "
                                "classification.representations).")
    if row["non_lung_signal"]:
        despite = "" if row["learned"] else " even though the full-image model did not clearly learn"
        return "non_lung_signal", (f"trained and tested with both lungs boxed out the model reaches {boxed:.3f}, and "
                                   f"its CI lower bound {boxed_low:.3f} exceeds chance + margin ({chance:.3f} + "
                                   f"{margin:.2f} = {flag_at:.3f}), so the images carry label information "
                                   f"outside the lungs (a shortcut such as the hospital or scanner){despite}.")
    if not row["learned"]:
        return "inconclusive", (f"the full-image model did not learn (accuracy CI lower bound {data_low:.3f}, below "
                                f"chance + learned margin = {learned_at:.3f}), so a boxed-out model near chance "
                                f"proves nothing: {TRAIN_MORE}.")
    return "no_evidence", (f"the full-image model learned (CI lower bound {data_low:.3f} ≥ {learned_at:.3f}) but the "
                           f"boxed-out model's CI lower bound {boxed_low:.3f} does not exceed chance + margin = "
                           f"{flag_at:.3f}: no evidence of label information outside the lungs, at a power where "
                           f"flagging needs a boxed-out accuracy of about {row['boxed_out_detectable_accuracy']:.3f}.")


def verdict_row(arch: str, own: pd.DataFrame, chance: float, margin: float, learned_margin: float,
                attention: dict | None = None, probe: dict | None = None, shortcut: dict | None = None, *,
                sources: list[dict] | None = None, masks: dict | None = None, min_test_images: int = 30,
                level: float = 0.95) -> dict:
    """One architecture's verdict (:data:`VERDICT_COLUMNS`) from its representation comparison
    (`own`, the output of :func:`hideseek.audit.comparisons.representation_comparison`), its lung
    attention, the source probe, Table 1's source-only rule (`shortcut`), its boxed-out model's
    best sources (:func:`source_evidence`; None: no per-source table) and the mask evidence
    (:func:`hideseek.audit.mask_evidence.mask_evidence`; the same for every architecture)."""
    n_images, n_patients = size_of_test_set(own)
    power = accuracy_power(n_patients, chance, margin, level)
    row = {"arch": arch, "chance": chance, "margin": margin, "learned_margin": learned_margin,
           "min_test_images": min_test_images, "ci_level": level, "n_test_images": n_images,
           "n_test_patients": n_patients, "ci_half_width_at_threshold": power["half_width"],
           "boxed_out_detectable_accuracy": power["detectable_accuracy"], **_accuracies(own)}
    row["learned"] = bool(np.isfinite(row["acc_data_ci_low"]) and row["acc_data_ci_low"] >= chance + learned_margin)
    boxed_lo = row["acc_lungs_boxed_out_ci_low"]
    row["non_lung_signal"] = bool(np.isfinite(boxed_lo) and boxed_lo > chance + margin)
    row["verdict"], row["verdict_reason"] = judge(row)
    attention = attention or {}
    row["lung_attention_data"] = attention.get("ratio", np.nan)
    row["lung_attention_data_ci_low"] = attention.get("ci_low", np.nan)
    row["lung_attention_data_ci_high"] = attention.get("ci_high", np.nan)
    row["lung_energy_share_data"] = attention.get("share", np.nan)
    row["cam_randomisation_spearman"] = attention.get("randomisation_spearman", np.nan)
    row["cam_randomisation_spearman_ci_low"] = attention.get("randomisation_spearman_ci_low", np.nan)
    row["cam_randomisation_spearman_ci_high"] = attention.get("randomisation_spearman_ci_high", np.nan)
    row["cam_depends_on_weights"] = attention.get("depends_on_weights", np.nan)
    probe, shortcut = probe or {}, shortcut or {}
    # The probe trains with a source-balanced sampler, so it is judged by balanced accuracy
    # (mean recall over a class's sources) against 1 / n_sources; its plain accuracy and the
    # within-class majority baseline stay in source_probe.csv.
    row["source_probe_balanced_accuracy"] = probe.get("balanced_accuracy", np.nan)
    row["source_probe_balanced_chance"] = probe.get("balanced_chance", np.nan)
    row["source_probe_skipped"] = probe.get("skipped", "")
    row["source_only_accuracy"] = shortcut.get("accuracy", np.nan)
    row["source_only_chance"] = shortcut.get("chance", np.nan)
    row.update(_source_columns(sources))
    row.update(masks or mask_evidence(None, None, np.nan))
    row["paragraph"] = verdict_paragraph(row)
    return row


def _cell_text(cell: dict) -> str:
    return (f"{cell['source']} ({cell['true']}) {fmt_ci(cell['accuracy'], cell['ci_low'], cell['ci_high'])}, "
            f"{cell['n_images']} images")


def _source_columns(sources: list[dict] | None) -> dict:
    """The boxed_out_* source columns from :func:`source_evidence`'s cells (best first): the named
    cells as text ('' when none has MIN_SOURCE_IMAGES images, NaN without a per-source table) and
    the best one's numbers."""
    row = {"min_source_images": MIN_SOURCE_IMAGES, "boxed_out_top_sources": np.nan, "boxed_out_best_source": np.nan,
           "boxed_out_best_source_accuracy": np.nan, "boxed_out_best_source_ci_low": np.nan,
           "boxed_out_best_source_ci_high": np.nan}
    if sources is None:
        return row
    row["boxed_out_top_sources"] = "; ".join(_cell_text(cell) for cell in sources)
    if sources:
        best = sources[0]
        row.update(boxed_out_best_source=f"{best['source']} ({best['true']})", boxed_out_best_source_accuracy=
                   best["accuracy"], boxed_out_best_source_ci_low=best["ci_low"], boxed_out_best_source_ci_high=
                   best["ci_high"])
    return row


def attention_is_void(row) -> bool:
    """True when the randomisation test found the CAM independent of the weights (unknown: False)."""
    depends = row.get("cam_depends_on_weights", np.nan)
    return depends is not None and not pd.isna(depends) and not bool(depends)


def _attention_sentence(row: dict) -> str | None:
    """The lung attention of the data model, or why it is void; None without attention."""
    rho = fmt_ci(row["cam_randomisation_spearman"], row["cam_randomisation_spearman_ci_low"],
                 row["cam_randomisation_spearman_ci_high"], digits=2)
    if attention_is_void(row):
        return ("Its lung attention evidence is void: its Grad-CAM does not depend on the weights (rank correlation "
                f"with the CAMs of the same architecture re-initialised, on the same images, {rho}; the randomisation "
                "test of Adebayo et al. 2018), so the CAM says nothing about what this model reads.")
    ratio = row.get("lung_attention_data", np.nan)
    if not np.isfinite(ratio):
        return None
    passed = (f" Its CAM depends on the weights (rank correlation with a re-initialised model's CAMs {rho})."
              if np.isfinite(row["cam_randomisation_spearman"]) else "")
    return (f"On the full images, {row['lung_energy_share_data']:.0%} of its Grad-CAM energy lies inside "
            f"the lung mask: {ratio:.2f}× the mask's share of the image area "
            f"(CI {row['lung_attention_data_ci_low']:.2f}–{row['lung_attention_data_ci_high']:.2f}; "
            f"1 = no preference for the lungs; the CAM's layer and native grid are in "
            f"`results/tables/lung_attention_{row['arch']}.csv`).{passed}")


def _source_sentence(row: dict) -> str | None:
    named = row["boxed_out_top_sources"]
    if not isinstance(named, str):
        return None
    if not named:
        return (f"No class × source cell of its boxed-out test set has the {row['min_source_images']} images needed "
                "to name a source.")
    return (f"With the lungs boxed out it is most accurate on {named} (class × source cells of at least "
            f"{row['min_source_images']} test images, `results/tables/per_source_accuracy_{row['arch']}.csv`; a "
            "cell's accuracy is its class's recall on that source, so compare it with the class's other sources).")


def verdict_paragraph(row: dict) -> str:
    data = fmt_ci(row["acc_data"], row["acc_data_ci_low"], row["acc_data_ci_high"])
    boxed = fmt_ci(row["acc_lungs_boxed_out"], row["acc_lungs_boxed_out_ci_low"], row["acc_lungs_boxed_out_ci_high"])
    removed = fmt_ci(row["acc_lungs_removed"], row["acc_lungs_removed_ci_low"], row["acc_lungs_removed_ci_high"])
    parts = [f"**{row['arch']}** reaches accuracy {data} on the full images (chance, the majority-class rate: "
             f"{row['chance']:.3f}); a model trained and tested with both lungs boxed out reaches {boxed}, one with "
             f"the lungs removed (mask only) {removed}.",
             f"Verdict **{row['verdict']}**: {row['verdict_reason']}"]
    if row["verdict"] == "non_lung_signal" and row["masks_differ_by_class"]:
        parts.append("The lung masks differ by class (see 'The lung masks'): part of the boxed-out accuracy may "
                     "come from the masks themselves.")
    parts += [s for s in (_source_sentence(row), _attention_sentence(row)) if s]
    if np.isfinite(row.get("source_probe_balanced_accuracy", np.nan)):
        parts.append(f"A source probe trained on the full images predicts the data source within each class "
                     f"with balanced accuracy {row['source_probe_balanced_accuracy']:.3f} (chance "
                     f"{row['source_probe_balanced_chance']:.3f}): the further above chance, the more the "
                     "images say where they came from.")
    return " ".join(parts)


VERDICT_COLUMNS = [
    "arch", "verdict", "verdict_reason", "chance", "margin", "learned_margin", "learned", "non_lung_signal",
    "n_test_images", "n_test_patients", "min_test_images", "ci_level", "ci_half_width_at_threshold",
    "boxed_out_detectable_accuracy",
    *(f"acc_{rep}{end}" for rep in REPRESENTATION_ORDER for end in ("", "_ci_low", "_ci_high")),
    "lung_attention_data", "lung_attention_data_ci_low", "lung_attention_data_ci_high", "lung_energy_share_data",
    "cam_randomisation_spearman", "cam_randomisation_spearman_ci_low", "cam_randomisation_spearman_ci_high",
    "cam_depends_on_weights",
    "source_probe_balanced_accuracy", "source_probe_balanced_chance", "source_probe_skipped",
    "source_only_accuracy", "source_only_chance",
    "min_source_images", "boxed_out_top_sources", "boxed_out_best_source", "boxed_out_best_source_accuracy",
    "boxed_out_best_source_ci_low", "boxed_out_best_source_ci_high",
    *MASK_COLUMNS,
    "paragraph",
]


def _source_only_above(row) -> bool:
    return bool(row["source_only_accuracy"] > row["source_only_chance"] + row["margin"])


def _probe_above(row) -> bool:
    return bool(row["source_probe_balanced_accuracy"] > row["source_probe_balanced_chance"] + row["margin"])


def source_warnings(row) -> list[str]:
    """What says the data source predicts the label, as clauses (empty: nothing does): Table 1's
    source-only rule more than the margin above its chance, and then (or when there is no
    source-only rule) the source probe's balanced accuracy above its chance. The probe alone says
    the images reveal their source, not that the source gives the label away: with the source-only
    rule at chance (sources independent of the label, as in the negative control) it is no
    warning (:func:`data_section` says so)."""
    found = []
    if _source_only_above(row):
        found.append(f"the source-only rule scores {row['source_only_accuracy']:.3f} against chance "
                     f"{row['source_only_chance']:.3f}")
    if _probe_above(row) and (found or not np.isfinite(row["source_only_accuracy"])):
        found.append(f"the source probe's balanced accuracy is {row['source_probe_balanced_accuracy']:.3f} against "
                     f"chance {row['source_probe_balanced_chance']:.3f}")
    return found


def data_section(verdict: pd.DataFrame) -> list[str]:
    """'The data': how much the source alone gives away, before any model is judged, and what
    the verdicts can (not) say about it."""
    first = verdict.iloc[0]
    lines = ["## The data", ""]
    if np.isfinite(first["source_only_accuracy"]):
        lines.append(f"- Source only (Table 1, `results/tables/table1_shortcut.csv`): a rule that sees only the "
                     f"data source (each source's most common training label) scores accuracy "
                     f"**{first['source_only_accuracy']:.3f}** on the test set, against chance "
                     f"{first['source_only_chance']:.3f} (the majority-class rate).")
    else:
        lines.append("- Source only: no Table 1 source-only rule.")
    if np.isfinite(first["source_probe_balanced_accuracy"]):
        lines.append(f"- Source probe (`results/tables/source_probe.csv`): a classifier trained on the full images "
                     f"to recognise the source predicts it within each class with balanced accuracy "
                     f"**{first['source_probe_balanced_accuracy']:.3f}**, against chance "
                     f"{first['source_probe_balanced_chance']:.3f} (1 / number of sources).")
    elif isinstance(first["source_probe_skipped"], str) and first["source_probe_skipped"]:
        lines.append(f"- Source probe (`results/tables/source_probe.csv`): skipped — {first['source_probe_skipped']} "
                     "(it recognises sources within a class, so it needs a class with two or more).")
    else:
        lines.append("- Source probe: not run (`audit.source_probe`; see the notes at the end).")
    warnings = source_warnings(first)
    lines.append("")
    if warnings:
        lines += [f"**Warning: the data source predicts the label** ({'; '.join(warnings)}; margin "
                  f"{first['margin']:.2f}). A classifier can score on these data by recognising the hospital; "
                  "the verdicts below say whether the images give the label away outside the lungs.", ""]
    else:
        lines += [f"The data source does not predict the label by more than the margin ({first['margin']:.2f}) "
                  "above chance"
                  + (" — though the images reveal their source (the source probe is above its chance): a model "
                     "could learn the hospital, but here that would not score." if _probe_above(first) else "."), ""]
    untrained = verdict[(verdict["verdict"] == "inconclusive") & ~verdict["learned"].astype(bool)
                        & (verdict["n_test_images"] >= verdict["min_test_images"])]
    if len(untrained):
        names = ", ".join(untrained["arch"])
        which = "every model" if len(untrained) == len(verdict) else f"{len(untrained)} of {len(verdict)} models"
        lead = (f"The data carry a shortcut that {which} ({names}) did not learn enough to test"
                if warnings else f"{which[0].upper()}{which[1:]} ({names}) did not learn the task well enough to test")
        lines += [f"{lead}: their verdict is `inconclusive`, not an absence of shortcut; {TRAIN_MORE}.", ""]
    return lines


def power_paragraph(verdict: pd.DataFrame) -> str:
    """How large a boxed-out accuracy this test set can flag (:func:`hideseek.stats.accuracy_power`)."""
    first = verdict.iloc[0]
    text = (f"**Power.** The test set has {first['n_test_images']} images from {first['n_test_patients']} patients; "
            f"chance (the majority class's share) is {first['chance']:.3f}. With the patients as the effective "
            f"sample size (normal approximation), an accuracy at chance + margin = "
            f"{first['chance'] + first['margin']:.3f} has a {first['ci_level'] * 100:g} % CI of about "
            f"±{first['ci_half_width_at_threshold']:.3f}, so a lungs_boxed_out model is flagged only from an "
            f"accuracy of about {first['boxed_out_detectable_accuracy']:.3f} on; a weaker shortcut goes unseen.")
    if first["n_test_images"] < first["min_test_images"]:
        text += (f" That is fewer than the {first['min_test_images']} test images the verdict needs "
                 "(audit.min_test_images): every verdict is `inconclusive`; a larger test set is needed.")
    return text


def summary_markdown(verdict: pd.DataFrame, dataset: str, notes=()) -> str:
    lines = ["# Audit summary", "", f"Data: {dataset}.", "", *data_section(verdict), *mask_section(verdict.iloc[0]),
             "## Verdicts", "",
             power_paragraph(verdict), "",
             "`verdict`: `non_lung_signal` when a model trained and tested with both lungs boxed out has an "
             "accuracy CI (patients resampled within class) whose lower bound exceeds chance (the majority-class "
             "rate of the test set) by more than the margin; otherwise `no_evidence` if the full-image model "
             "`learned` (accuracy CI lower bound at least `learned_margin` above chance), else `inconclusive` "
             "(also when the test set is too small). `verdict.csv` gives each reason.", ""]
    table = pd.DataFrame({
        "architecture": verdict["arch"],
        "data": [fmt_ci(r.acc_data, r.acc_data_ci_low, r.acc_data_ci_high) for r in verdict.itertuples()],
        "lungs_removed": [fmt_ci(r.acc_lungs_removed, r.acc_lungs_removed_ci_low, r.acc_lungs_removed_ci_high)
                          for r in verdict.itertuples()],
        "lungs_boxed_out": [fmt_ci(r.acc_lungs_boxed_out, r.acc_lungs_boxed_out_ci_low,
                                   r.acc_lungs_boxed_out_ci_high) for r in verdict.itertuples()],
        "chance": [f"{c:.3f}" for c in verdict["chance"]],
        "lung attention (data)": ["void" if attention_is_void(r) else f"{r['lung_attention_data']:.2f}"
                                  if np.isfinite(r["lung_attention_data"]) else "–" for _, r in verdict.iterrows()],
        "source probe (balanced acc.)": [f"{v:.3f}" if np.isfinite(v) else "–"
                                         for v in verdict["source_probe_balanced_accuracy"]],
        "learned": verdict["learned"],
        "verdict": verdict["verdict"],
    })
    lines += [table.to_markdown(index=False), ""]
    for row in verdict.itertuples():
        lines += [f"## {row.arch}", "", row.paragraph, ""]
    for note in notes:
        lines += [f"- {note}"]
    return "\n".join(lines) + "\n"


def build_verdict(index_csv, comparison_csvs: Sequence, attention_csvs: Sequence, probe_csv, archs: Sequence,
                  margin: float, learned_margin: float, shortcut_csv=None, *, per_source_csvs: Sequence | None = None,
                  mask_qc_csv=None, mask_difference_alpha: float = 0.05, min_test_images: int = 30,
                  level: float = 0.95, n_boot: int = 1000, boot_seed: int = 0,
                  generalisation_csv=None) -> pd.DataFrame:
    """The verdict frame (:data:`VERDICT_COLUMNS`, one row per architecture of `archs`, whose
    comparison, lung attention and per-source tables come in the same order). Chance is the
    majority-class rate of the test images in `index_csv`; `probe_csv`, `shortcut_csv` (Table 1's
    source-only rule), `per_source_csvs` and `mask_qc_csv` may be absent (None or empty); so may
    `generalisation_csv` (external_generalisation.csv: the gap columns and sentences of
    :func:`hideseek.external.gap.add_generalisation_gap`)."""
    index = read_table(index_csv)
    chance = chance_level(index.loc[index["partition"] == "test", "label"])
    probe, shortcut = probe_evidence(probe_csv), shortcut_evidence(shortcut_csv)
    qc_path = optional_path(mask_qc_csv)
    masks = mask_evidence(read_table(qc_path) if qc_path is not None else None, index, mask_difference_alpha,
                          n_boot=n_boot, seed=boot_seed, level=level)
    per_source = list(per_source_csvs) if per_source_csvs else [None] * len(archs)
    rows = [verdict_row(arch, read_table(comparison), chance, margin, learned_margin,
                        attention_evidence(read_table(attention)), probe, shortcut,
                        sources=None if sources is None else source_evidence(read_table(sources)), masks=masks,
                        min_test_images=min_test_images, level=level)
            for arch, comparison, attention, sources in zip(archs, comparison_csvs, attention_csvs, per_source)]
    verdict = pd.DataFrame(rows)[VERDICT_COLUMNS]
    if optional_path(generalisation_csv) is not None:
        from ..external.gap import add_generalisation_gap

        verdict = add_generalisation_gap(verdict, read_table(optional_path(generalisation_csv)))
    return verdict


def write_verdict(verdict: pd.DataFrame, out_csv, out_md, dataset: str, notes=()) -> None:
    """verdict.csv and the audit summary page."""
    write_csv_atomic(verdict, out_csv)
    write_text_atomic(out_md, summary_markdown(verdict, dataset, notes))
    log.info("verdict:\n%s", verdict[["arch", "acc_data", "acc_lungs_boxed_out", "chance", "learned",
                                      "verdict"]].to_string())
