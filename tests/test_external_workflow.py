"""External test sets in the workflow: config errors, the wiring (dry runs), and an external-set
run on a tiny phantom end to end through Snakemake."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hideseek.data.store import ImageStore
from hideseek.errors import InputError
from hideseek.external.config import external_sets
from hideseek.external.tables import GAP_COLUMNS
from hideseek.plan import check_config

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REPS = ["data", "lungs_removed"]
TINY = {
    "phantom": {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72],
                "seg": {"n_train_tags": 2, "images_per_tag": 2, "n_nih": 2, "n_cohen": 2}},
    "store": {"long_side": 48},
    "segmentation": {"masks": "ground_truth", "threads": 1},  # the phantoms' true masks: no U-Net training here
    "classification": {
        "architectures": ["covidnet_cxr3a"], "representations": REPS, "seeds": [0], "train_images_per_class": 6,
        "resources": {"threads": 1, "mem_mb": 2000},
        "models": {"covidnet_cxr3a": {"input_size": 32, "width": 0.125, "epochs": 1, "bn_recalibration_images": 8}},
    },
    "audit": {"n_boot": 200},
}
GENERALISATION = "results/tables/external_generalisation.csv"


def snakemake(workdir: Path, config: dict, *args, timeout=600):
    """Targets and flags first: --configfile takes every argument after it."""
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [SNAKEMAKE, *args, "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(REPO / "config" / "config.yaml"), str(path)],
        capture_output=True, text=True, timeout=timeout)


def planned(result) -> dict[str, int]:
    """Jobs per rule of a dry run."""
    stats = (result.stdout + result.stderr).split("Job stats:")[1].split("\n\n")[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line.strip()
            and line.split()[0] != "total"}


# ----------------------------------------------------------------------------- config

def test_the_default_has_one_phantom_external_set(config):
    sets = external_sets(config)
    assert list(sets) == ["phantom_reversed"]
    assert sets["phantom_reversed"] | {"kind": "phantom_external", "mix": "reversed", "on_overlap": "fail"} == \
        sets["phantom_reversed"]  # schema defaults filled in


def test_config_errors_name_the_key(config, tmp_path):
    own = {"kind": "covidx", "image_dir": str(tmp_path), "test_split": str(tmp_path / "site2.txt")}
    bad = copy.deepcopy(config)
    bad["external_test_sets"]["site2"] = {**own, **{k: v for k, v in config["external_test_sets"]["phantom_reversed"]
                                                     .items() if k not in ("kind",)}}
    bad["segmentation"]["masks"] = "ground_truth"
    with pytest.raises(InputError, match=r"external_test_sets\.site2: segmentation\.masks: ground_truth"):
        check_config(bad)
    bad["segmentation"]["masks"] = "predicted"
    bad["classification_data"] |= {"kind": "covidx", "image_dir": str(tmp_path),
                                   "train_split": str(tmp_path / "site2.txt")}
    with pytest.raises(InputError, match=r"external_test_sets\.site2\.test_split: .* lists the images of "
                                         r"classification_data"):
        check_config(bad)
    bad["classification_data"]["train_split"] = str(tmp_path / "train.txt")
    check_config(bad)
    # on the user's own images the default's phantom set is left out; theirs stays
    assert list(external_sets(bad)) == ["site2"]
    bad["external_test_sets"]["site2"]["enabled"] = False
    assert external_sets(bad) == {}


def test_the_schema_rejects_bad_sets(config):
    from snakemake.utils import validate

    schema = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
    for sets in ({"site2": {"kind": "covidx", "image_dir": "x"}},  # no test_split
                 {"site-2": {"kind": "phantom_external"}},  # the name goes into file names and wildcards
                 {"site2": {"kind": "phantom_external", "mixx": "reversed"}},
                 {"site2": {"kind": "dicom_folder"}}):
        with pytest.raises(Exception, match="validating"):
            validate({"external_test_sets": sets}, schema)


# ----------------------------------------------------------------------------- wiring

def test_the_default_run_plans_the_external_set_with_the_trained_unet(tmp_path):
    config = copy.deepcopy(TINY)
    config["segmentation"]["masks"] = "predicted"
    config["external_test_sets"] = {"indep": {"kind": "phantom_external", "mix": "independent", "n_per_class": 3}}
    result = snakemake(tmp_path, config, "-n", "--printshellcmds")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned(result)
    for rule in ("external_phantom", "external_ingest", "external_segment", "external_table"):
        assert jobs[rule] == 2, rule  # phantom_reversed (the default) and indep
    assert jobs["external_representation"] == 2 * len(REPS) and jobs["external_predictions"] == 2
    assert jobs["external_generalisation"] == 1
    segment = result.stdout.split("rule external_segment:")[1].split("\n\n")[0]
    assert "results/segmentation/unet.pt" in segment and "results/external/" in segment
    assert "results/tables/external_generalisation.csv" in result.stdout.split("rule verdict:")[1].split("\n\n")[0]
    # a set can be switched off; then the verdict does without it
    config["external_test_sets"] = {"phantom_reversed": {"kind": "phantom_external", "enabled": False}}
    off = snakemake(tmp_path, config, "-n")
    assert off.returncode == 0, off.stderr[-3000:]
    assert not any(rule.startswith("external") for rule in planned(off))
    # a name that is not configured is not a target
    wrong = snakemake(tmp_path, config, "-n", "results/tables/external_nowhere_covidnet_cxr3a.csv")
    assert wrong.returncode != 0


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_an_external_phantom_set_end_to_end(tmp_path):
    config = copy.deepcopy(TINY)
    table = "results/tables/external_phantom_reversed_covidnet_cxr3a.csv"
    result = snakemake(tmp_path, config, GENERALISATION, table)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = tmp_path / "results"
    ext = results / "external" / "phantom_reversed"

    data = ImageStore(ext / "data" / "pixels.npy", ext / "data" / "images.csv")
    assert len(data) == 12 and (data.index["partition"] == "test").all()  # 4 per class, all test images
    assert pd.read_csv(ext / "data" / "overlap.csv").empty  # new patients, new images
    masks = pd.read_csv(ext / "segmentation" / "masks" / "images.csv")
    assert list(masks["image_id"]) == list(data.index["image_id"])
    for rep in REPS:
        assert (ext / "representations" / rep / "pixels.npy").is_file()
    predictions = pd.read_csv(ext / "predictions" / "covidnet_cxr3a.csv")
    assert len(predictions) == len(REPS) * 12 and (predictions["train_rep"] == predictions["test_rep"]).all()

    generalisation = pd.read_csv(tmp_path / GENERALISATION)
    assert list(generalisation.columns) == GAP_COLUMNS
    assert list(zip(generalisation["external_set"], generalisation["arch"], generalisation["representation"])) == [
        ("phantom_reversed", "covidnet_cxr3a", rep) for rep in REPS]
    assert (generalisation["internal_n_test"] == 12).all() and (generalisation["external_n_test"] == 12).all()
    assert ((generalisation["gap_ci_low"] <= generalisation["gap"]) & (generalisation["gap"] <= generalisation["gap_ci_high"])).all()
    assert "unpaired" in (tmp_path / GENERALISATION.replace(".csv", ".md")).read_text()
    per_arch = pd.read_csv(tmp_path / table)
    assert list(per_arch["representation"]) == REPS and {"accuracy", "auroc_covid_19", "sens_normal"} <= set(per_arch)
    merged = per_arch.set_index("representation")["accuracy"]
    assert merged.to_dict() == pytest.approx(generalisation.set_index("representation")["external_accuracy"].to_dict())
