"""Catalog-ready: the Snakemake workflow catalog's standardized layout, a version a release tag
carries, snakefmt, the committed Dockerfile, and a snakedeploy deployment of a tagged release
(from a local git repository: nothing is fetched) that dry-runs and runs a phantom target."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

import hideseek
from conftest import REPO

BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
TAG = f"v{VERSION}"
TINY = {"phantom": {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72],
                    "seg": {"n_train_tags": 2, "images_per_tag": 2, "n_nih": 2, "n_cohen": 2}},
        "store": {"long_side": 48},
        "classification": {"architectures": ["covidnet_cxr3a"], "models": {"covidnet_cxr3a": {"input_size": 32}}}}


def test_the_catalogs_standardized_layout():
    # workflow/Snakefile is the catalog's (and snakedeploy's) entry point: the top-level Snakefile
    assert "include: \"../Snakefile\"" in (REPO / "workflow" / "Snakefile").read_text()
    settings = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    assert set(usage["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    assert usage["report"] is True and usage["software-stack-deployment"]["conda"] is True
    # config/README.md documents every top-level config key of the schema
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    missing = [key for key in schema["properties"] if not re.search(rf"^## `{key}`", readme, re.M)]
    assert not missing, f"config/README.md has no section for {missing}"


def test_version_changelog_and_min_version_agree():
    assert hideseek.__version__ == VERSION
    changelog = (REPO / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog, re.M)
    assert releases and releases[0] == VERSION, f"CHANGELOG.md's top release {releases[:1]} is not {VERSION}"
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(re.search(r">=\s*([\d.]+)", d).group(1) for d in dependencies if re.match(r"snakemake\s*>=", d))
    min_version = re.search(r'^min_version\("([\d.]+)"\)', (REPO / "Snakefile").read_text(), re.M).group(1)
    as_tuple = lambda v: tuple(int(p) for p in v.split(".")) + (0,) * (3 - len(v.split(".")))  # noqa: E731
    assert as_tuple(min_version) == as_tuple(floor), (min_version, floor)


def test_snakefmt_clean():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_what_snakemake_containerize_writes():
    result = subprocess.run(["bash", str(REPO / ".ci" / "containerize.sh"), "--check"], capture_output=True,
                            text=True, timeout=300, cwd=REPO, env={"SNAKEMAKE": SNAKEMAKE, "PATH": _path()})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    dockerfile = (REPO / "Dockerfile").read_text()
    for env in sorted((REPO / "envs").glob("*.yaml")):
        assert f"COPY envs/{env.name} " in dockerfile


def _path() -> str:
    return f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def _release_repository(path: Path) -> Path:
    """A git repository holding what `git add -A` would commit here (tracked + untracked, not
    ignored), committed and tagged like a release. Git commands run in `path` only."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True, cwd=REPO).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():  # a deleted but still tracked file is skipped
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"release {TAG}"], ["tag", TAG]):
        subprocess.run([*git, *args], check=True, cwd=path, capture_output=True)
    return path


@pytest.mark.slow
def test_snakedeploy_deploys_a_tagged_release_that_runs(tmp_path):
    source = _release_repository(tmp_path / "cxr-hideseek")
    deployed = tmp_path / "my-audit"
    done = subprocess.run([str(BIN / "snakedeploy"), "deploy-workflow", str(source), str(deployed), "--tag", TAG],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # what snakedeploy copies: the config (with its README) and the profiles, beside a module
    for name in ("config/config.yaml", "config/README.md", "profiles/slurm/config.yaml"):
        assert (deployed / name).is_file(), name
    snakefile = (deployed / "workflow" / "Snakefile").read_text()
    assert "use rule * from cxr_hideseek" in snakefile and 'configfile: "config/config.yaml"' in snakefile
    # From GitHub, snakedeploy writes `github("<owner>/cxr-hideseek", path="workflow/Snakefile",
    # tag=...)`; from a local folder it ignores the tag and writes the path relative to the new
    # Snakefile, which does not resolve. The local stand-in for the tagged GitHub source: a clone
    # of the tag (git clone of a local repository fetches nothing) and its absolute path.
    checkout = tmp_path / f"cxr-hideseek-{TAG}"
    subprocess.run(["git", "clone", "-q", "--branch", TAG, str(source), str(checkout)], check=True,
                   capture_output=True, timeout=120)
    declaration = re.search(r"snakefile:\s*\n\s*(.+)\n", snakefile).group(1)
    assert "workflow/Snakefile" in declaration, declaration
    (deployed / "workflow" / "Snakefile").write_text(
        snakefile.replace(declaration, f'"{checkout / "workflow" / "Snakefile"}"'))

    dry = subprocess.run([SNAKEMAKE, "-n", "--cores", "2"], capture_output=True, text=True, timeout=300,
                         cwd=deployed)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "rule verdict:" in dry.stdout and "train_classifier" in dry.stdout

    (deployed / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = subprocess.run([SNAKEMAKE, "results/tables/table1_data.csv", "--cores", "2",
                          "--configfile", "config/config.yaml", "config/tiny.yaml"],
                         capture_output=True, text=True, timeout=600, cwd=deployed)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = pd.read_csv(deployed / "results" / "tables" / "table1_data.csv")
    assert table.loc[(table["partition"] == "test") & (table["source"] == "all"), "total"].item() == 12
    assert (deployed / "results" / "logs" / "table1.log").is_file()
