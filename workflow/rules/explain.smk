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


# Source probe: the cheapest configured architecture (unless audit.source_probe.arch names one)
# trained to predict the data source from each representation, scored within each class.
PROBE_COST_ORDER = ["alexnet", "covidnet_cxr3a", "covidnet_cxr4a", "resnet50", "vgg11"]


def probe_arch():
    chosen = AUDIT["source_probe"].get("arch")
    return chosen or min(CLS_ARCHS, key=PROBE_COST_ORDER.index)


def probe_recipe():
    recipe = dict(classifier_recipe(probe_arch()))
    if AUDIT["source_probe"].get("epochs"):
        recipe["epochs"] = AUDIT["source_probe"]["epochs"]
    return recipe


def probe_reps():
    return [r for r in AUDIT["source_probe"]["representations"] if r in CLS_REPS]


def source_probe_targets():
    if not AUDIT["source_probe"]["enabled"] or not probe_reps():
        return []
    return [f"{RESULTS}/tables/source_probe.csv"]


rule source_probe:
    input:
        **{f"pixels_{rep}": f"{RESULTS}/representations/{rep}/pixels.npy" for rep in probe_reps()},
        **{f"index_{rep}": f"{RESULTS}/representations/{rep}/images.csv" for rep in probe_reps()},
    output:
        report(
            f"{RESULTS}/tables/source_probe.csv",
            caption="../report/source_probe.rst",
            category="Source probe",
        ),
    params:
        arch=probe_arch(),
        recipe=probe_recipe(),
        reps=probe_reps(),
        seed=CLS_SEEDS[0],
        device=CLS["device"],
        checkpoint_dir=f"{RESULTS}/checkpoints/source_probe",
        **AUDIT_STATS,
    log:
        f"{LOGS}/source_probe/source_probe.log",
    benchmark:
        f"{BENCH}/source_probe/source_probe.tsv"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["train_runtime"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/source_probe.py"
