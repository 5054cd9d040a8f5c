"""Snakemake script: train one classifier ({arch} × {rep} × {seed}), select its epoch on val."""
from pathlib import Path

from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.classification.training import run_training_job

    w, cls = snakemake.wildcards, snakemake.config["classification"]
    run_training_job(
        w.arch, w.rep, int(w.seed), snakemake.params.recipe, snakemake.input.pixels, snakemake.input.index,
        dict(snakemake.output),
        checkpoint_dir=Path(snakemake.config["checkpoint_root"], "classifiers", w.arch, w.rep, f"seed{w.seed}"),
        pretrained_weights=snakemake.input.get("weights"), device=cls["device"], threads=snakemake.threads,
        checkpoint_every=cls["checkpoint_every"], keep_checkpoints=cls["keep_checkpoints"],
    )
