"""Snakemake script: ingest an external test set into its own store and check it against the training data."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.external.ingest import ingest_external

    files, inp = snakemake.params.files, snakemake.input
    ingest_external(snakemake.wildcards.ext, snakemake.params.ext, snakemake.params.store, files["image_dir"],
                    files.get("test_split"), inp.train_pixels, inp.train_index, dict(snakemake.output),
                    threads=snakemake.threads, labels_csv=files.get("labels_csv"))
