"""Snakemake script: train the lung U-Net (resumes from <checkpoint_root>/unet after a kill)."""
from pathlib import Path

from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.devices import resolve_device, set_threads
    from hideseek.io import read_table
    from hideseek.segmentation.training import train_unet

    set_threads(snakemake.threads)
    train_unet(
        read_table(snakemake.input.sets),
        snakemake.params.cfg,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=Path(snakemake.config["checkpoint_root"]) / "unet",
        device=resolve_device(snakemake.config["segmentation"]["device"], "segmentation.device"),
        threads=snakemake.threads,
    )
