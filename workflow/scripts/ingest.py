"""Snakemake script: check the split files and images, split, and build the image store."""
from hideseek.data.ingest import ingest_classification_data
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    files = snakemake.params.files
    ingest_classification_data(
        snakemake.params.data,
        snakemake.params.long_side,
        image_dir=files["image_dir"],
        train_split=files["train_split"],
        test_split=files["test_split"],
        out_index=snakemake.output.index,
        out_pixels=snakemake.output.pixels,
        out_dropped=snakemake.output.dropped,
        out_report=snakemake.output.report,
        threads=snakemake.threads,
    )
