"""Snakemake script: Figure 1 (one image per class: original, mask and the four modified versions)."""
import pandas as pd

from hideseek.representations import figure1
from hideseek.rulelog import rule_logging
from hideseek.data.store import ImageStore

with rule_logging(snakemake.log[0]) as log:
    shown = figure1(
        ImageStore(snakemake.input.pixels, snakemake.input.index),
        ImageStore(snakemake.input.mask_pixels, snakemake.input.mask_index),
        snakemake.output[0],
        qc=pd.read_csv(snakemake.input.qc, keep_default_na=False),
        partition=snakemake.params.partition,
    )
    log.info("Figure 1 shows:\n%s", shown.to_string(index=False))
