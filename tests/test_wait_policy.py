"""Torch jobs wait passively (OpenMP threads sleep instead of spinning), so a job sharing its
cores with another process does not collapse; a policy the user set in the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

PROBE = ("import os, sys; sys.path.insert(0, %r); import hideseek; print(os.environ.get('OMP_WAIT_POLICY'))"
         % str(REPO / "src"))


def policy_after_import(env_policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_hideseek_sets_passive_waiting_unless_the_user_chose():
    assert policy_after_import(None) == "PASSIVE"
    assert policy_after_import("ACTIVE") == "ACTIVE"


def test_every_rule_script_imports_hideseek_before_torch():
    late = []
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        lines = script.read_text().splitlines()
        first_torch = next((n for n, line in enumerate(lines) if line.strip().startswith(("import torch", "from torch"))),
                           None)
        first_hideseek = next((n for n, line in enumerate(lines) if "hideseek" in line and "import" in line), None)
        if first_torch is not None and (first_hideseek is None or first_torch < first_hideseek):
            late.append(script.name)
    assert late == [], "import hideseek (which sets OMP_WAIT_POLICY) before torch"
