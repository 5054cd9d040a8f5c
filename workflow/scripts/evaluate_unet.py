"""Snakemake script: Table 2 (lung segmentation on every configured test set, beside the paper's)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.segmentation.table2 import evaluate_unet

    evaluate_unet(snakemake.input.sets, snakemake.input.model, snakemake.params.cfg["inference"],
                  dict(snakemake.output), dataset=snakemake.params.dataset,
                  device=snakemake.config["segmentation"]["device"], threads=snakemake.threads)
