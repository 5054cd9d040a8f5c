"""Snakemake script: learning curves of one architecture (every representation and seed)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.classification.curves import write_learning_curves

    p = snakemake.params
    files = {(rep, seed): path for (rep, seed), path in zip(p.runs, snakemake.input)}
    write_learning_curves(snakemake.wildcards.arch, files, p.reps, snakemake.output[0])
