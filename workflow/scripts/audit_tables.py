"""Snakemake script: per-architecture uncertainty tables from the per-image predictions
(test-time hiding, representation comparison, per-source accuracy, per-class AUROC)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.audit.comparisons import write_audit_tables

    p, out = snakemake.params, snakemake.output
    write_audit_tables(list(snakemake.input), p.reps, out.hiding, out.comparison, out.per_source, out.auroc,
                       n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level)
