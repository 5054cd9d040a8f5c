# Paths, input functions and final targets shared by every rule module.
import os
from pathlib import Path

# Jobs import the project's library from src/ (also inside conda envs and on cluster nodes,
# where the job re-reads this file before running).
_SRC = str(Path(workflow.basedir) / "src")
_PYTHONPATH = os.environ.get("PYTHONPATH", "")
if _SRC not in _PYTHONPATH.split(os.pathsep):
    os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_SRC, _PYTHONPATH) if p))

RESULTS = "results"
PHANTOM = f"{RESULTS}/phantom"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def uses_phantom():
    return (
        config["classification_data"]["kind"] == "phantom"
        or config["segmentation_data"]["kind"] == "phantom"
    )


def classification_files():
    """Image folder and split files of the classification data (the phantom's or the user's)."""
    data = config["classification_data"]
    if data["kind"] == "phantom":
        return dict(
            image_dir=f"{PHANTOM}/covidx/images",
            train_split=f"{PHANTOM}/covidx/train.txt",
            test_split=f"{PHANTOM}/covidx/test.txt",
        )
    return dict(
        image_dir=data["image_dir"],
        train_split=data["train_split"],
        test_split=data.get("test_split"),
    )


def ingest_inputs(wildcards):
    files = classification_files()
    return {k: files[k] for k in ("train_split", "test_split") if files[k]}


def dataset_name():
    data = config["classification_data"]
    if data["kind"] == "phantom":
        ph = config["phantom"]
        return (
            f"built-in phantom, seed {ph['seed']}, shortcut {ph['shortcut']}, "
            f"disease_contrast {ph['disease_contrast']}"
        )
    return f"COVIDx-format data from {data['train_split']}" + (
        f" and {data['test_split']}" if data.get("test_split") else ""
    )


def final_targets():
    targets = [
        f"{RESULTS}/data/seg_sets.csv",
        f"{RESULTS}/tables/table1_data.csv",
        f"{RESULTS}/tables/table1_data.md",
    ]
    if config["classification_data"]["kind"] == "phantom":
        targets.append(f"{RESULTS}/figures/phantom_samples.png")
    targets += segmentation_targets()
    targets += classifier_table_targets()  # Tables 3-7 (classification.smk)
    # Figure 3, lung attention, CIs, verdict (explain.smk, report.smk)
    targets += audit_targets()
    return targets


TANG_PAIRING = dict(
    image_regex=r"^(?P<tag>.+?)(?P<k>\d)\.png$",
    mask_name="{tag}mask.png",
    group="{tag}",
)


def segmentation_sets():
    """Training and test segmentation folders (the phantom's or the user's)."""
    data = config["segmentation_data"]
    if data["kind"] == "phantom":
        seg = f"{PHANTOM}/seg"
        return dict(
            train=dict(
                images=f"{seg}/train/images", masks=f"{seg}/train/masks", **TANG_PAIRING
            ),
            test_sets={
                name: dict(images=f"{seg}/{name}/images", masks=f"{seg}/{name}/masks")
                for name in ("nih", "cohen")
            },
        )
    return dict(train=data["train"], test_sets=data["test_sets"])


def seg_index_inputs(wildcards):
    return (
        [f"{PHANTOM}/seg"] if config["segmentation_data"]["kind"] == "phantom" else []
    )


# --- Lung segmentation and representations (segmentation.smk, representations.smk) ---------------
SEG = f"{RESULTS}/segmentation"
# Every representation is an image store with the same rows, order and shapes as results/data:
# results/representations/{rep}/pixels.npy + images.csv (read with hideseek.store.ImageStore).
ALL_REPRESENTATIONS = [
    "data",
    "lungs_isolated",
    "lungs_removed",
    "lungs_framed",
    "lungs_boxed_out",
]
# The ones the workflow builds: those the classifier grid uses (classification.representations), else all.
REPRESENTATIONS = list(
    config.get("classification", {}).get("representations", ALL_REPRESENTATIONS)
)

if (
    config["segmentation"]["masks"] == "ground_truth"
    and config["classification_data"]["kind"] != "phantom"
):
    raise ValueError(
        "segmentation.masks: ground_truth uses the phantom's true lung masks, so it needs "
        "classification_data.kind: phantom (this config has kind: "
        f"{config['classification_data']['kind']}); use masks: predicted for your own images"
    )


def seg_config(*keys):
    """A rule's slice of the segmentation config (params: a change reruns only the rules it concerns).
    The device is read from the config by the scripts, so moving to a GPU reruns nothing.
    """
    return {key: config["segmentation"][key] for key in keys}


def representation_store(rep):
    return f"{RESULTS}/representations/{rep}/pixels.npy"


def segment_images_inputs(wildcards):
    inputs = dict(
        pixels=f"{RESULTS}/data/pixels.npy", index=f"{RESULTS}/data/images.csv"
    )
    if config["classification_data"]["kind"] == "phantom":
        # the true masks: used as the masks (ground_truth) or to score the predicted ones by class
        inputs["truth"] = f"{PHANTOM}/covidx/masks"
    if config["segmentation"]["masks"] == "predicted":
        inputs["model"] = f"{SEG}/unet.pt"
    return inputs


def representation_inputs(wildcards):
    inputs = dict(
        pixels=f"{RESULTS}/data/pixels.npy", index=f"{RESULTS}/data/images.csv"
    )
    if wildcards.rep != "data":  # data is the store image itself: it needs no mask
        inputs.update(
            mask_pixels=f"{SEG}/masks/pixels.npy", mask_index=f"{SEG}/masks/images.csv"
        )
    return inputs


def segmentation_dataset_name():
    data = config["segmentation_data"]
    if data["kind"] == "phantom":
        return f"built-in phantom segmentation sets (seed {config['phantom']['seed']})"
    return f"trained on {data['train']['images']}; test sets " + ", ".join(
        f"{name} ({folder['images']})" for name, folder in data["test_sets"].items()
    )


def segmentation_targets():
    return [
        f"{RESULTS}/tables/table2_segmentation.csv",
        f"{RESULTS}/tables/table2_segmentation.md",
        f"{SEG}/mask_summary.md",
        f"{RESULTS}/figures/figure1_representations.png",
        *(representation_store(rep) for rep in REPRESENTATIONS),
    ]


# --- Classifier grid (classification.smk) ---------------------------------------------------------
import sys

if _SRC not in sys.path:
    sys.path.insert(0, _SRC)
from hideseek.vocabulary import TABLE_NUMBERS
from hideseek.classification.recipes import resolve_recipe

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
CLS_WILDCARDS = dict(
    arch="|".join(TABLE_NUMBERS), rep="|".join(CLS_REPS), seed=r"\d+", num="[3-7]"
)


def classifier_recipe(arch):
    return resolve_recipe(CLS, arch)


def uses_pretrained(arch):
    return bool(classifier_recipe(arch)["pretrained"]) and not arch.startswith(
        "covidnet"
    )


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
    inputs = dict(
        model=f"{CLASSIFIERS}/{wildcards.arch}/{wildcards.rep}/seed{wildcards.seed}/model.pt"
    )
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
        f"{PREDICTIONS}/{wildcards.arch}/{{rep}}/seed{{seed}}.csv",
        rep=CLS_REPS,
        seed=CLS_SEEDS,
    )


def classifier_run_note(arch):
    """One line for a table: the scale this architecture ran at (the paper's differs)."""
    r = classifier_recipe(arch)
    per_class = CLS["train_images_per_class"]
    return (
        f"Run: {r['input_size']} px, {r['epochs']} epochs, batch {r['batch_size']}, Adam {r['lr']:g}, "
        f"{'ImageNet-pretrained' if r['pretrained'] else 'from scratch'}"
        + (f", width {r['width']:g}" if arch.startswith("covidnet") else "")
        + f", {'all' if per_class is None else f'at most {per_class}'} training images per class, "
        f"seeds {', '.join(map(str, CLS_SEEDS))} (recipes: results/classifiers/{arch}/<rep>/seed<seed>/train_info.json)."
    )


def classifier_table_targets():
    return expand(
        f"{RESULTS}/tables/table{{n}}_{{arch}}.{{ext}}",
        zip,
        n=[TABLE_NUMBERS[a] for a in CLS_ARCHS for _ in ("csv", "md")],
        arch=[a for a in CLS_ARCHS for _ in ("csv", "md")],
        ext=["csv", "md"] * len(CLS_ARCHS),
    )


# --- Explain and audit (explain.smk, report.smk) --------------------------------------------------
AUDIT = config["audit"]
# Grad-CAM and the per-image attention use the first seed's models (CLS_*: classification.smk).
AUDIT_STATS = dict(
    n_boot=AUDIT["n_boot"], boot_seed=AUDIT["boot_seed"], level=AUDIT["ci_level"]
)


def audit_targets():
    """Figure 3 and lung attention per architecture, test-time hiding and comparison tables, verdict."""
    return audit_arch_targets() + verdict_targets()


def gradcam_inputs(wildcards):
    inputs = dict(
        mask_pixels=f"{SEG}/masks/pixels.npy", mask_index=f"{SEG}/masks/images.csv"
    )
    for rep in CLS_REPS:
        inputs[f"model_{rep}"] = (
            f"{CLASSIFIERS}/{wildcards.arch}/{rep}/seed{CLS_SEEDS[0]}/model.pt"
        )
        inputs[f"pred_{rep}"] = (
            f"{PREDICTIONS}/{wildcards.arch}/{rep}/seed{CLS_SEEDS[0]}.csv"
        )
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


def verdict_targets():
    if "data" not in CLS_REPS:
        return []
    return [
        f"{RESULTS}/audit/verdict.csv",
        f"{RESULTS}/audit/summary.md",
        *source_probe_targets(),
    ]
