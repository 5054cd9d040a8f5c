"""Snakemake script: the audit verdict (results/audit/verdict.csv + summary.md)."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    from hideseek.audit.verdict import build_verdict, write_verdict

    p, inp = snakemake.params, snakemake.input
    verdict = build_verdict(inp.index, inp.comparisons, inp.attention, inp.get("probe"), p.archs,
                            p.margin, p.learned_margin, inp.shortcut, per_source_csvs=inp.per_source,
                            mask_qc_csv=inp.mask_qc, mask_difference_alpha=p.mask_difference_alpha,
                            min_test_images=p.min_test_images, level=p.ci_level, n_boot=p.n_boot,
                            boot_seed=p.boot_seed, generalisation_csv=inp.generalisation)
    from hideseek.imported.verdict import with_imported_rows  # imported_models (imported.smk): origin + their rows
    verdict = with_imported_rows(verdict, inp.get("imported"), inp.generalisation)
    write_verdict(verdict, snakemake.output.csv, snakemake.output.md, p.dataset, p.notes)
