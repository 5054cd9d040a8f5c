"""Snakemake script: every trained model of one architecture on an external set (matching representation)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.external.predict import write_external_predictions

    inp = snakemake.input
    models = {(rep, seed): inp[f"model_{rep}_seed{seed}"] for rep, seed in snakemake.params.runs}
    stores = {rep: (inp[f"pixels_{rep}"], inp[f"index_{rep}"]) for rep, _ in snakemake.params.runs}
    write_external_predictions(models, stores, snakemake.output[0],
                               device=snakemake.config["classification"]["device"], threads=snakemake.threads)
