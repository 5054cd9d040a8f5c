"""Snakemake script: the built-in phantom's external set (another site mix), test images only."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.data.phantom.external import write_external_phantom
    from hideseek.external.config import n_per_class

    ext, phantom = snakemake.params.ext, snakemake.params.phantom
    split = write_external_phantom(snakemake.params.out_dir, phantom, n_per_class(ext, phantom),
                                   mix=ext["mix"], seed=ext["seed"], shortcut=ext["shortcut"])
    log.info("external phantom %s written: %s", snakemake.wildcards.ext, split)
