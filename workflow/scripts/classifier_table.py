"""Snakemake script: Table 3-7 of one architecture (CSV + Markdown beside the paper's values)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.classification.tables import write_classifier_table

    p = snakemake.params
    write_classifier_table(snakemake.wildcards.arch, list(snakemake.input), snakemake.output.csv,
                           snakemake.output.md, p.dataset, p.representations, p.note,
                           n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level)
