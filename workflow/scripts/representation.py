"""Snakemake script: one ROI Hide-and-Seek representation of every classification image."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.data.store import ImageStore
    from hideseek.representations import write_representation

    inp = snakemake.input
    masks = ImageStore(inp.mask_pixels, inp.mask_index) if "mask_pixels" in inp.keys() else None  # not for data
    write_representation(ImageStore(inp.pixels, inp.index), masks, snakemake.wildcards.rep, snakemake.output.pixels,
                         snakemake.output.index)
