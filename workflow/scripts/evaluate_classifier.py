"""Snakemake script: per-image test predictions of every trained model of one architecture on
every representation (test-time hiding)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek.classification.prediction import write_predictions

    runs = {(rep, int(seed)): snakemake.input[f"model_{rep}_seed{seed}"] for rep, seed in snakemake.params.runs}
    outputs = {(rep, int(seed)): snakemake.output[f"{rep}_seed{seed}"] for rep, seed in snakemake.params.runs}
    stores = {test_rep: (snakemake.input[f"pixels_{test_rep}"], snakemake.input[f"index_{test_rep}"])
              for test_rep in snakemake.params.test_reps}
    write_predictions(runs, stores, outputs, device=snakemake.config["classification"]["device"],
                      threads=snakemake.threads)
