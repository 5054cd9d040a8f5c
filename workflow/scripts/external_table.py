"""Snakemake script: one architecture's (or imported model's) models on one external set
(external_{ext}_{arch}.csv + .md, or results/imported/{model}/external_{ext}.csv + .md)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.external.tables import write_external_table

    p = snakemake.params
    write_external_table(snakemake.wildcards.ext, p.model, snakemake.input[0], snakemake.output.csv,
                         snakemake.output.md, p.description, p.representations, n_boot=p.n_boot,
                         boot_seed=p.boot_seed, level=p.level)
