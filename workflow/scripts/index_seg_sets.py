"""Snakemake script: pair and check every segmentation image/mask, one table for later stages."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.segmentation.pairing import write_seg_index

    sets = snakemake.params.sets
    write_seg_index(sets["train"], sets["test_sets"], snakemake.output.sets, snakemake.output.dropped,
                    snakemake.params.mask_checks)
