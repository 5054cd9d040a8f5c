"""Snakemake script: internal vs external accuracy per architecture × representation (external_generalisation.csv)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.external.tables import write_generalisation_table

    p = snakemake.params
    write_generalisation_table(snakemake.input.internal, p.sets, p.archs, p.representations, snakemake.output.csv,
                               snakemake.output.md, p.descriptions, n_boot=p.n_boot, boot_seed=p.boot_seed,
                               level=p.level)
