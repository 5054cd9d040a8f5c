# Explain and audit, per architecture: Grad-CAM (Figure 3) + lung attention, and the uncertainty
# tables (test-time hiding, representation comparisons, per-source accuracy, per-class AUROC).
# Needs classification.smk (CLS_*, CLASSIFIERS, PREDICTIONS) and the lung mask store.
AUDIT = config["audit"]
# Grad-CAM and the per-image attention use the first seed's models.
AUDIT_SEED = CLS_SEEDS[0]
AUDIT_STATS = dict(n_boot=AUDIT["n_boot"], boot_seed=AUDIT["boot_seed"], level=AUDIT["ci_level"])


def gradcam_inputs(wildcards):
    inputs = dict(mask_pixels=f"{SEG}/masks/pixels.npy", mask_index=f"{SEG}/masks/images.csv")
    for rep in CLS_REPS:
        inputs[f"model_{rep}"] = f"{CLASSIFIERS}/{wildcards.arch}/{rep}/seed{AUDIT_SEED}/model.pt"
        inputs[f"pred_{rep}"] = f"{PREDICTIONS}/{wildcards.arch}/{rep}/seed{AUDIT_SEED}.csv"
        inputs[f"pixels_{rep}"] = f"{RESULTS}/representations/{rep}/pixels.npy"
        inputs[f"index_{rep}"] = f"{RESULTS}/representations/{rep}/images.csv"
    return inputs


def audit_arch_targets():
    """Per-architecture Figure 3, lung attention and uncertainty tables (needs 'data' in the grid)."""
    if "data" not in CLS_REPS:
        return []
    return [
        *expand(f"{RESULTS}/figures/figure3_gradcam_{{arch}}.png", arch=CLS_ARCHS),
        *expand(f"{RESULTS}/tables/lung_attention_{{arch}}.csv", arch=CLS_ARCHS),
        *expand(f"{RESULTS}/tables/test_time_hiding_{{arch}}.csv", arch=CLS_ARCHS),
        *expand(f"{RESULTS}/tables/comparison_{{arch}}.csv", arch=CLS_ARCHS),
    ]


rule gradcam:
    wildcard_constraints:
        arch="|".join(CLS_ARCHS),
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
    params:
        reps=CLS_REPS,
        n_images=AUDIT["gradcam"]["n_images"],
        sample_seed=AUDIT["gradcam"]["sample_seed"],
        device=CLS["device"],
        **AUDIT_STATS,
    log:
        f"{LOGS}/gradcam/{{arch}}.log",
    benchmark:
        f"{BENCH}/gradcam/{{arch}}.tsv"
    threads: AUDIT["gradcam"]["threads"]
    resources:
        mem_mb=AUDIT["gradcam"]["mem_mb"],
        runtime=AUDIT["gradcam"]["runtime"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/gradcam.py"


rule audit_tables:
    wildcard_constraints:
        arch="|".join(CLS_ARCHS),
    input:
        lambda wildcards: expand(
            f"{PREDICTIONS}/{wildcards.arch}/{{rep}}/seed{{seed}}.csv", rep=CLS_REPS, seed=CLS_SEEDS
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
    params:
        reps=CLS_REPS,
        **AUDIT_STATS,
    log:
        f"{LOGS}/audit_tables/{{arch}}.log",
    benchmark:
        f"{BENCH}/audit_tables/{{arch}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/audit_tables.py"
