"""Snakemake script: the audit verdict (results/audit/verdict.csv + summary.md)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.audit.verdict import build_verdict, write_verdict

    p, inp = snakemake.params, snakemake.input
    verdict = build_verdict(inp.index, inp.comparisons, inp.attention, inp.get("probe"), p.archs,
                            p.margin, p.learned_margin, inp.shortcut, min_test_images=p.min_test_images,
                            level=p.ci_level)
    write_verdict(verdict, snakemake.output.csv, snakemake.output.md, p.dataset, p.notes)
