"""The verdict row of an imported model, and its place in ``results/audit/verdict.csv``.

An imported model is one model tested on every representation (test-time hiding), not one
model per representation trained on it, so its ``acc_{rep}`` columns are the accuracy of *that
model* on each hidden test set, and its verdict reads:

- ``non_lung_signal``: tested with both lungs boxed out (images it never saw in training) it
  still beats chance + margin: it uses label information outside the lungs;
- ``out_of_distribution``: with the lungs hidden it answers one class for at least
  ``collapse_share`` of the images (while it does not on the full images): the hidden images are
  outside what it knows, and its accuracy there — that class's share of the test set — says
  nothing about whether it reads the lungs. Never reported as lung-reading;
- ``no_evidence``: it works on the full images, and with the lungs boxed out it falls to chance
  while its answers stay spread across the classes: consistent with reading the lungs (weaker
  evidence than the retraining test: test-time hiding is a distribution shift);
- ``inconclusive``: too few test images, no boxed-out test set, a model that does not work on
  the full images (not ``learned``), or one that collapses on the full images too.

The row has :data:`hideseek.audit.verdict.VERDICT_COLUMNS` (built by
:func:`hideseek.audit.verdict.verdict_row`, then judged here) plus :data:`EXTRA_COLUMNS`;
:func:`with_imported_rows` appends the rows to the trained-here verdict with ``origin``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from ..audit.evidence import attention_evidence, optional_path, source_evidence
from ..audit.mask_evidence import MASK_COLUMNS
from ..audit.verdict import VERDICT_COLUMNS, chance_level, fmt_ci, verdict_row
from ..io import read_table, write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)

ORIGINS = ("trained_here", "imported")
EXTRA_COLUMNS = ["origin", "imported_format", "ood_representations", "prediction_mix_lungs_boxed_out",
                 "cam_status"]
# Columns about the data set, not the model: an imported row takes them from the trained-here rows.
DATA_COLUMNS = ["source_probe_balanced_accuracy", "source_probe_balanced_chance", "source_probe_skipped",
                "source_only_accuracy", "source_only_chance", *MASK_COLUMNS]


def _mix(distribution: pd.DataFrame, rep: str) -> str:
    hit = distribution[distribution["test_rep"] == rep]
    if hit.empty:
        return ""
    r = hit.iloc[0]
    return ", ".join(f"{cls} {r[f'predicted_share_{key}']:.0%}"
                     for cls, key in (("normal", "normal"), ("pneumonia", "pneumonia"), ("COVID-19", "covid_19")))


def judge_imported(row: dict, distribution: pd.DataFrame) -> tuple[str, str]:
    """(verdict, reason) of an imported model (module docs), the first rule that applies."""
    chance, margin = row["chance"], row["margin"]
    boxed, boxed_low, data_low = row["acc_lungs_boxed_out"], row["acc_lungs_boxed_out_ci_low"], row["acc_data_ci_low"]
    on_data = distribution[distribution["test_rep"] == "data"]
    ood = distribution[distribution["out_of_distribution"].astype(bool)]
    if row["n_test_images"] < row["min_test_images"]:
        return "inconclusive", (f"the test set has {row['n_test_images']} images; at least {row['min_test_images']} "
                                "are needed (audit.min_test_images).")
    if not np.isfinite(boxed_low):
        return "inconclusive", "there is no lungs_boxed_out test set (add lungs_boxed_out to classification.representations)."
    if len(on_data) and bool(on_data.iloc[0]["collapsed"]):
        r = on_data.iloc[0]
        return "inconclusive", (f"on the full images it answers {r['top_predicted']} for {r['top_share']:.0%} of them: "
                                "it does not work on these data as configured (check its preprocessing and label "
                                "mapping), so hiding the lungs cannot show what it reads.")
    if row["non_lung_signal"]:
        return "non_lung_signal", (f"tested with both lungs boxed out (images it never saw in training) it reaches "
                                   f"{boxed:.3f}, and the CI lower bound {boxed_low:.3f} exceeds chance + margin "
                                   f"({chance:.3f} + {margin:.2f}): it uses label information outside the lungs.")
    if not row["learned"]:
        return "inconclusive", (f"on the full images its accuracy CI lower bound {data_low:.3f} is below chance + "
                                f"learned margin ({chance + row['learned_margin']:.3f}): it does not work well enough "
                                "on these data to test.")
    if len(ood):
        r = ood.iloc[0]
        return "out_of_distribution", (
            f"with the lungs hidden ({', '.join(ood['test_rep'])}) it answers {r['top_predicted']} for "
            f"{r['top_share']:.0%} of the images (collapse_share {r['collapse_share']:.0%}): those images are out of "
            "distribution for it, and its accuracy there (that class's share of the test set) shows neither that it "
            "reads the lungs nor that it does not.")
    return "no_evidence", (f"it works on the full images (CI lower bound {data_low:.3f}) and with the lungs boxed out "
                           f"falls to {boxed:.3f} (CI lower bound {boxed_low:.3f}, not above chance + margin = "
                           f"{chance + margin:.3f}) while its answers stay spread across classes "
                           f"({_mix(distribution, 'lungs_boxed_out')}): consistent with a model that reads the lungs; "
                           "test-time hiding is a distribution shift, so this is weaker evidence than the "
                           "retraining test.")


def imported_paragraph(row: dict) -> str:
    data, boxed, removed = (fmt_ci(*(row[f"acc_{rep}{end}"] for end in ("", "_ci_low", "_ci_high")))
                            for rep in ("data", "lungs_boxed_out", "lungs_removed"))
    parts = [f"**{row['arch']}** (imported, {row['imported_format']}; not retrained: one model tested on every "
             f"representation) reaches accuracy {data} on the full images (chance {row['chance']:.3f}), {boxed} with "
             f"both lungs boxed out and {removed} with the lungs removed.",
             f"Its answers with the lungs boxed out: {row['prediction_mix_lungs_boxed_out'] or '–'}.",
             f"Verdict **{row['verdict']}**: {row['verdict_reason']}"]
    ratio = row.get("lung_attention_data", np.nan)
    if isinstance(ratio, float) and np.isfinite(ratio):
        depends = row.get("cam_depends_on_weights")
        void = depends is not None and not pd.isna(depends) and not bool(depends)
        parts.append("Its Grad-CAM does not depend on its weights (randomisation test): the lung attention is void."
                     if void else
                     f"On the full images {row['lung_energy_share_data']:.0%} of its Grad-CAM energy lies in the lung "
                     f"mask, {ratio:.2f}× the mask's area share (1 = no preference; "
                     f"`results/imported/{row['arch']}/lung_attention.csv`).")
    parts.append(f"Grad-CAM: {row['cam_status']}.")
    return " ".join(parts)


def imported_verdict_row(name: str, fmt: str, index_csv, hiding_csv, distribution_csv, attention_csv, per_source_csv,
                         status_json, *, margin: float, learned_margin: float, min_test_images: int = 30,
                         level: float = 0.95) -> dict:
    """One imported model's verdict row (:data:`VERDICT_COLUMNS` + :data:`EXTRA_COLUMNS`)."""
    index = read_table(index_csv)
    chance = chance_level(index.loc[index["partition"] == "test", "label"])
    own = read_table(hiding_csv).rename(columns={"test_rep": "train_rep"})  # verdict_row's acc_{rep} columns
    distribution = read_table(distribution_csv)
    status = json.loads(open(status_json, encoding="utf-8").read())
    attention = read_table(attention_csv)
    row = verdict_row(name, own, chance, margin, learned_margin, attention_evidence(attention) if len(attention) else {},
                      sources=source_evidence(read_table(per_source_csv)), min_test_images=min_test_images, level=level)
    row.update(origin="imported", imported_format=fmt,
               ood_representations=";".join(distribution.loc[distribution["out_of_distribution"].astype(bool),
                                                             "test_rep"]),
               prediction_mix_lungs_boxed_out=_mix(distribution, "lungs_boxed_out"),
               cam_status=status["reason"] if not status.get("cam") else
               f"{status.get('cam_grid', '?')} from {status.get('cam_layer', '?')}; {status['reason']}")
    row["verdict"], row["verdict_reason"] = judge_imported(row, distribution)
    row["paragraph"] = imported_paragraph(row)
    return {column: row.get(column, np.nan) for column in VERDICT_COLUMNS + EXTRA_COLUMNS}


def write_imported_verdict_row(out_csv, out_md, name: str, fmt: str, *files, **kwargs) -> dict:
    """The imported_verdict_row job: the row as a one-line CSV and its paragraph as summary.md."""
    row = imported_verdict_row(name, fmt, *files, **kwargs)
    write_csv_atomic(pd.DataFrame([row]), out_csv)
    write_text_atomic(out_md, f"# Imported model {name}\n\n{row['paragraph']}\n")
    log.info("%s: %s — %s", name, row["verdict"], row["verdict_reason"])
    return row


def with_imported_rows(verdict: pd.DataFrame, imported_csvs, generalisation_csv=None) -> pd.DataFrame:
    """The trained-here verdict (``origin: trained_here``) followed by each imported model's row
    (``origin: imported``), whose data-set columns (source probe, source-only rule, mask
    evidence) are the trained-here rows': they describe the data, not the model. With
    `generalisation_csv` (external_generalisation.csv) each imported row gets its gap on every
    external set (the full images' accuracy there vs on the test split)."""
    verdict = verdict.assign(origin="trained_here")
    rows = [read_table(path) for path in (imported_csvs or [])]
    if not rows:
        return verdict
    imported = pd.concat(rows, ignore_index=True)
    for column in DATA_COLUMNS:
        if column in verdict and len(verdict):
            imported[column] = verdict[column].iloc[0]
    if optional_path(generalisation_csv) is not None:
        from ..external.gap import IMPORTED_MODEL, add_generalisation_gap

        imported = add_generalisation_gap(imported, read_table(optional_path(generalisation_csv)), IMPORTED_MODEL)
    columns = [*verdict.columns, *(c for c in EXTRA_COLUMNS if c not in verdict)]
    return pd.concat([verdict, imported.reindex(columns=[c for c in columns if c in imported])],
                     ignore_index=True)[columns]
