"""config/paper.yaml plans the paper's grid on a COVIDx-like tree; tables rerun only their ancestry."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def fake_tree(root: Path) -> dict:
    """Empty files with the real names: COVIDx split files, Tang / NIH / Cohen folders."""
    (root / "covidx" / "images").mkdir(parents=True)
    (root / "covidx" / "train_COVIDx5.txt").write_text("p1 a.png normal cohen\n")
    (root / "covidx" / "test_COVIDx5.txt").write_text(
        "p2 0a1b2c3d-1111-2222-3333-444455556666.png pneumonia\n")
    for name in ("xlsor/augmentation", "nih", "cohen"):
        for sub in ("images", "masks"):
            (root / name / sub).mkdir(parents=True)
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    text = yaml.safe_dump(paper).replace("/path/to", str(root))
    path = root / "paper_local.yaml"
    path.write_text(text)
    return dict(config=path, seeds=len(paper["classification"]["seeds"]))


def dry_run(workdir: Path, config: Path, *targets):
    result = subprocess.run(
        [SNAKEMAKE, *targets, "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M)}


def test_paper_config_plans_25_training_jobs_per_seed(tmp_path):
    tree = fake_tree(tmp_path)
    jobs = dry_run(tmp_path, tree["config"])
    assert jobs["train_classifier"] == 25 * tree["seeds"]
    assert jobs["evaluate_classifier"] == 5  # one per architecture, all its models
    assert "phantom" not in jobs  # real data only


def test_one_table_plans_only_its_ancestry(tmp_path):
    jobs = dry_run(tmp_path, REPO / "config" / "config.yaml", "results/tables/table7_resnet50.md")
    assert jobs["train_classifier"] == 5  # resnet50 on each representation, one seed
    assert jobs["classifier_table"] == 1
    assert not {"gradcam", "verdict", "source_probe", "audit_tables"} & set(jobs)
