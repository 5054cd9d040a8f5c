"""Runs Snakemake through profiles/slurm on a real single-node Slurm cluster.

Skipped unless root and CI=true (or HIDESEEK_SLURM_TESTS=1); install Slurm with
.ci/install_slurm.sh. The cluster helper lives in tests/slurm/cluster.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_cluster_module():
    # loaded by path: tests/ is not a package, and "slurm"/"cluster" are too generic
    # to put on sys.path
    name = "hideseek_test_slurm_cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "slurm" / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cluster_mod = _load_cluster_module()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node Slurm cluster; torn down after the module."""
    reason = cluster_mod.skip_reason()
    if reason:
        pytest.skip(reason)
    with cluster_mod.SlurmCluster() as cluster:
        yield cluster


TINY_SNAKEFILE = textwrap.dedent(
    r"""
    localrules: all, summarise

    rule all:
        input: "summary.txt"

    # named like a workflow GPU stage, so profiles/slurm's set-resources apply too
    rule train_unet:
        output: "gpu_job.txt"
        threads: 1
        resources: gpu=1, mem_mb=500, runtime=5
        shell:
            "echo host=$(hostname) > {output} && "
            "echo job=${{SLURM_JOB_ID:-}} >> {output} && "
            "echo cuda=${{CUDA_VISIBLE_DEVICES:-unset}} >> {output} && "
            "echo gpus=${{SLURM_JOB_GPUS:-${{SLURM_STEP_GPUS:-unset}}}} >> {output}"

    rule summarise:
        input: "gpu_job.txt"
        output: "summary.txt"
        shell: "cp {input} {output} && echo local_job=${{SLURM_JOB_ID:-none}} >> {output}"
    """
)


def _fail_msg(proc, cluster, workdir) -> str:
    return (
        f"snakemake rc={proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-12000:]}\n"
        f"{cluster.job_logs(workdir)}\n{cluster.logs()}"
    )


def test_tiny_workflow_runs_on_slurm(slurm_cluster, tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TINY_SNAKEFILE)

    # --verbose: the plugin then logs which command polled the job states
    proc = slurm_cluster.run_snakemake(
        tmp_path, snakefile=snakefile, extra_args=["--verbose"], timeout=300
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, _fail_msg(proc, slurm_cluster, tmp_path)

    fields = dict(
        line.split("=", 1)
        for line in (tmp_path / "summary.txt").read_text().splitlines()
    )
    # the GPU rule ran inside a real Slurm job ...
    assert re.fullmatch(r"\d+", fields["job"]), fields
    # ... which Slurm gave the fake GPU (gres.conf File=/dev/null -> index 0)
    assert fields["cuda"] != "unset" or fields["gpus"] != "unset", fields
    # ... while the local rule ran in the Snakemake process itself
    assert fields["local_job"] == "none", fields

    job = slurm_cluster.show_job(fields["job"])
    assert "JobState=COMPLETED" in job, job
    assert "gres/gpu=1" in job or "gpu:1" in job, job
    # set-resources from the profile: --cpus-per-gpu instead of --cpus-per-task
    assert "CpusPerTres=gres:gpu:2" in job, job

    # squeue did the polling (no slurmdbd here, so sacct would hang the run)
    assert "command=squeue" in log, log[-8000:]
    assert "command=sacct" not in log, log[-8000:]
    assert "Falling back to 'sacct'" not in log, log[-8000:]
    assert "MinJobAge" not in log, log[-8000:]  # the plugin warns when squeue is unsafe
