"""Snakemake script: per-image test predictions of one trained model on every representation."""
from hideseek.rulelog import rule_logging
from hideseek.classification.prediction import evaluate_classifier

with rule_logging(snakemake.log[0]) as log:
    from hideseek.io import write_csv_atomic

    p = snakemake.params
    stores = {rep: (snakemake.input[f"pixels_{rep}"], snakemake.input[f"index_{rep}"]) for rep in p.test_reps}
    predictions = evaluate_classifier(snakemake.input.model, stores, p.rep, int(p.seed),
                                               device=p.device, threads=snakemake.threads)
    write_csv_atomic(predictions, snakemake.output[0])
    own = predictions[predictions["test_rep"] == p.rep]
    log.info("%s trained on %s: accuracy %.3f on its own test split (%d images)", p.arch, p.rep,
             (own["true"] == own["predicted"]).mean(), len(own))
