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
    targets += audit_targets()  # Figure 3, lung attention, CIs, verdict (explain.smk, report.smk)
    return targets


TANG_PAIRING = dict(
    image_regex=r"^(?P<tag>.+?)(?P<k>\d)\.png$", mask_name="{tag}mask.png", group="{tag}"
)


def segmentation_sets():
    """Training and test segmentation folders (the phantom's or the user's)."""
    data = config["segmentation_data"]
    if data["kind"] == "phantom":
        seg = f"{PHANTOM}/seg"
        return dict(
            train=dict(images=f"{seg}/train/images", masks=f"{seg}/train/masks", **TANG_PAIRING),
            test_sets={
                name: dict(images=f"{seg}/{name}/images", masks=f"{seg}/{name}/masks")
                for name in ("nih", "cohen")
            },
        )
    return dict(train=data["train"], test_sets=data["test_sets"])


def seg_index_inputs(wildcards):
    return [f"{PHANTOM}/seg"] if config["segmentation_data"]["kind"] == "phantom" else []


# --- Lung segmentation and representations (segmentation.smk, representations.smk) ---------------
SEG = f"{RESULTS}/segmentation"
# Every representation is an image store with the same rows, order and shapes as results/data:
# results/representations/{rep}/pixels.npy + images.csv (read with hideseek.store.ImageStore).
ALL_REPRESENTATIONS = ["data", "lungs_isolated", "lungs_removed", "lungs_framed", "lungs_boxed_out"]
# The ones the workflow builds: those the classifier grid uses (classification.representations), else all.
REPRESENTATIONS = list(config.get("classification", {}).get("representations", ALL_REPRESENTATIONS))

if (
    config["segmentation"]["masks"] == "ground_truth"
    and config["classification_data"]["kind"] != "phantom"
):
    raise ValueError(
        "segmentation.masks: ground_truth uses the phantom's true lung masks, so it needs "
        "classification_data.kind: phantom (this config has kind: "
        f"{config['classification_data']['kind']}); use masks: predicted for your own images"
    )


def representation_store(rep):
    return f"{RESULTS}/representations/{rep}/pixels.npy"


def segment_images_inputs(wildcards):
    inputs = dict(pixels=f"{RESULTS}/data/pixels.npy", index=f"{RESULTS}/data/images.csv")
    if config["classification_data"]["kind"] == "phantom":
        # the true masks: used as the masks (ground_truth) or to score the predicted ones by class
        inputs["truth"] = f"{PHANTOM}/covidx/masks"
    if config["segmentation"]["masks"] == "predicted":
        inputs["model"] = f"{SEG}/unet.pt"
    return inputs


def representation_inputs(wildcards):
    inputs = dict(pixels=f"{RESULTS}/data/pixels.npy", index=f"{RESULTS}/data/images.csv")
    if wildcards.rep != "data":  # data is the store image itself: it needs no mask
        inputs.update(mask_pixels=f"{SEG}/masks/pixels.npy", mask_index=f"{SEG}/masks/images.csv")
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


# --- Explain and audit (explain.smk, report.smk) --------------------------------------------------
def audit_targets():
    """Figure 3 and lung attention per architecture, test-time hiding and comparison tables, verdict."""
    return audit_arch_targets() + verdict_targets()
