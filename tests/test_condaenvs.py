"""envs/*.yaml must match requirements.lock, and every rule must name one of them."""

import re

from hideseek.condaenvs import FAMILIES, main, read_lock, render_env

from conftest import REPO


def test_env_files_match_the_lock():
    assert main(["--repo", str(REPO), "--check"]) == 0


def test_every_pin_comes_from_the_lock():
    pins = read_lock(REPO / "requirements.lock")
    for family in FAMILIES:
        for name, version in re.findall(r"- ([\w.-]+)==(\S+)", render_env(family, pins)):
            assert pins[re.sub(r"[-_.]+", "-", name).lower()] == version


def test_every_rule_has_log_benchmark_and_a_known_conda_env():
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        text = rules.read_text()
        for block in re.split(r"\n(?=rule \w+:)", text)[1:]:
            name = re.match(r"rule (\w+):", block).group(1)
            envs = re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', block)
            assert envs and envs[0] in FAMILIES, f"{rules.name}: rule {name} has no known conda env"
            assert "\n    log:" in block, f"{rules.name}: rule {name} has no log"
            assert "\n    benchmark:" in block, f"{rules.name}: rule {name} has no benchmark"
