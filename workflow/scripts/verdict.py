"""Snakemake script: the audit verdict (results/audit/verdict.csv + summary.md)."""
from hideseek.rulelog import rule_logging
from hideseek.audit.verdict import VERDICT_COLUMNS, chance_level, summary_markdown, verdict_row

with rule_logging(snakemake.log[0]) as log:
    import pandas as pd

    from hideseek.io import write_csv_atomic, write_text_atomic

    p = snakemake.params
    index = pd.read_csv(snakemake.input.index)
    chance = chance_level(index.loc[index["partition"] == "test", "label"])
    probe = {}
    probe_files = snakemake.input.get("probe", [])
    probe_files = [probe_files] if isinstance(probe_files, str) else list(probe_files)
    if probe_files:
        table = pd.read_csv(probe_files[0])
        hit = table[(table["representation"] == "data") & (table["true_class"] == "all")]
        if "balanced_accuracy" in table.columns and len(hit) and pd.notna(hit.iloc[0]["balanced_accuracy"]):
            probe = dict(balanced_accuracy=float(hit.iloc[0]["balanced_accuracy"]),
                         balanced_chance=float(hit.iloc[0]["balanced_chance"]))
    rows = []
    for arch, comparison, attention in zip(p.archs, snakemake.input.comparisons, snakemake.input.attention):
        own = pd.read_csv(comparison)
        att = pd.read_csv(attention)
        hit = att[(att["representation"] == "data") & (att["true_class"] == "all")]
        attn = {}
        if len(hit):
            r = hit.iloc[0]
            attn = dict(ratio=r["mask_ratio"], ci_low=r["mask_ratio_ci_low"], ci_high=r["mask_ratio_ci_high"],
                        share=r["mask_energy_share"])
        rows.append(verdict_row(arch, own, chance, p.margin, p.learned_margin, attn, probe))
    verdict = pd.DataFrame(rows)[VERDICT_COLUMNS]
    write_csv_atomic(verdict, snakemake.output.csv)
    write_text_atomic(snakemake.output.md, summary_markdown(verdict, p.dataset, p.notes))
    log.info("verdict:\n%s", verdict[["arch", "acc_data", "acc_lungs_boxed_out", "chance", "learned",
                                      "non_lung_signal"]].to_string())
