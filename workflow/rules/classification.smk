# Classification stage: {arch} × {rep} × {seed} training, per-image predictions, Tables 3-7.
# Constants and input functions (CLS_*, classifier_recipe, ...) are in common.smk.
# TABLE_PRIORITY: Tables 3-7's jobs run before the audit's (Grad-CAM, source probe) when both
# are ready, so the tables arrive first on a small machine; the total time is unchanged.
TABLE_PRIORITY = 10


rule fetch_pretrained_weights:
    output:
        f"{CLS['weights_cache']}/{{arch}}_imagenet1k_v1.pth",
    log:
        f"{LOGS}/fetch_pretrained_weights/{{arch}}.log",
    benchmark:
        f"{BENCH}/fetch_pretrained_weights/{{arch}}.tsv"
    wildcard_constraints:
        **CLS_WILDCARDS,
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
        unpack(train_classifier_inputs),
    output:
        model=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/model.pt",
        history=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/history.csv",
        info=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/train_info.json",
    log:
        f"{LOGS}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.tsv"
    wildcard_constraints:
        **CLS_WILDCARDS,
    priority: TABLE_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["train_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        arch="{arch}",
        rep="{rep}",
        seed="{seed}",
        recipe=lambda wildcards: classifier_recipe(wildcards.arch),
        device=CLS["device"],
        checkpoint_dir=f"{CLS_CHECKPOINTS}/{{arch}}/{{rep}}/seed{{seed}}",
        checkpoint_every=CLS["checkpoint_every"],
        keep_checkpoints=CLS["keep_checkpoints"],
    script:
        "../scripts/train_classifier.py"


rule evaluate_classifier:
    input:
        unpack(evaluate_classifier_inputs),
    output:
        f"{PREDICTIONS}/{{arch}}/{{rep}}/seed{{seed}}.csv",
    log:
        f"{LOGS}/evaluate_classifier/{{arch}}/{{rep}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate_classifier/{{arch}}/{{rep}}/seed{{seed}}.tsv"
    wildcard_constraints:
        **CLS_WILDCARDS,
    priority: TABLE_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        arch="{arch}",
        rep="{rep}",
        seed="{seed}",
        test_reps=CLS_REPS,
        device=CLS["device"],
    script:
        "../scripts/evaluate_classifier.py"


rule classifier_table:
    input:
        classifier_table_inputs,
    output:
        csv=report(
            f"{RESULTS}/tables/table{{num}}_{{arch}}.csv",
            caption="../report/classifier_table.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/table{{num}}_{{arch}}.md",
    log:
        f"{LOGS}/classifier_table/table{{num}}_{{arch}}.log",
    benchmark:
        f"{BENCH}/classifier_table/table{{num}}_{{arch}}.tsv"
    wildcard_constraints:
        **CLS_WILDCARDS,
    priority: TABLE_PRIORITY
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **AUDIT_STATS,
        dataset=dataset_name(),
        representations=CLS_REPS,
        note=lambda wildcards: classifier_run_note(wildcards.arch),
    script:
        "../scripts/classifier_table.py"
