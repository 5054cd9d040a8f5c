# Classification stage: {arch} × {rep} × {seed} training, per-image predictions, Tables 3-7.
import sys

if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
from hideseek.classifier_tables import TABLE_NUMBERS
from hideseek.training import resolve_recipe

CLS = config["classification"]
CLS_ARCHS = list(CLS["architectures"])
CLS_SEEDS = [int(s) for s in CLS["seeds"]]
# The representations the grid trains on and tests on (every one by default).
CLS_REPS = list(CLS["representations"])
CLASSIFIERS = f"{RESULTS}/classifiers"
PREDICTIONS = f"{RESULTS}/predictions"
# Resumable per-epoch checkpoints live outside every declared output: Snakemake deletes the
# outputs of a failed job, and a resumed job needs them.
CLS_CHECKPOINTS = f"{RESULTS}/checkpoints/classifiers"
CLS_WILDCARDS = dict(arch="|".join(TABLE_NUMBERS), rep="|".join(CLS_REPS), seed=r"\d+", num="[3-7]")


def classifier_recipe(arch):
    return resolve_recipe(CLS, arch)


def uses_pretrained(arch):
    return bool(classifier_recipe(arch)["pretrained"]) and not arch.startswith("covidnet")


def pretrained_weights_file(arch):
    local = (CLS["pretrained_files"] or {}).get(arch)
    return local if local else f"{CLS['weights_cache']}/{arch}_imagenet1k_v1.pth"


def train_classifier_inputs(wildcards):
    inputs = dict(
        pixels=f"{RESULTS}/representations/{wildcards.rep}/pixels.npy",
        index=f"{RESULTS}/representations/{wildcards.rep}/images.csv",
    )
    if uses_pretrained(wildcards.arch):
        inputs["weights"] = pretrained_weights_file(wildcards.arch)
    return inputs


def evaluate_classifier_inputs(wildcards):
    inputs = dict(model=f"{CLASSIFIERS}/{wildcards.arch}/{wildcards.rep}/seed{wildcards.seed}/model.pt")
    for rep in CLS_REPS:
        inputs[f"pixels_{rep}"] = f"{RESULTS}/representations/{rep}/pixels.npy"
        inputs[f"index_{rep}"] = f"{RESULTS}/representations/{rep}/images.csv"
    return inputs


def classifier_table_inputs(wildcards):
    if TABLE_NUMBERS[wildcards.arch] != int(wildcards.num):
        raise ValueError(
            f"table{wildcards.num}_{wildcards.arch}: {wildcards.arch} is Table {TABLE_NUMBERS[wildcards.arch]}"
        )
    return expand(
        f"{PREDICTIONS}/{wildcards.arch}/{{rep}}/seed{{seed}}.csv", rep=CLS_REPS, seed=CLS_SEEDS
    )


def classifier_table_targets():
    return expand(
        f"{RESULTS}/tables/table{{n}}_{{arch}}.{{ext}}",
        zip,
        n=[TABLE_NUMBERS[a] for a in CLS_ARCHS for _ in ("csv", "md")],
        arch=[a for a in CLS_ARCHS for _ in ("csv", "md")],
        ext=["csv", "md"] * len(CLS_ARCHS),
    )


rule fetch_pretrained_weights:
    wildcard_constraints:
        **CLS_WILDCARDS,
    output:
        f"{CLS['weights_cache']}/{{arch}}_imagenet1k_v1.pth",
    log:
        f"{LOGS}/fetch_pretrained_weights/{{arch}}.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fetch_pretrained_weights.py"


rule train_classifier:
    wildcard_constraints:
        **CLS_WILDCARDS,
    input:
        unpack(train_classifier_inputs),
    output:
        model=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/model.pt",
        history=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/history.csv",
        info=f"{CLASSIFIERS}/{{arch}}/{{rep}}/seed{{seed}}/train_info.json",
    params:
        arch="{arch}",
        rep="{rep}",
        seed="{seed}",
        recipe=lambda wildcards: classifier_recipe(wildcards.arch),
        device=CLS["device"],
        checkpoint_dir=f"{CLS_CHECKPOINTS}/{{arch}}/{{rep}}/seed{{seed}}",
        checkpoint_every=CLS["checkpoint_every"],
        keep_checkpoints=CLS["keep_checkpoints"],
    log:
        f"{LOGS}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_classifier/{{arch}}/{{rep}}/seed{{seed}}.tsv"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["train_runtime"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_classifier.py"


rule evaluate_classifier:
    wildcard_constraints:
        **CLS_WILDCARDS,
    input:
        unpack(evaluate_classifier_inputs),
    output:
        f"{PREDICTIONS}/{{arch}}/{{rep}}/seed{{seed}}.csv",
    params:
        arch="{arch}",
        rep="{rep}",
        seed="{seed}",
        test_reps=CLS_REPS,
        device=CLS["device"],
    log:
        f"{LOGS}/evaluate_classifier/{{arch}}/{{rep}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate_classifier/{{arch}}/{{rep}}/seed{{seed}}.tsv"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"],
        gpu=config["resources"]["gpu"],
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/evaluate_classifier.py"


rule classifier_table:
    wildcard_constraints:
        **CLS_WILDCARDS,
    input:
        classifier_table_inputs,
    output:
        csv=report(
            f"{RESULTS}/tables/table{{num}}_{{arch}}.csv",
            caption="../report/classifier_table.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/table{{num}}_{{arch}}.md",
    params:
        dataset=dataset_name(),
        representations=CLS_REPS,
        note=(
            f"Seeds: {', '.join(map(str, CLS_SEEDS))}. Recipes and scale: "
            "results/classifiers/<arch>/<rep>/seed<seed>/train_info.json."
        ),
    log:
        f"{LOGS}/classifier_table/table{{num}}_{{arch}}.log",
    benchmark:
        f"{BENCH}/classifier_table/table{{num}}_{{arch}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/classifier_table.py"
