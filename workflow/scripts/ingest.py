"""Snakemake script: check the split files and images, split, and build the image store."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.data.ingest import ingest_classification_data

    files, out = snakemake.params.files, snakemake.output
    ingest_classification_data(
        snakemake.params.data,
        snakemake.params.long_side,
        image_dir=files["image_dir"],
        train_split=files.get("train_split"),
        test_split=files.get("test_split"),
        labels_csv=files.get("labels_csv"),
        out_index=out.index,
        out_pixels=out.pixels,
        out_dropped=out.dropped,
        out_report=out.report,
        out_duplicates=out.duplicates,
        threads=snakemake.threads,
        bits_stored=snakemake.params.bits_stored,
    )
