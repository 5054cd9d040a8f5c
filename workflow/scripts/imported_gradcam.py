"""Snakemake script: an imported model's Grad-CAM figure, lung attention and CAM status."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.imported.explain import write_imported_gradcam

    p, inp = snakemake.params, snakemake.input
    stores = {rep: (inp[f"pixels_{rep}"], inp[f"index_{rep}"]) for rep in p.reps}
    write_imported_gradcam(snakemake.wildcards.model, dict(p.entry), stores, inp.predictions,
                           (inp.mask_pixels, inp.mask_index), dict(snakemake.output.items()),
                           n_images=p.n_images, sample_seed=p.sample_seed,
                           device=snakemake.config["classification"]["device"], threads=snakemake.threads,
                           n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level,
                           randomisation_max_correlation=p.randomisation_max_correlation)
