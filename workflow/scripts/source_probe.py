"""Snakemake script: the source probe (results/tables/source_probe.csv)."""
from pathlib import Path

from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.audit.source_probe import write_source_probe

    p, config = snakemake.params, snakemake.config
    write_source_probe(p.arch, p.recipe, snakemake.input, p.reps, snakemake.output[0], seed=p.seed,
                       device=config["classification"]["device"], threads=snakemake.threads,
                       n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level,
                       checkpoint_root=Path(config["checkpoint_root"], "source_probe"))
