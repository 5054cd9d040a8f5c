"""The workflow's own rules run as jobs of a real single-node Slurm cluster through profiles/slurm.

A tiny phantom target of this workflow (phantom -> ingest -> Table 1, a one-epoch U-Net, one
one-epoch classifier training with `resources.gpu: 1` computing on the CPU) is submitted with
`--profile profiles/slurm`; the test checks the outputs and, in slurmctld's own job records,
that each stage ran as a Slurm job and that the GPU rules were given the node's (fake) GPU.

Skipped unless root and CI=true (or HIDESEEK_SLURM_TESTS=1); install Slurm with
.ci/install_slurm.sh. The cluster helper lives in tests/slurm/cluster.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, load_module


# loaded by path: tests/ is not a package, and "slurm"/"cluster" are too generic for sys.path
cluster_mod = load_module("hideseek_test_slurm_cluster", REPO / "tests" / "slurm" / "cluster.py")

pytestmark = pytest.mark.slow

# The report test's tiny phantom (scripts/screenshot_report.py: 32 px, one epoch, one
# architecture), here with a one-epoch U-Net on 32 px and only the `data` representation:
# ~1 min of compute on 2 cores.
TINY = copy.deepcopy(load_module("hideseek_screenshot_report", REPO / "scripts" / "screenshot_report.py").TINY)
TINY.pop("audit")
TINY["resources"] = {"gpu": 1}  # what a GPU cluster's config says; the jobs find no CUDA and use the CPU
TINY["segmentation"] = {"image_size": 32, "network": {"channels": [4, 8, 16, 32, 64]},
                        "train": {"epochs": 1, "batch_size": 4}}
TINY["classification"]["representations"] = ["data"]
RUN = "results/classifiers/covidnet_cxr3a/data/seed0"
TARGETS = ["results/tables/table1_data.csv", "results/segmentation/unet.pt", f"{RUN}/model.pt"]
SLURM_RULES = {"phantom", "ingest", "train_unet", "representation", "train_classifier"}
LOCAL_RULES = {"table1", "index_seg_sets"}  # `localrules` in the Snakefile
GPU_RULES = {"train_unet", "train_classifier"}


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running single-node Slurm cluster; torn down after the module."""
    reason = cluster_mod.skip_reason()
    if reason:
        pytest.skip(reason)
    # slurmctld forgets finished jobs after MinJobAge: keep them for the whole run
    with cluster_mod.SlurmCluster(min_job_age=900) as cluster:
        yield cluster


def _fail_msg(proc, cluster, workdir) -> str:
    return (
        f"snakemake rc={proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-12000:]}\n"
        f"{cluster.job_logs(workdir)}\n{cluster.logs()}"
    )


def _rule_of(job: dict[str, str]) -> str:
    """The executor plugin labels each job `--comment rule_<name>[_wildcards_...]`."""
    match = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job.get("Comment", ""))
    return match.group(1) if match else ""


def test_the_workflows_own_rules_run_as_slurm_jobs(slurm_cluster, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    # --verbose: the plugin then logs each sbatch call and which command polled the job states
    proc = slurm_cluster.run_snakemake(
        tmp_path, snakefile=REPO / "Snakefile", targets=TARGETS, configfiles=[config],
        extra_args=["--verbose", "--slurm-keep-successful-logs"], timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, _fail_msg(proc, slurm_cluster, tmp_path)

    # the outputs: Table 1 of the phantom, a one-epoch U-Net, a one-epoch classifier on the CPU
    table1 = pd.read_csv(tmp_path / "results/tables/table1_data.csv")
    test_all = table1[(table1["partition"] == "test") & (table1["source"] == "all")]
    assert test_all["total"].item() == 3 * 4, table1
    history = pd.read_csv(tmp_path / "results/segmentation/unet_history.csv")
    assert len(history) == 1, history
    assert (tmp_path / "results/segmentation/unet.pt").stat().st_size > 1000
    info = json.loads((tmp_path / RUN / "train_info.json").read_text())
    assert info["epochs"] == 1 and info["device"] == "cpu", info
    assert (tmp_path / RUN / "model.pt").stat().st_size > 1000

    # slurmctld's records (no accounting here, so scontrol rather than sacct)
    jobs = {}
    for job in slurm_cluster.jobs():
        jobs.setdefault(_rule_of(job), []).append(job)
    assert SLURM_RULES <= set(jobs), {rule: len(j) for rule, j in jobs.items()}
    assert not LOCAL_RULES & set(jobs), "local rules must run in the Snakemake process"
    for rule in SLURM_RULES:
        assert len(jobs[rule]) == 1, (rule, [j["_text"] for j in jobs[rule]])  # no retries
        job = jobs[rule][0]
        assert job["JobState"] == "COMPLETED", job["_text"]
        text = job["_text"]
        if rule in GPU_RULES:
            # asked for (--gpus=1 -> TresPerJob) and allocated (JOB_GRES)
            assert "TresPerJob=gres:gpu:1" in text or "TresPerJob=gres/gpu:1" in text, text
            assert re.search(r"JOB_GRES=gpu:1\b", text), text
            # the profile's set-resources: --cpus-per-gpu=2 instead of --cpus-per-task
            assert "CpusPerTres=gres:gpu:2" in text or "CpusPerTres=gres/gpu:2" in text, text
        else:
            assert "JOB_GRES=(null)" in text and "gres/gpu" not in text, text
        # inside the job: the task prolog logged the device Slurm bound (gres.conf File=/dev/null)
        job_log = Path(job["StdOut"]).read_text(errors="replace")
        binding = re.search(r"hideseek-task-prolog: job=(\d+) cuda=(\S+) gpus=(\S+)", job_log)
        assert binding and binding.group(1) == job["JobId"], job_log[-3000:]
        expected = ("0", "0") if rule in GPU_RULES else ("unset", "unset")
        assert binding.group(2, 3) == expected, (rule, binding.group(0))

    # the submit lines the plugin logged: --gpus=1 for the GPU rules only
    sbatch = [line for line in log.splitlines() if "sbatch" in line and "--comment" in line]
    for rule in SLURM_RULES:
        lines = [line for line in sbatch if re.search(rf"rule_{rule}(_wildcards_|['\"\s]|$)", line)]
        assert lines, (rule, sbatch)
        assert all(("--gpus=1" in line) == (rule in GPU_RULES) for line in lines), lines

    # squeue did the polling (no slurmdbd here, so sacct would hang the run)
    assert "command=squeue" in log, log[-8000:]
    assert "command=sacct" not in log, log[-8000:]
    assert "Falling back to 'sacct'" not in log, log[-8000:]
    assert "MinJobAge" not in log, log[-8000:]  # the plugin warns when squeue is unsafe
