"""Snakemake script: an imported model's test-time hiding, metrics, per-source, AUROC and
prediction distribution tables."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.imported.tables import write_imported_tables

    p = snakemake.params
    write_imported_tables(snakemake.input[0], p.reps, dict(snakemake.output.items()),
                          collapse_share=p.collapse_share, n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level)
