"""Snakemake script: pair and check every segmentation image/mask, one table for later stages."""
from hideseek.io import write_csv_atomic
from hideseek.rulelog import rule_logging
from hideseek.segmentation.pairing import index_seg_sets

with rule_logging(snakemake.log[0]) as log:
    sets = snakemake.params.sets
    table = index_seg_sets(sets["train"], sets["test_sets"])
    log.info("segmentation pairs per set: %s", table.groupby("set").size().to_dict())
    write_csv_atomic(table, snakemake.output[0])
