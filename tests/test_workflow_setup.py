"""The workflow runs from anywhere: from another working directory, and as a Snakemake module of
another project; the rule files import only standard-library modules of the library."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = {"phantom": {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72],
                    "seg": {"n_train_tags": 2, "images_per_tag": 2, "n_nih": 2, "n_cohen": 2}},
        "store": {"long_side": 48},
        # the store is smaller than the default inputs need (a parse-time error): one small input
        "classification": {"architectures": ["covidnet_cxr3a"], "models": {"covidnet_cxr3a": {"input_size": 32}}}}
TARGET = "results/tables/table1_data.csv"


def rule_file_imports() -> set[str]:
    """Modules of the library that the Snakefile and the rule files import."""
    modules = set()
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for line in path.read_text().splitlines():
            if not line.startswith(("from hideseek", "import hideseek")):
                continue
            node = ast.parse(line).body[0]
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
                continue
            modules.add(node.module)
            for alias in node.names:  # `from hideseek import plan` imports a module
                if (REPO / "src" / Path(*node.module.split(".")) / f"{alias.name}.py").is_file():
                    modules.add(f"{node.module}.{alias.name}")
    return modules


def test_rule_files_import_only_standard_library_modules():
    modules = rule_file_imports()
    assert {"hideseek.plan", "hideseek.vocabulary"} <= modules
    code = ("import json, sys, importlib\n"
            f"for m in {sorted(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in ('numpy', 'pandas', 'torch', 'cv2', 'scipy') if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], f"the scheduler would import {result.stdout.strip()}"


def test_a_target_runs_from_another_directory_and_as_a_module(tmp_path):
    # 1. The repository's Snakefile with --directory elsewhere: it finds its own default config,
    #    schema, scripts and library (no --configfile for the default).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    direct = subprocess.run([SNAKEMAKE, TARGET, "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory",
                             str(elsewhere), "--configfile", str(elsewhere / "tiny.yaml")],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert direct.returncode == 0, direct.stdout[-3000:] + direct.stderr[-3000:]

    # 2. Another project's Snakefile that imports this workflow as a module, with its own config.
    project = tmp_path / "project"
    project.mkdir()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, value in TINY.items():
        config[key].update(value)
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    (project / "Snakefile").write_text(
        'configfile: "config.yaml"\n\n\n'
        "module hideseek:\n"
        f'    snakefile: "{REPO / "Snakefile"}"\n'
        "    config: config\n\n\n"
        "use rule * from hideseek\n")
    module = subprocess.run([SNAKEMAKE, TARGET, "--cores", "2"], capture_output=True, text=True, timeout=600,
                            cwd=project)
    assert module.returncode == 0, module.stdout[-3000:] + module.stderr[-3000:]

    # The same config gives the same table both ways.
    a, b = pd.read_csv(elsewhere / TARGET), pd.read_csv(project / TARGET)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[(a["partition"] == "test") & (a["source"] == "all"), "total"].item() == 12
    for workdir in (elsewhere, project):
        assert (workdir / "results" / "logs" / "table1.log").is_file()
