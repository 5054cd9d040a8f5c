"""Snakemake script: write the built-in phantom data set."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.data.phantom import write_phantom

    write_phantom(snakemake.params.out_dir, snakemake.params.phantom)
    log.info("phantom written to %s", snakemake.params.out_dir)
