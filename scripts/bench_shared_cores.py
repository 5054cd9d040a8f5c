#!/usr/bin/env python
"""How much a torch job slows down when another CPU-bound process shares its cores, by OpenMP
wait policy.

    .venv/bin/python scripts/bench_shared_cores.py --model unet --threads 2
    .venv/bin/python scripts/bench_shared_cores.py --model resnet50 --size 80 --threads 1

For each policy (``PASSIVE``, which ``import hideseek`` sets unless OMP_WAIT_POLICY is already
set, and libgomp's default, which spins before it sleeps) a fresh process times training steps of
the model (forward, backward, Adam) alone, then while one busy-looping Python process runs beside
it. Prints the median step time of each and the slowdown (shared / alone); the target is at most
~2x. The CPU model and flags are printed with the figures: they differ between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEPS_CODE = r"""
import json, sys, time
sys.path.insert(0, {src!r})
args = json.loads({args!r})
if args["hideseek_first"]:
    import hideseek  # sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP, as in every job
import torch  # libgomp reads OMP_WAIT_POLICY once, when torch loads it
torch.manual_seed(0)
torch.set_num_threads(args["threads"])
if args["model"] == "unet":
    from monai.networks.nets import UNet
    model = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    x = torch.randn(args["batch"], 1, args["size"], args["size"])
else:
    from hideseek.classification.models import build_model
    model = build_model(args["model"], num_classes=3)
    x = torch.randn(args["batch"], 3, args["size"], args["size"])
opt = torch.optim.Adam(model.parameters(), 1e-4)
times = []
for step in range(args["warmup"] + args["steps"]):
    start = time.perf_counter()
    opt.zero_grad()
    model(x).float().mean().backward()
    opt.step()
    if step >= args["warmup"]:
        times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

BUSY_CODE = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def cpu_description() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}"


def time_steps(args, hideseek_first: bool) -> list[float]:
    """Step times in a fresh process: torch loaded after ``import hideseek`` (its policy) or
    before it with OMP_WAIT_POLICY unset (libgomp's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = STEPS_CODE.format(src=str(REPO / "src"), args=json.dumps(dict(vars(args), hideseek_first=hideseek_first)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args, hideseek_first: bool) -> tuple[float, float]:
    alone = statistics.median(time_steps(args, hideseek_first))
    busy = subprocess.Popen([sys.executable, "-c", BUSY_CODE])
    try:
        time.sleep(0.5)
        shared = statistics.median(time_steps(args, hideseek_first))
    finally:
        busy.kill()
        busy.wait()
    return alone, shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="unet", help="unet, or a classifier architecture (resnet50, vgg11, ...)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    print(f"CPU: {cpu_description()}")
    print(f"model {args.model} at {args.size} px, batch {args.batch}, {args.threads} torch threads, "
          f"{args.steps} timed steps; competitor: one busy-looping Python process")
    for label, hideseek_first in (("PASSIVE (hideseek's)", True), ("libgomp default", False)):
        alone, shared = measure(args, hideseek_first)
        print(f"  {label:22s} alone {alone:6.3f} s/step   shared {shared:6.3f} s/step   "
              f"slowdown {shared / alone:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
