"""scripts/run_times.py sums the benchmark files per rule and architecture and spans the run."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(folder, relative, seconds, cpu, end):
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    os.utime(path, (end, end))


def test_run_times_per_rule_per_architecture_and_wall(tmp_path):
    folder = tmp_path / "benchmarks"
    bench(folder, "ingest.tsv", 10, 9, 1_000_010)                          # 1,000,000 .. 1,000,010
    bench(folder, "train_classifier/resnet50/data/seed0.tsv", 100, 90, 1_000_110)
    bench(folder, "train_classifier/vgg11/data/seed0.tsv", 60, 50, 1_000_090)
    bench(folder, "evaluate_classifier/resnet50.tsv", 5, 4, 1_000_120)
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "run_times.py"), "--benchmarks", str(folder)],
                         capture_output=True, text=True, check=True).stdout
    assert "4 jobs, 175 job-seconds" in out and "120 s (2.0 min)" in out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| rule") and not line.startswith("| arch")}
    assert rows["train_classifier"] == ["2", "160", "140"] and rows["ingest"] == ["1", "10", "9"]
    assert rows["resnet50"] == ["2", "105", "94"] and rows["vgg11"] == ["1", "60", "50"]
