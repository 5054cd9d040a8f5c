"""Snakemake script: Table 1 (images per class, partition and source; source-only accuracy)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.data.table1 import write_table1
    from hideseek.io import read_table

    out = snakemake.output
    write_table1(read_table(snakemake.input.index), out.csv, out.md, out.shortcut, snakemake.params.dataset,
                 duplicates=read_table(snakemake.input.duplicates))
