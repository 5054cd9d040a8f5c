"""Snakemake script: Figure 3 and the lung attention table of one architecture (Grad-CAM)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.audit.attention import write_gradcam_outputs

    p, out = snakemake.params, snakemake.output
    write_gradcam_outputs(snakemake.wildcards.arch, snakemake.input, p.reps, out.figure, out.attention,
                          out.per_image, out.picks, n_images=p.n_images, sample_seed=p.sample_seed,
                          device=snakemake.config["classification"]["device"], threads=snakemake.threads,
                          n_boot=p.n_boot, boot_seed=p.boot_seed, level=p.level,
                          randomisation_max_correlation=p.randomisation_max_correlation)
