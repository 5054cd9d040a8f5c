# The audit verdict: one row per architecture, with the evidence and a plain-language paragraph.
# `make run` then renders every report()-marked output into results/report.html (snakemake --report).


rule verdict:
    input:
        index=store_files(rep_store("data"))["index"],
        comparisons=expand(f"{TABLES}/comparison_{{arch}}.csv", arch=CLS_ARCHS),
        attention=expand(f"{TABLES}/lung_attention_{{arch}}.csv", arch=CLS_ARCHS),
        # which sources the boxed-out model recognises, and whether the masks differ by class
        per_source=expand(f"{TABLES}/per_source_accuracy_{{arch}}.csv", arch=CLS_ARCHS),
        mask_qc=f"{SEG}/mask_qc.csv",
        probe=source_probe_targets(),
        shortcut=f"{TABLES}/table1_shortcut.csv",
        # the generalisation gap on external test sets (external.smk), when configured
        generalisation=EXTERNAL_GENERALISATION,
        # each imported model's verdict row (imported.smk), when configured
        imported=IMPORTED_VERDICT_ROWS,
    output:
        csv=report(
            f"{RESULTS}/audit/verdict.csv",
            caption="../report/verdict.rst",
            category="0. Verdict",
        ),
        md=report(
            f"{RESULTS}/audit/summary.md",
            caption="../report/summary.rst",
            category="0. Verdict",
        ),
    log:
        f"{LOGS}/verdict/verdict.log",
    benchmark:
        f"{BENCH}/verdict/verdict.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        archs=CLS_ARCHS,
        margin=AUDIT["margin"],
        learned_margin=AUDIT["learned_margin"],
        min_test_images=AUDIT["min_test_images"],
        mask_difference_alpha=AUDIT["mask_difference_alpha"],
        ci_level=AUDIT["ci_level"],
        n_boot=AUDIT["n_boot"],
        boot_seed=AUDIT["boot_seed"],
        dataset=plan.dataset_description(config),
        notes=plan.verdict_notes(config),
    script:
        "../scripts/verdict.py"


# The summary as a page of the HTML report (it offers Markdown only as a download), placed first
# in it, and its verdict table for the landing description (workflow/report/workflow.rst).
rule summary_page:
    input:
        md=f"{RESULTS}/audit/summary.md",
    output:
        page=report(
            f"{RESULTS}/audit/summary.html",
            caption="../report/summary_page.rst",
            category="0. Verdict",
        ),
        table=f"{RESULTS}/audit/verdict_table.html",
    log:
        f"{LOGS}/verdict/summary_page.log",
    benchmark:
        f"{BENCH}/verdict/summary_page.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/summary_page.py"
