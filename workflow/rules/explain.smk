# Explain and audit, per architecture: Grad-CAM (Figure 3) + lung attention, and the uncertainty
# tables (test-time hiding, representation comparisons, per-source accuracy, per-class AUROC).
# Needs classification.smk (CLS_*, CLASSIFIERS, PREDICTIONS) and the lung mask store.
# Helpers (gradcam_inputs, probe_*, AUDIT, AUDIT_STATS): common.smk, end.


rule gradcam:
    input:
        unpack(gradcam_inputs),
    output:
        figure=report(
            f"{RESULTS}/figures/figure3_gradcam_{{arch}}.png",
            caption="../report/figure3.rst",
            category="Figure 3 (Grad-CAM)",
        ),
        attention=report(
            f"{RESULTS}/tables/lung_attention_{{arch}}.csv",
            caption="../report/lung_attention.rst",
            category="Lung attention",
        ),
        per_image=f"{RESULTS}/explain/{{arch}}/lung_attention_per_image.csv",
        picks=f"{RESULTS}/explain/{{arch}}/figure3_images.csv",
    log:
        f"{LOGS}/gradcam/{{arch}}.log",
    benchmark:
        f"{BENCH}/gradcam/{{arch}}.tsv"
    wildcard_constraints:
        arch="|".join(CLS_ARCHS),
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
        device=CLS["device"],
    script:
        "../scripts/gradcam.py"


rule audit_tables:
    input:
        lambda wildcards: expand(
            f"{PREDICTIONS}/{wildcards.arch}/{{rep}}/seed{{seed}}.csv",
            rep=CLS_REPS,
            seed=CLS_SEEDS,
        ),
    output:
        hiding=report(
            f"{RESULTS}/tables/test_time_hiding_{{arch}}.csv",
            caption="../report/test_time_hiding.rst",
            category="Test-time hiding",
        ),
        comparison=report(
            f"{RESULTS}/tables/comparison_{{arch}}.csv",
            caption="../report/comparison.rst",
            category="Uncertainty",
        ),
        per_source=report(
            f"{RESULTS}/tables/per_source_accuracy_{{arch}}.csv",
            caption="../report/per_source.rst",
            category="Uncertainty",
        ),
        auroc=report(
            f"{RESULTS}/tables/auroc_{{arch}}.csv",
            caption="../report/auroc.rst",
            category="Uncertainty",
        ),
    log:
        f"{LOGS}/audit_tables/{{arch}}.log",
    benchmark:
        f"{BENCH}/audit_tables/{{arch}}.tsv"
    wildcard_constraints:
        arch="|".join(CLS_ARCHS),
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
        **{
            f"pixels_{rep}": f"{RESULTS}/representations/{rep}/pixels.npy"
            for rep in probe_reps()
        },
        **{
            f"index_{rep}": f"{RESULTS}/representations/{rep}/images.csv"
            for rep in probe_reps()
        },
    output:
        report(
            f"{RESULTS}/tables/source_probe.csv",
            caption="../report/source_probe.rst",
            category="Source probe",
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
        arch=probe_arch(),
        recipe=probe_recipe(),
        reps=probe_reps(),
        seed=CLS_SEEDS[0],
        device=CLS["device"],
        checkpoint_dir=f"{RESULTS}/checkpoints/source_probe",
    script:
        "../scripts/source_probe.py"
