"""A tiny segmentation run on the phantom, end to end through Snakemake (1 epoch, 32 px U-Net)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hideseek.vocabulary import REPRESENTATIONS
from hideseek.representations import represent
from hideseek.data.decode import read_mask
from hideseek.data.store import ImageStore

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY_CONFIG = {
    "phantom": {"n_train_per_class": 12, "n_test_per_class": 3, "second_image_prob": 0.0, "long_side": [64, 80],
                "seg": {"n_train_tags": 4, "images_per_tag": 2, "n_nih": 3, "n_cohen": 3}},
    "store": {"long_side": 48},
    "classification": {"architectures": ["covidnet_cxr3a"], "models": {"covidnet_cxr3a": {"input_size": 32}}},  # inputs the small store can serve
    "segmentation": {
        "threads": 1, "device": "cpu", "image_size": 32,
        "network": {"channels": [4, 8, 16], "num_res_units": 1},
        "train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.25},
        # an untrained net gives odd masks: keep them, never stop this smoke test
        "qc": {"on_flagged": "keep", "max_flagged_fraction": 1.0},
    },
}
TARGETS = [
    "results/tables/table2_segmentation.md",
    "results/figures/figure1_representations.png",
    "results/segmentation/mask_summary.md",
    *(f"results/representations/{rep}/pixels.npy" for rep in REPRESENTATIONS),
]


def snakemake(workdir: Path, config: dict, *args, timeout=600, cores=2):
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [SNAKEMAKE, *args, "--cores", str(cores), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(REPO / "config" / "config.yaml"), str(path)],  # --configfile takes several
        capture_output=True, text=True, timeout=timeout)


def check_stores(results: Path):
    data = ImageStore(results / "data" / "pixels.npy", results / "data" / "images.csv")
    masks = ImageStore(results / "segmentation" / "masks" / "pixels.npy",
                       results / "segmentation" / "masks" / "images.csv")
    assert masks.index.equals(data.index)
    reps = {rep: ImageStore(results / "representations" / rep / "pixels.npy",
                            results / "representations" / rep / "images.csv") for rep in REPRESENTATIONS}
    for i in range(len(data)):
        mask = masks[i]
        assert mask.shape == data[i].shape and set(np.unique(mask)) <= {0, 255}
        for rep, store in reps.items():
            assert store.index.equals(data.index)
            assert np.array_equal(store[i], represent(data[i], mask > 127, rep)), (rep, i)
    return data, masks


@pytest.mark.slow
def test_tiny_segmentation_run_on_the_phantom(tmp_path):
    result = snakemake(tmp_path, TINY_CONFIG, *TARGETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = tmp_path / "results"

    table2 = pd.read_csv(results / "tables" / "table2_segmentation.csv")
    assert set(table2["set"]) == {"nih", "cohen"}
    assert set(table2["metric"]) == {"recall", "precision", "jaccard", "f1", "accuracy", "dice", "hd95"}
    assert (table2["n_images"] == 3).all()
    md = (results / "tables" / "table2_segmentation.md").read_text()
    assert "paper NIH lung" in md and "0.918" in md
    assert (results / "figures" / "figure1_representations.png").stat().st_size > 10_000
    qc = pd.read_csv(results / "segmentation" / "mask_qc.csv", keep_default_na=False)
    assert {"image_id", "lung_fraction", "n_components", "flag", "action"} <= set(qc.columns)
    history = pd.read_csv(results / "segmentation" / "unet_history.csv")
    assert list(history["epoch"]) == [1]
    assert (results / "checkpoints" / "unet" / "last.pt").is_file()
    for rule in ("train_unet", "evaluate_unet", "segment_images", "figure1"):
        assert (results / "logs" / f"{rule}.log").is_file()
        assert (results / "benchmarks" / f"{rule}.tsv").is_file()
    data, _ = check_stores(results)

    # masks: ground_truth (the phantom's true masks) reruns segmentation and the representations
    truth_config = {**TINY_CONFIG, "segmentation": {**TINY_CONFIG["segmentation"], "masks": "ground_truth"}}
    result = snakemake(tmp_path, truth_config, *TARGETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    data, masks = check_stores(results)
    truth_dir = results / "phantom" / "covidx" / "masks"
    for i in (0, len(data) - 1):
        truth = read_mask(truth_dir / data.index.loc[i, "filename"])
        assert truth.shape[0] >= masks[i].shape[0]  # the store is smaller: resized with nearest neighbour
        assert abs((masks[i] > 0).mean() - truth.mean()) < 0.02
    qc = pd.read_csv(results / "segmentation" / "mask_qc.csv", keep_default_na=False)
    assert (qc["flag"] == "").mean() > 0.9  # true masks pass QC


def test_ground_truth_masks_need_phantom_data(tmp_path, tiny_covidx):
    config = {
        "classification_data": {"kind": "covidx", "image_dir": str(tiny_covidx["image_dir"]),
                                "train_split": str(tiny_covidx["train_split"]),
                                "test_split": str(tiny_covidx["test_split"])},
        "segmentation": {"masks": "ground_truth"},
    }
    result = snakemake(tmp_path, config, "-n", timeout=120)
    assert result.returncode != 0
    assert "segmentation.masks: ground_truth" in result.stdout + result.stderr
    assert "classification_data.kind: phantom" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_unet_runs_before_a_classifier_that_does_not_need_it(tmp_path):
    """On one core with both ready, the U-Net (which gates every classifier but the `data` ones)
    goes first: MASK_PRIORITY over TABLE_PRIORITY (a run's order, not a dry run's)."""
    config = {**TINY_CONFIG, "classification": {
        "architectures": ["covidnet_cxr3a"], "train_images_per_class": 4,
        "models": {"covidnet_cxr3a": {"input_size": 32, "width": 0.125, "epochs": 1, "bn_recalibration_images": 4}}}}
    inputs = snakemake(tmp_path, config, "results/data/seg_sets.csv", "results/representations/data/pixels.npy")
    assert inputs.returncode == 0, inputs.stdout[-3000:] + inputs.stderr[-3000:]
    # both are ready now: the order is the scheduler's choice
    result = snakemake(tmp_path, config, "results/segmentation/unet.pt",
                       "results/classifiers/covidnet_cxr3a/data/seed0/model.pt", cores=1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    order = [line.split()[-1].rstrip(":") for line in (result.stdout + result.stderr).splitlines()
             if line.startswith(("rule ", "localrule "))]
    assert order.index("train_unet") < order.index("train_classifier"), order

