# The audit verdict: one row per architecture, with the evidence and a plain-language paragraph.
# `make run` then renders every report()-marked output into results/report.html (snakemake --report).


rule verdict:
    input:
        index=f"{RESULTS}/representations/data/images.csv",
        comparisons=expand(f"{RESULTS}/tables/comparison_{{arch}}.csv", arch=CLS_ARCHS),
        attention=expand(
            f"{RESULTS}/tables/lung_attention_{{arch}}.csv", arch=CLS_ARCHS
        ),
        probe=source_probe_targets(),
    output:
        csv=report(
            f"{RESULTS}/audit/verdict.csv",
            caption="../report/verdict.rst",
            category="Verdict",
        ),
        md=report(
            f"{RESULTS}/audit/summary.md",
            caption="../report/summary.rst",
            category="Verdict",
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
        dataset=dataset_name(),
        notes=[
            "CIs: percentile bootstrap, patients resampled within class "
            f"({AUDIT['n_boot']} resamples, seed {AUDIT['boot_seed']}).",
            f"Margin for non_lung_signal: {AUDIT['margin']}; for learned: {AUDIT['learned_margin']}.",
            (
                f"Source probe ({probe_arch()}, representation data): results/tables/source_probe.csv."
                if source_probe_targets()
                else "Source probe: disabled (audit.source_probe.enabled: false)."
            ),
        ],
    script:
        "../scripts/verdict.py"
