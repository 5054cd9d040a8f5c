"""Snakemake script: one trained classifier (model.pt) exported to ONNX (model.onnx)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.imported.export import export_onnx

    export_onnx(snakemake.input[0], snakemake.output[0])
