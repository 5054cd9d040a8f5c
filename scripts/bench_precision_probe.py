#!/usr/bin/env python
"""What the precision probe measures and chooses, per architecture of a config, on this machine.

    .venv/bin/python scripts/bench_precision_probe.py                      # the embedded default
    .venv/bin/python scripts/bench_precision_probe.py --config config/real_small.yaml --threads 2

For each architecture: seconds per training step (forward, backward, Adam; the recipe's input
size and batch) in fp32 and bf16, with channels_last off and on — the candidates the training job
times before it trains (hideseek.classification.performance) — and the choice. Forced recipe
values (e.g. ``precision: fp32``) are shown beside the choice the probe would make. Prints the
CPU model and flags it ran on. Nothing is cached (the jobs' cache is left alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    import torch
    import yaml
    from snakemake.utils import validate

    from hideseek.classification.models import build_model
    from hideseek.classification.performance import (choose_candidate, cpu_has_fast_bf16, cpu_model,
                                                      measure_step_seconds)
    from hideseek.classification.recipes import resolve_recipe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[],
                        help="config file(s) layered on config/config.yaml, in order")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the default run's jobs use 1)")
    parser.add_argument("--arch", action="append", help="only these architectures")
    args = parser.parse_args()

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for path in args.config:
        from snakemake.utils import update_config

        update_config(config, yaml.safe_load(Path(path).read_text()))
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    torch.set_num_threads(args.threads)
    flags = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
             if f in Path("/proc/cpuinfo").read_text().split()] if Path("/proc/cpuinfo").exists() else []
    print(f"CPU: {cpu_model()} (flags: {' '.join(flags) or 'none of avx512f/avx512_bf16/amx'}; "
          f"fast bf16 by flag: {cpu_has_fast_bf16()}), torch {torch.__version__}, {args.threads} thread(s)")
    candidates = [(p, c) for p in ("fp32", "bf16") for c in (False, True)]
    cls = config["classification"]
    print(f"{'arch':16} {'size':>4} {'batch':>5}  {'fp32':>8} {'fp32+cl':>8} {'bf16':>8} {'bf16+cl':>8}  choice")
    for arch in args.arch or cls["architectures"]:
        recipe = resolve_recipe(cls, arch)
        model = build_model(arch, num_classes=3, width=recipe["width"])
        seconds = measure_step_seconds(model, recipe, 3, torch.device("cpu"), candidates)
        precision, channels_last = choose_candidate(seconds, candidates)
        forced = [f"{key}: {recipe[key]}" for key in ("precision", "channels_last") if recipe[key] != "auto"]
        choice = precision + ("+cl" if channels_last else "") + (f" (config forces {', '.join(forced)})"
                                                                if forced else "")
        cells = " ".join(f"{seconds[k]:8.3f}" for k in ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last"))
        print(f"{arch:16} {recipe['input_size']:>4} {recipe['batch_size']:>5}  {cells}  {choice}", flush=True)
    print("seconds per training step (best of the probe's timed steps); cl = channels_last")


if __name__ == "__main__":
    main()
