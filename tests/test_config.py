"""The config schema: defaults filled in, unknown keys and wrong types rejected by name."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_validates_and_defaults_are_filled():
    config = {}
    validate(config, SCHEMA)
    assert config["phantom"]["shortcut"] == 0.9
    assert config["phantom"]["seg"]["images_per_tag"] == 6
    assert config["classification_data"]["on_missing"] == "fail"
    assert config["store"]["long_side"] == 140
    shipped = default_config()
    validate(shipped, SCHEMA)
    assert shipped["classification_data"]["kind"] == "phantom"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(phantomm={}), "'phantomm' was unexpected"),
        (lambda c: c["phantom"].update(shortcutt=1), "'shortcutt' was unexpected"),
        (lambda c: c["phantom"].update(shortcut="high"), "'high' is not of type 'number'"),
        (lambda c: c["phantom"].update(shortcut=1.5), "1.5 is greater than the maximum"),
        (lambda c: c["classification_data"].update(on_missing="skip"), "'skip' is not one of"),
        (lambda c: c["classification_data"].update(kind="covidx"), "'image_dir' is a required property"),
        (lambda c: c["segmentation_data"].update(kind="folders"), "'train' is a required property"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(mutate, expected):
    config = copy.deepcopy(default_config())
    mutate(config)
    with pytest.raises(WorkflowError) as error:
        validate(config, SCHEMA)
    assert expected in str(error.value)


def run_snakemake(*args, cwd=REPO):
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_dry_run_builds_the_dag(tmp_path):
    result = run_snakemake("-n", "--cores", "1", "--directory", str(tmp_path), "-s", str(REPO / "Snakefile"),
                           "--configfile", str(REPO / "config" / "config.yaml"))
    assert result.returncode == 0, result.stderr
    for rule in ("phantom", "ingest", "table1", "phantom_sheet"):
        assert rule in result.stdout


def test_snakemake_rejects_unknown_key_with_its_name(tmp_path):
    bad = default_config()
    bad["phantom"]["shortcutt"] = 0.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run_snakemake("-n", "--cores", "1", "--directory", str(tmp_path), "-s", str(REPO / "Snakefile"),
                           "--configfile", str(path))
    assert result.returncode != 0
    assert "shortcutt" in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "config.yaml"))
def test_every_shipped_config_layered_on_the_default_validates_and_resolves(name):
    from snakemake.utils import update_config

    from hideseek.classification.recipes import resolve_recipe

    config = default_config()
    update_config(config, yaml.safe_load((REPO / "config" / name).read_text()) or {})
    validate(config, SCHEMA)
    for arch in config["classification"]["architectures"]:
        recipe = resolve_recipe(config["classification"], arch)
        assert recipe["scheduler"] in ("none", "cosine") and recipe["batch_size"] >= 2
    if name == "real_small.yaml":  # layered on the default, it pins what it was measured with
        covidnet = resolve_recipe(config["classification"], "covidnet_cxr4a")
        assert (covidnet["input_size"], covidnet["batch_size"], covidnet["epochs"]) == (128, 8, 40)
        resnet = resolve_recipe(config["classification"], "resnet50")
        assert (resnet["epochs"], resnet["scheduler"]) == (30, "cosine")
        alexnet, vgg = (resolve_recipe(config["classification"], arch) for arch in ("alexnet", "vgg11"))
        assert (alexnet["epochs"], alexnet["normalize"], vgg["epochs"], vgg["lr"]) == (60, "none", 12, 2e-4)
