"""Snakemake script: an imported model's per-image predictions on every representation's test split."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.imported.predict import write_imported_predictions

    p, inp = snakemake.params, snakemake.input
    stores = {rep: (inp[f"pixels_{rep}"], inp[f"index_{rep}"]) for rep in p.reps}
    write_imported_predictions(snakemake.wildcards.model, dict(p.entry), stores, snakemake.output[0],
                               device=snakemake.config["classification"]["device"], threads=snakemake.threads)
