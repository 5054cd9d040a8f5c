"""Snakemake script: an imported model's verdict row (appended to results/audit/verdict.csv)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.imported.verdict import write_imported_verdict_row

    p, inp, out = snakemake.params, snakemake.input, snakemake.output
    write_imported_verdict_row(out.csv, out.md, snakemake.wildcards.model, p.format, inp.index, inp.hiding,
                               inp.distribution, inp.attention, inp.per_source, inp.status, margin=p.margin,
                               learned_margin=p.learned_margin, min_test_images=p.min_test_images, level=p.ci_level)
