# Explain and audit, per architecture: Grad-CAM (Figure 3) + lung attention, the uncertainty
# tables (test-time hiding, representation comparisons, per-source accuracy, per-class AUROC),
# and the source probe. Grad-CAM and the per-image attention use the first seed's models.


rule gradcam:
    input:
        unpack(
            lambda wildcards: first_seed_runs(wildcards.arch)
            | store_files(MASK_STORE, "mask_{}")
            | rep_stores(CLS_REPS)
        ),
    output:
        figure=report(
            f"{FIGURES}/figure3_gradcam_{{arch}}.png",
            caption="../report/figure3.rst",
            category="5. Figure 3",
            subcategory="Grad-CAM",
            labels={"architecture": "{arch}"},
        ),
        attention=report(
            f"{TABLES}/lung_attention_{{arch}}.csv",
            caption="../report/lung_attention.rst",
            category="5. Figure 3",
            subcategory="Lung attention",
            labels={"architecture": "{arch}"},
        ),
        per_image=f"{RESULTS}/explain/{{arch}}/lung_attention_per_image.csv",
        picks=f"{RESULTS}/explain/{{arch}}/figure3_images.csv",
    log:
        f"{LOGS}/gradcam/{{arch}}.log",
    benchmark:
        f"{BENCH}/gradcam/{{arch}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: AUDIT["gradcam"]["threads"]
    resources:
        mem_mb=AUDIT["gradcam"]["mem_mb"],
        runtime=AUDIT["gradcam"]["runtime"],
        gpu=config["resources"]["gpu"],
    params:
        **AUDIT_STATS,
        reps=CLS_REPS,
        n_images=AUDIT["gradcam"]["n_images"],
        sample_seed=AUDIT["gradcam"]["sample_seed"],
        randomisation_max_correlation=AUDIT["gradcam"]["randomisation_max_correlation"],
    script:
        "../scripts/gradcam.py"


rule audit_tables:
    input:
        lambda wildcards: prediction_files(wildcards.arch),
    output:
        hiding=report(
            f"{TABLES}/test_time_hiding_{{arch}}.csv",
            caption="../report/test_time_hiding.rst",
            category="6. Audit",
            subcategory="Test-time hiding",
            labels={"architecture": "{arch}"},
        ),
        comparison=report(
            f"{TABLES}/comparison_{{arch}}.csv",
            caption="../report/comparison.rst",
            category="6. Audit",
            subcategory="CIs and paired tests",
            labels={"architecture": "{arch}", "table": "representation vs data"},
        ),
        per_source=report(
            f"{TABLES}/per_source_accuracy_{{arch}}.csv",
            caption="../report/per_source.rst",
            category="6. Audit",
            subcategory="CIs and paired tests",
            labels={"architecture": "{arch}", "table": "per-source accuracy"},
        ),
        auroc=report(
            f"{TABLES}/auroc_{{arch}}.csv",
            caption="../report/auroc.rst",
            category="6. Audit",
            subcategory="CIs and paired tests",
            labels={"architecture": "{arch}", "table": "AUROC"},
        ),
    log:
        f"{LOGS}/audit_tables/{{arch}}.log",
    benchmark:
        f"{BENCH}/audit_tables/{{arch}}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **AUDIT_STATS,
        reps=CLS_REPS,
    script:
        "../scripts/audit_tables.py"


# Source probe: the cheapest configured architecture (unless audit.source_probe.arch names one)
# trained to predict the data source from each representation, scored within each class.
rule source_probe:
    input:
        **rep_stores(plan.probe_representations(config)),
    output:
        report(
            f"{TABLES}/source_probe.csv",
            caption="../report/source_probe.rst",
            category="6. Audit",
            subcategory="Source probe",
        ),
    log:
        f"{LOGS}/source_probe/source_probe.log",
    benchmark:
        f"{BENCH}/source_probe/source_probe.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["train_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        **AUDIT_STATS,
        arch=plan.probe_arch(config),
        recipe=plan.probe_recipe(config),
        reps=plan.probe_representations(config),
        seed=CLS_SEEDS[0],
    script:
        "../scripts/source_probe.py"
