"""Snakemake script (local rule): fetch torchvision's ImageNet weights for one architecture once."""
import shutil
from pathlib import Path

from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.classification.models import fetch_pretrained_weights

    target = Path(snakemake.output[0])
    fetched = Path(fetch_pretrained_weights(snakemake.wildcards.arch, target.parent))
    if fetched.resolve() != target.resolve():
        shutil.copyfile(fetched, target)
    log.info("ImageNet weights for %s: %s", snakemake.wildcards.arch, target)
