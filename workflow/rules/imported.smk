# Audit a model you already have (imported_models; src/hideseek/imported/): each imported model
# predicts the test split of every representation (the hide-at-test-time matrix), gets the
# uncertainty tables and its prediction distribution, Grad-CAM with lung attention where it is
# differentiable in torch, and a verdict row. Outputs: results/imported/{model}/.
# On each external test set (external.smk) it predicts every representation too: its table there
# and its row of the cross-site table (results/imported/{model}/external/{ext}/).
# Also here: any model this workflow trains exported to ONNX (results/classifiers/.../model.onnx).
import re

# IMPORTED, IMPORTED_DIR: common.smk. A constraint that matches no name when nothing is imported.
IMPORTED_NAMES = "|".join(re.escape(name) for name in IMPORTED) or "(?!)"
IMPORTED_TABLE_FILES = dict(
    hiding="test_time_hiding.csv",
    metrics="metrics.csv",
    per_source="per_source_accuracy.csv",
    auroc="auroc.csv",
    distribution="prediction_distribution.csv",
)


# One imported model's outputs, and every model's (the final targets; rule verdict's rows).
MODEL_DIR = f"{IMPORTED_DIR}/{{model}}"
IMPORTED_OUTPUTS = (
    "predictions.csv",
    *IMPORTED_TABLE_FILES.values(),
    "gradcam.png",
    "lung_attention.csv",
    "cam_status.json",
    "verdict_row.csv",
    "summary.md",
)
IMPORTED_TARGETS = [
    f"{IMPORTED_DIR}/{model}/{name}" for model in IMPORTED for name in IMPORTED_OUTPUTS
] + [
    imported_external_file(model, ext, name)
    for model in IMPORTED
    for ext in EXTERNAL_SETS
    for name in ("table.csv", "table.md")
]
IMPORTED_VERDICT_ROWS = [
    f"{IMPORTED_DIR}/{model}/verdict_row.csv" for model in IMPORTED
]


rule imported_predict:
    input:
        unpack(
            lambda wildcards: {"model": IMPORTED[wildcards.model]["path"]}
            | rep_stores(CLS_REPS)
        ),
    output:
        f"{MODEL_DIR}/predictions.csv",
    log:
        f"{LOGS}/imported_predict/{{model}}.log",
    benchmark:
        f"{BENCH}/imported_predict/{{model}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        entry=lambda wildcards: IMPORTED[wildcards.model],
        reps=CLS_REPS,
    script:
        "../scripts/imported_predict.py"


rule imported_external_predict:
    input:
        unpack(
            lambda wildcards: {"model": IMPORTED[wildcards.model]["path"]}
            | external_rep_stores(wildcards.ext, CLS_REPS)
        ),
    output:
        imported_external_file("{model}", "{ext}", "predictions.csv"),
    log:
        f"{LOGS}/imported_predict/{{model}}_external_{{ext}}.log",
    benchmark:
        f"{BENCH}/imported_predict/{{model}}_external_{{ext}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        entry=lambda wildcards: IMPORTED[wildcards.model],
        reps=CLS_REPS,
    script:
        "../scripts/imported_predict.py"


rule imported_external_table:
    input:
        imported_external_file("{model}", "{ext}", "predictions.csv"),
    output:
        csv=imported_external_file("{model}", "{ext}", "table.csv"),
        md=imported_external_file("{model}", "{ext}", "table.md"),
    log:
        f"{LOGS}/imported_tables/{{model}}_external_{{ext}}.log",
    benchmark:
        f"{BENCH}/imported_tables/{{model}}_external_{{ext}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **AUDIT_STATS,
        model=lambda wildcards: wildcards.model,
        representations=CLS_REPS,
        description=lambda wildcards: EXTERNAL_DESCRIPTIONS[wildcards.ext],
    script:
        "../scripts/external_table.py"


rule imported_tables:
    input:
        f"{MODEL_DIR}/predictions.csv",
    output:
        **{key: f"{MODEL_DIR}/{name}" for key, name in IMPORTED_TABLE_FILES.items()},
    log:
        f"{LOGS}/imported_tables/{{model}}.log",
    benchmark:
        f"{BENCH}/imported_tables/{{model}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **AUDIT_STATS,
        reps=CLS_REPS,
        collapse_share=lambda wildcards: IMPORTED[wildcards.model]["collapse_share"],
    script:
        "../scripts/imported_tables.py"


rule imported_gradcam:
    input:
        unpack(
            lambda wildcards: {
                "model": IMPORTED[wildcards.model]["path"],
                "predictions": f"{IMPORTED_DIR}/{wildcards.model}/predictions.csv",
            }
            | store_files(MASK_STORE, "mask_{}")
            | rep_stores(CLS_REPS)
        ),
    output:
        figure=f"{MODEL_DIR}/gradcam.png",
        attention=f"{MODEL_DIR}/lung_attention.csv",
        per_image=f"{MODEL_DIR}/lung_attention_per_image.csv",
        status=f"{MODEL_DIR}/cam_status.json",
    log:
        f"{LOGS}/imported_gradcam/{{model}}.log",
    benchmark:
        f"{BENCH}/imported_gradcam/{{model}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/torch.yaml"
    threads: AUDIT["gradcam"]["threads"]
    resources:
        mem_mb=AUDIT["gradcam"]["mem_mb"],
        runtime=AUDIT["gradcam"]["runtime"],
        gpu=config["resources"]["gpu"],
    params:
        **AUDIT_STATS,
        entry=lambda wildcards: IMPORTED[wildcards.model],
        reps=CLS_REPS,
        n_images=AUDIT["gradcam"]["n_images"],
        sample_seed=AUDIT["gradcam"]["sample_seed"],
        randomisation_max_correlation=AUDIT["gradcam"]["randomisation_max_correlation"],
    script:
        "../scripts/imported_gradcam.py"


rule imported_verdict_row:
    input:
        index=store_files(rep_store("data"))["index"],
        hiding=f"{MODEL_DIR}/{IMPORTED_TABLE_FILES['hiding']}",
        distribution=f"{MODEL_DIR}/{IMPORTED_TABLE_FILES['distribution']}",
        attention=f"{MODEL_DIR}/lung_attention.csv",
        per_source=f"{MODEL_DIR}/{IMPORTED_TABLE_FILES['per_source']}",
        status=f"{MODEL_DIR}/cam_status.json",
    output:
        csv=f"{MODEL_DIR}/verdict_row.csv",
        md=f"{MODEL_DIR}/summary.md",
    log:
        f"{LOGS}/imported_verdict_row/{{model}}.log",
    benchmark:
        f"{BENCH}/imported_verdict_row/{{model}}.tsv"
    wildcard_constraints:
        model=IMPORTED_NAMES,
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        format=lambda wildcards: IMPORTED[wildcards.model]["format"],
        margin=AUDIT["margin"],
        learned_margin=AUDIT["learned_margin"],
        min_test_images=AUDIT["min_test_images"],
        ci_level=AUDIT["ci_level"],
    script:
        "../scripts/imported_verdict_row.py"


# Any trained model as ONNX (not a default target): snakemake results/classifiers/resnet50/data/seed0/model.onnx
rule export_onnx:
    input:
        f"{run_folder('{arch}', '{rep}', '{seed}')}/model.pt",
    output:
        f"{run_folder('{arch}', '{rep}', '{seed}')}/model.onnx",
    log:
        f"{LOGS}/export_onnx/{{arch}}_{{rep}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/export_onnx/{{arch}}_{{rep}}_seed{{seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/export_onnx.py"
