#!/usr/bin/env python
"""Where a run's time went, from Snakemake's per-job benchmark files (results/benchmarks/).

    .venv/bin/python scripts/run_times.py                      # results/benchmarks of this checkout
    .venv/bin/python scripts/run_times.py --benchmarks /path/to/results/benchmarks

Prints job-seconds (wall time of each job, summed) and CPU seconds per rule and per
architecture, the number of jobs, and the wall time from the first job's start to the last
job's end (each benchmark file is written when its job ends; start = end - its seconds). With
two jobs sharing two cores the job-seconds add up to about twice the wall time. The CPU model is
printed with the table: figures from different machines are not comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hideseek.vocabulary import ARCHITECTURES  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"unknown CPU, {os.cpu_count()} cores"


def read_benchmarks(folder: Path) -> pd.DataFrame:
    """One row per job: rule, architecture ('' if none), seconds, CPU seconds, end time."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        parts = path.relative_to(folder).with_suffix("").parts
        values = pd.read_csv(path, sep="\t").iloc[-1]  # the last repeat if --benchmark-repeats
        arch = next((p for p in parts[1:] if p in ARCHITECTURES), "")
        rows.append(dict(rule=parts[0], arch=arch, seconds=float(values["s"]),
                         cpu_seconds=float(values.get("cpu_time", float("nan"))), end=path.stat().st_mtime))
    if not rows:
        raise SystemExit(f"no benchmark files under {folder}: run the workflow first")
    return pd.DataFrame(rows)


def summary(jobs: pd.DataFrame, by: str) -> pd.DataFrame:
    table = jobs.groupby(by).agg(jobs=("seconds", "size"), job_seconds=("seconds", "sum"),
                                 cpu_seconds=("cpu_seconds", "sum"))
    return table.sort_values("job_seconds", ascending=False).round(0).astype({"jobs": int})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", type=Path, default=REPO / "results" / "benchmarks")
    args = parser.parse_args()
    jobs = read_benchmarks(args.benchmarks)
    wall = jobs["end"].max() - (jobs["end"] - jobs["seconds"]).min()
    print(f"CPU: {cpu_model()}")
    print(f"{len(jobs)} jobs, {jobs['seconds'].sum():.0f} job-seconds, wall time first job start to last job end: "
          f"{wall:.0f} s ({wall / 60:.1f} min)\n")
    print("Per rule:")
    print(summary(jobs, "rule").to_markdown())
    with_arch = jobs[jobs["arch"] != ""]
    if len(with_arch):
        print("\nPer architecture (training, evaluation, Grad-CAM, tables):")
        print(summary(with_arch, "arch").to_markdown())


if __name__ == "__main__":
    main()
