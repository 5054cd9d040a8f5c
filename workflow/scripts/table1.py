"""Snakemake script: Table 1 (images per class, partition and source; source-only accuracy)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    import pandas as pd

    from hideseek.data.table1 import write_table1

    out = snakemake.output
    write_table1(pd.read_csv(snakemake.input.index), out.csv, out.md, out.shortcut, snakemake.params.dataset)
