# Classification stage: {arch} × {rep} × {seed} training, per-image predictions, Tables 3-7.
# The device, threads and checkpointing (classification.device, checkpoint_every,
# keep_checkpoints, checkpoint_root) are read by the scripts at run time, so changing them
# reruns nothing; a recipe change reruns only its architecture's jobs.
# TABLE_PRIORITY (common.smk): Tables 3-7's jobs run before the audit's.


rule fetch_pretrained_weights:
    output:
        f"{CLS['weights_cache']}/{{arch}}_imagenet1k_v1.pth",
    log:
        f"{LOGS}/fetch_pretrained_weights/{{arch}}.log",
    benchmark:
        f"{BENCH}/fetch_pretrained_weights/{{arch}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/fetch_pretrained_weights.py"


rule train_classifier:
    input:
        unpack(
            lambda wildcards: store_files(rep_store(wildcards.rep))
            | pretrained_weights(wildcards.arch)
        ),
    output:
        model=f"{run_folder('{arch}', '{rep}', '{seed}')}/model.pt",
        history=f"{run_folder('{arch}', '{rep}', '{seed}')}/history.csv",
        info=f"{run_folder('{arch}', '{rep}', '{seed}')}/train_info.json",
    log:
        f"{LOGS}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.tsv"
    priority: TABLE_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["train_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        recipe=lambda wildcards: resolve_recipe(CLS, wildcards.arch),
    script:
        "../scripts/train_classifier.py"


# One job per architecture: all its models, each test split loaded once (not a process per model).
rule evaluate_classifier:
    input:
        # every model of the architecture, and the test split of every representation
        unpack(
            lambda wildcards: {
                f"model_{rep}_seed{seed}": f"{run_folder(wildcards.arch, rep, seed)}/model.pt"
                for rep, seed in CLS_RUNS
            }
            | rep_stores(CLS_REPS)
        ),
    output:
        **{
            f"{rep}_seed{seed}": f"{PREDICTIONS}/{{arch}}/{rep}/seed{seed}.csv"
            for rep, seed in CLS_RUNS
        },
    log:
        f"{LOGS}/evaluate_classifier/{{arch}}.log",
    benchmark:
        f"{BENCH}/evaluate_classifier/{{arch}}.tsv"
    priority: TABLE_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"] * len(CLS_RUNS),  # per model
        gpu=config["resources"]["gpu"],
    params:
        runs=CLS_RUNS,
        test_reps=CLS_REPS,
    script:
        "../scripts/evaluate_classifier.py"


rule classifier_table:
    input:
        lambda wildcards: prediction_files(wildcards.arch, table=wildcards.num),
    output:
        csv=report(
            f"{TABLES}/table{{num}}_{{arch}}.csv",
            caption="../report/classifier_table.rst",
            category="4. Tables 3–7",
            subcategory="Tables",
            labels={"architecture": "{arch}", "table": "Table {num}"},
        ),
        md=f"{TABLES}/table{{num}}_{{arch}}.md",
    log:
        f"{LOGS}/classifier_table/table{{num}}_{{arch}}.log",
    benchmark:
        f"{BENCH}/classifier_table/table{{num}}_{{arch}}.tsv"
    priority: TABLE_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **AUDIT_STATS,
        dataset=plan.dataset_description(config),
        representations=CLS_REPS,
        note=lambda wildcards: plan.classifier_run_note(CLS, wildcards.arch),
    script:
        "../scripts/classifier_table.py"


rule learning_curves:
    input:
        lambda wildcards: [
            f"{run_folder(wildcards.arch, rep, seed)}/history.csv"
            for rep, seed in CLS_RUNS
        ],
    output:
        report(
            f"{FIGURES}/learning_curves_{{arch}}.png",
            caption="../report/learning_curves.rst",
            category="4. Tables 3–7",
            subcategory="Learning curves",
            labels={"architecture": "{arch}"},
        ),
    log:
        f"{LOGS}/learning_curves/{{arch}}.log",
    benchmark:
        f"{BENCH}/learning_curves/{{arch}}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        runs=CLS_RUNS,
        reps=CLS_REPS,
    script:
        "../scripts/learning_curves.py"
