"""Snakemake script: the audit summary as a report page (results/audit/summary.html) and its
verdict table for the report's landing description (results/audit/verdict_table.html)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.report.summary_page import write_summary_page

    write_summary_page(snakemake.input.md, snakemake.output.page, snakemake.output.table)
