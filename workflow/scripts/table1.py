"""Snakemake script: Table 1 (images per class, partition and source; source-only accuracy)."""
import pandas as pd

from hideseek.rulelog import rule_logging
from hideseek.data.table1 import write_table1

with rule_logging(snakemake.log[0]):
    write_table1(
        pd.read_csv(snakemake.input.index),
        snakemake.output.csv,
        snakemake.output.md,
        snakemake.output.shortcut,
        snakemake.params.dataset,
    )
