"""Snakemake script: lung masks (predicted or ground truth) for every classification image, with QC."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.segmentation.masks import write_lung_masks

    write_lung_masks(snakemake.input.pixels, snakemake.input.index, snakemake.params.cfg, dict(snakemake.output),
                     model_path=snakemake.input.get("model"), truth_dir=snakemake.input.get("truth"),
                     device=snakemake.config["segmentation"]["device"], threads=snakemake.threads)
