"""A phantom smoke run of the classifier grid through Snakemake: one architecture × two representations."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REPS = ["data", "lungs_removed"]
TINY = {
    "phantom": {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72]},
    "store": {"long_side": 48},
    # the phantom's true lung masks: no U-Net training in this test
    "segmentation": {"masks": "ground_truth", "threads": 1},
    "classification": {
        "architectures": ["covidnet_cxr3a"],
        "representations": REPS,
        "seeds": [0],
        "train_images_per_class": 6,
        "resources": {"threads": 1, "mem_mb": 2000},
        "models": {"covidnet_cxr3a": {"input_size": 32, "width": 0.125, "epochs": 2,
                                      "bn_recalibration_images": 8}},
    },
}
TABLE = "results/tables/table3_covidnet_cxr3a"


def snakemake(workdir: Path, *args, config=None, timeout=600):
    """Targets and flags first: --configfile takes every argument after it."""
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config or TINY))
    return subprocess.run(
        [SNAKEMAKE, *args, "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(REPO / "config" / "config.yaml"), str(path)],
        capture_output=True, text=True, timeout=timeout)


def test_a_table_target_runs_only_its_ancestry(tmp_path):
    result = snakemake(tmp_path, f"{TABLE}.md", "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    stats = (result.stdout + result.stderr).split("Job stats:")[1].split("\n\n")[0]
    jobs = {line.split()[0] for line in stats.splitlines()[3:] if line.strip()}
    for rule in ("train_classifier", "evaluate_classifier", "classifier_table", "representation"):
        assert rule in jobs
    for rule in ("train_unet", "evaluate_unet", "figure1", "table1"):
        assert rule not in jobs
    wrong = snakemake(tmp_path, "-n", "results/tables/table7_covidnet_cxr3a.md")
    assert wrong.returncode != 0 and "is Table 3" in wrong.stdout + wrong.stderr


@pytest.mark.slow
def test_one_architecture_two_representations_through_snakemake(tmp_path):
    curves = "results/figures/learning_curves_covidnet_cxr3a.png"
    result = snakemake(tmp_path, f"{TABLE}.csv", f"{TABLE}.md", curves)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = tmp_path / "results"

    assert (tmp_path / curves).stat().st_size > 5_000
    table = pd.read_csv(f"{tmp_path / TABLE}.csv")
    assert list(table["representation"]) == REPS
    assert (table["n_test"] == 12).all()
    assert {"accuracy", "sens_covid_19", "ppv_normal", "accuracy_ci_low", "mcnemar_p_vs_data"} <= set(table)
    md = Path(f"{tmp_path / TABLE}.md").read_text()
    assert md.startswith("# Table 3") and "PEPX re-implementation" in md and "selected on the test set" in md

    for rep in REPS:
        run = results / "classifiers" / "covidnet_cxr3a" / rep / "seed0"
        history = pd.read_csv(run / "history.csv")
        assert list(history["epoch"]) == [1, 2] and history["selected"].sum() == 1
        assert history["train_accuracy"].between(0, 1).all()
        info = json.loads((run / "train_info.json").read_text())
        assert info["n_train"] == 18 and info["device"] == "cpu" and info["threads"] == 1
        assert {"precision", "channels_last", "fused_adam"} <= set(info)
        predictions = pd.read_csv(results / "predictions" / "covidnet_cxr3a" / rep / "seed0.csv")
        # the data model on every representation (test-time hiding), the others on their own
        assert sorted(predictions["test_rep"].unique()) == (sorted(REPS) if rep == "data" else [rep])
        assert len(predictions) == (len(REPS) if rep == "data" else 1) * 12
        assert not (results / "checkpoints" / "classifiers" / "covidnet_cxr3a" / rep / "seed0").exists()
        assert (results / "benchmarks" / "train_classifier" / "covidnet_cxr3a" / rep / "seed0.tsv").is_file()


def test_pretrained_weights_come_from_a_local_file_or_the_fetch_rule(tmp_path):
    weights = tmp_path / "my_resnet50.pth"
    weights.write_bytes(b"placeholder")  # a dry run only checks the wiring
    config = copy.deepcopy(TINY)
    config["classification"].update(architectures=["resnet50", "covidnet_cxr3a"], pretrained=True,
                                    pretrained_files={"resnet50": str(weights)})
    config["classification"]["models"]["resnet50"] = {"input_size": 32}  # what the small store can serve
    local = snakemake(tmp_path, "results/tables/table7_resnet50.md", "-n", config=config)
    assert local.returncode == 0, local.stderr[-3000:]
    assert str(weights) in local.stdout and "fetch_pretrained_weights" not in local.stdout
    config["classification"]["pretrained_files"] = {}
    fetch = snakemake(tmp_path, "results/tables/table7_resnet50.md", "results/tables/table3_covidnet_cxr3a.md", "-n",
                      config=config)
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    assert "rule fetch_pretrained_weights" in fetch.stdout
    assert "resources/pretrained/resnet50_imagenet1k_v1.pth" in fetch.stdout
    assert "covidnet_cxr3a_imagenet1k_v1" not in fetch.stdout  # COVID-Net: never pretrained


def planned_jobs(result) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run plans."""
    jobs, rule = [], None
    for line in result.stdout.splitlines():
        if line.startswith("rule "):
            rule = line[5:].rstrip(":")
            jobs.append((rule, {}))
        elif line.strip().startswith("wildcards:") and rule:
            jobs[-1] = (rule, dict(pair.split("=", 1) for pair in line.split(":", 1)[1].strip().split(", ")))
    return jobs


def finished_tree(tmp_path, config):
    """Record provenance for a finished grid without running it: placeholder outputs from
    `--summary`, then `--touch --forceall`, which stores every job's params and code."""
    summary = snakemake(tmp_path, "--summary", config=config)
    assert summary.returncode == 0, summary.stderr[-3000:]
    for line in summary.stdout.splitlines()[1:]:
        path = tmp_path / line.split("\t")[0]
        if path.suffix:  # the phantom's directory outputs have none
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    touched = snakemake(tmp_path, "--touch", "--forceall", config=config)
    assert touched.returncode == 0, touched.stdout[-3000:] + touched.stderr[-3000:]
    assert "Nothing to be done" in snakemake(tmp_path, "-n", config=config).stdout


def test_operational_settings_rerun_nothing(tmp_path):
    """Device, threads, checkpointing and the checkpoint folder are read at run time."""
    config = copy.deepcopy(TINY)
    config["segmentation"]["masks"] = "predicted"  # the U-Net rules too
    finished_tree(tmp_path, config)
    config["classification"].update(device="cpu", checkpoint_every=2, keep_checkpoints=True)
    config["classification"]["resources"]["threads"] = 2
    config["segmentation"].update(device="cpu", threads=2)
    config["audit"] = {"gradcam": {"threads": 2}}
    config["checkpoint_root"] = str(tmp_path / "scratch" / "checkpoints")
    planned = snakemake(tmp_path, "-n", config=config)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "Nothing to be done" in planned.stdout, planned.stdout[-3000:]


def test_changing_one_architectures_recipe_reruns_only_its_jobs(tmp_path):
    config = copy.deepcopy(TINY)
    config["classification"]["architectures"] = ["covidnet_cxr3a", "resnet50"]
    config["classification"]["models"]["resnet50"] = {"input_size": 32}  # what the small store can serve
    finished_tree(tmp_path, config)

    config["classification"]["models"]["resnet50"]["lr"] = 3e-4
    changed = snakemake(tmp_path, "-n", config=config)
    assert changed.returncode == 0, changed.stderr[-3000:]
    jobs = planned_jobs(changed)
    trained = [w for rule, w in jobs if rule == "train_classifier"]
    assert sorted(w["rep"] for w in trained) == sorted(REPS) and {w["arch"] for w in trained} == {"resnet50"}
    per_arch = [w["arch"] for rule, w in jobs if "arch" in w]
    assert set(per_arch) == {"resnet50"}, jobs
    rules = {rule for rule, _ in jobs}
    assert {"evaluate_classifier", "classifier_table", "gradcam", "audit_tables", "verdict"} <= rules
    for upstream in ("phantom", "ingest", "representation", "segment_images", "train_unet", "source_probe"):
        assert upstream not in rules
