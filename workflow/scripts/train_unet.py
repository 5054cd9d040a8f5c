"""Snakemake script: train the lung U-Net (resumes from results/checkpoints/unet after a kill)."""
import pandas as pd

from hideseek.rulelog import rule_logging
from hideseek.devices import set_threads
from hideseek.devices import resolve_device
from hideseek.segmentation.training import train_unet

with rule_logging(snakemake.log[0]):
    cfg = snakemake.params.cfg
    set_threads(snakemake.threads)
    train_unet(
        pd.read_csv(snakemake.input.sets),
        cfg,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        device=resolve_device(snakemake.config["segmentation"]["device"]),
        threads=snakemake.threads,
    )
