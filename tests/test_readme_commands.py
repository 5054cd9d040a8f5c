"""Every Snakemake command in README's code blocks runs, as written, as a dry run (targets
before --configfile, which takes every value after it)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_REAL
from test_paper_config import fake_tree

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def readme_commands() -> list[str]:
    """The snakemake command lines of README's ```bash blocks (continuations joined, comments cut)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if re.match(r"(\.venv/bin/)?snakemake\s", line):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_readme_shows_its_snakemake_commands():
    assert len(COMMANDS) >= 5, COMMANDS


def configfile_values(args: list[str]) -> list[str]:
    """What --configfile takes: every argument after it up to the next option."""
    if "--configfile" not in args:
        return []
    rest = args[args.index("--configfile") + 1:]
    return rest[:next((i for i, a in enumerate(rest) if a.startswith("-")), len(rest))]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_a_dry_run(command, tmp_path, tiny_covidx):
    args = shlex.split(command)
    for value in configfile_values(args):
        assert value.endswith((".yaml", ".yml")), f"{value!r} follows --configfile: put targets first"
    if "real_seg.yaml" in command and not (SHARED_REAL / "seg").is_dir():
        pytest.skip(f"real lung masks not found at {SHARED_REAL}")
    # The user's own files that the README asks for: a COVIDx-format config and the paper's config
    # with its /path/to/... replaced (an empty tree with the real file names).
    mine = tmp_path / "my_config.yaml"
    mine.write_text(yaml.safe_dump({"classification_data": {
        "kind": "covidx", **{key: str(value) for key, value in tiny_covidx.items()}}}))
    paper = fake_tree(tmp_path / "paper")["config"]
    own = {"my_config.yaml": str(mine), "my_paper.yaml": str(paper)}
    args = [SNAKEMAKE, *(own.get(a, a) for a in args[1:])]
    if "--unlock" in args:  # unlock a scratch folder, never this checkout (a run may hold its lock)
        args += ["--directory", str(tmp_path / "workdir")]
    elif "-n" not in args:
        args.insert(1, "-n")
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
