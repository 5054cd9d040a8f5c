"""Snakemake script: per-architecture uncertainty tables from the per-image predictions.

test_time_hiding: the data model on every representation's test set; comparison: each
representation's model vs the data model (patient bootstrap, paired difference, McNemar + Holm);
per_source: accuracy per class x source; auroc: one-vs-rest AUROC per class (every model on its
own representation)."""
from hideseek.rulelog import rule_logging
from hideseek.audit.comparisons import per_class_auroc, per_source_accuracy, representation_comparison, test_time_hiding

with rule_logging(snakemake.log[0]) as log:
    import pandas as pd

    from hideseek.io import write_csv_atomic

    p = snakemake.params
    predictions = pd.concat([pd.read_csv(f) for f in snakemake.input], ignore_index=True)
    kw = dict(n_boot=p.n_boot, seed=p.boot_seed, level=p.level)
    hiding = test_time_hiding(predictions, p.reps, **kw)
    write_csv_atomic(hiding, snakemake.output.hiding)
    comparison = representation_comparison(predictions, p.reps, **kw)
    write_csv_atomic(comparison, snakemake.output.comparison)
    own = predictions[(predictions["train_rep"] == predictions["test_rep"])]
    first_seed = own[own["seed"] == own["seed"].min()]
    per_source, auroc = [], []
    for rep in p.reps:
        sub = first_seed[first_seed["train_rep"] == rep]
        if sub.empty:
            continue
        per_source.append(per_source_accuracy(sub, **kw).assign(representation=rep))
        auroc.append(per_class_auroc(sub, **kw).assign(representation=rep))
    write_csv_atomic(pd.concat(per_source, ignore_index=True), snakemake.output.per_source)
    write_csv_atomic(pd.concat(auroc, ignore_index=True), snakemake.output.auroc)
    log.info("test-time hiding:\n%s", hiding.to_string())
