"""Snakemake script: Figure 1 (one image per class: original, mask and the four modified versions)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.data.store import ImageStore
    from hideseek.io import read_table
    from hideseek.representations import figure1

    inp = snakemake.input
    shown = figure1(ImageStore(inp.pixels, inp.index), ImageStore(inp.mask_pixels, inp.mask_index),
                    snakemake.output[0], qc=read_table(inp.qc),
                    partition=snakemake.params.partition)
    log.info("Figure 1 shows:\n%s", shown.to_string(index=False))
