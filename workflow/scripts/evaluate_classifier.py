"""Snakemake script: per-image test predictions of one trained model on every representation."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.classification.prediction import write_predictions

    rep, seed = snakemake.wildcards.rep, int(snakemake.wildcards.seed)
    stores = {test_rep: (snakemake.input[f"pixels_{test_rep}"], snakemake.input[f"index_{test_rep}"])
              for test_rep in snakemake.params.test_reps}
    write_predictions(snakemake.input.model, stores, rep, seed, snakemake.output[0],
                      device=snakemake.config["classification"]["device"], threads=snakemake.threads)
