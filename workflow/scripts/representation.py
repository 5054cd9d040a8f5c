"""Snakemake script: one ROI Hide-and-Seek representation of every classification image."""
from hideseek.representations import write_representation
from hideseek.rulelog import rule_logging
from hideseek.data.store import ImageStore

with rule_logging(snakemake.log[0]):
    store = ImageStore(snakemake.input.pixels, snakemake.input.index)
    masks = (ImageStore(snakemake.input.mask_pixels, snakemake.input.mask_index)
             if "mask_pixels" in snakemake.input.keys() else None)
    write_representation(store, masks, snakemake.wildcards.rep, snakemake.output.pixels, snakemake.output.index)
