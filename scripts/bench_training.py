#!/usr/bin/env python
"""Training-loop throughput against the model alone on pre-made in-memory tensors.

    .venv/bin/python scripts/bench_training.py --arch resnet50 --size 128 --batch 32 --threads 2
    .venv/bin/python scripts/bench_training.py --arch resnet50 --size 224 --batch 128 --device cuda

"pipeline": what ``train_classifier`` does per step — index a batch from the in-memory uint8
store tensor, convert to float, per-image augmentation (affine grid + brightness), repeat to
3 channels, forward/backward/fused-Adam step under the run's precision and memory format.
"model only": the same model, optimizer and precision on one pre-made float batch already in
the model's layout (no indexing, no augmentation, no conversion). The ratio pipeline / model
only is the data path's overhead (target >= 0.9 on the CPU).

Data: a store from --pixels/--index (default results/data/...) if present, else random images.
Prints one line per measurement and a summary; --json writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of each kind")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--pixels", default=str(REPO / "results/data/pixels.npy"))
    parser.add_argument("--index", default=str(REPO / "results/data/images.csv"))
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from hideseek.classification.augment import augment_batch, AugmentConfig
    from hideseek.classification.models import build_model
    from hideseek.seeding import seed_everything
    from hideseek.classification.samplers import BalancedSampler
    from hideseek.classification.inputs import load_split
    from hideseek.classification.performance import make_optimizer, performance_settings, to_model_input
    from hideseek.devices import resolve_device
    from hideseek.classification.performance import autocast

    seed_everything(0)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    channels_last = {"auto": "auto", "true": True, "false": False}[args.channels_last]
    recipe = dict(precision=args.precision, channels_last=channels_last, lr=1e-4, betas=(0.9, 0.999),
                  weight_decay=0.0)
    perf = performance_settings(recipe, device)
    model = build_model(args.arch, width=args.width).to(
        device, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
    optimizer, fused = make_optimizer(model, recipe, device)
    weights = torch.tensor([1.0, 1.0, 4.0], device=device)

    if Path(args.pixels).is_file() and Path(args.index).is_file():
        split = load_split(args.pixels, args.index, "train", args.size)
        images, labels, data = split.images, split.labels, f"store {args.pixels} ({len(split)} train images)"
    else:
        n = max(4 * args.batch, 256)
        images = torch.randint(0, 256, (n, args.size, args.size), dtype=torch.uint8)
        labels = torch.randint(0, 3, (n,))
        data = f"random uint8 images ({n})"
    # Enough images for every timed step (the store is re-used cyclically, as epochs would).
    need = args.batch * (args.steps + args.warmup)
    reps = -(-need // len(images))
    images, labels = images.repeat(reps, 1, 1).to(device), labels.repeat(reps).to(device)
    sampler = BalancedSampler(labels, args.batch, torch.Generator().manual_seed(0))
    augment_gen = torch.Generator().manual_seed(1)
    augment_cfg = AugmentConfig()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(x, y):
        with autocast(perf):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, weight=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    fixed_x = to_model_input(images[: args.batch], perf)  # pre-made: float, 3 channels, model layout
    fixed_y = labels[: args.batch]

    def run_pipeline(steps):
        batches = [b for b in sampler.epoch() if len(b) == args.batch]
        while len(batches) < steps:
            batches += [b for b in sampler.epoch() if len(b) == args.batch]
        for index in batches[:steps]:
            index = index.to(device)
            x = to_model_input(images[index], perf, lambda t: augment_batch(t, augment_cfg, augment_gen))
            step(x, labels[index])

    def run_model_only(steps):
        for _ in range(steps):
            step(fixed_x, fixed_y)

    def timed(fn):
        """(images per wall second, images per CPU second of this process)."""
        fn(args.warmup)
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(args.steps)
        sync()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        return args.steps * args.batch / wall, args.steps * args.batch / cpu

    print(f"{args.arch} @ {args.size} px, batch {args.batch}, {perf['device']}, precision {perf['precision']}, "
          f"channels_last {perf['channels_last']}, fused Adam {fused}, threads "
          f"{torch.get_num_threads() if device.type == 'cpu' else '-'}; data: {data}")
    pipeline, model_only = [], []
    for repeat in range(args.repeats):  # alternate, so drifting machine load hits both alike
        pipeline.append(timed(run_pipeline))
        model_only.append(timed(run_model_only))
        print(f"  round {repeat + 1}: pipeline {pipeline[-1][0]:8.1f} img/s ({pipeline[-1][1]:7.1f} per CPU-s)   "
              f"model only {model_only[-1][0]:8.1f} img/s ({model_only[-1][1]:7.1f} per CPU-s)")
    figures = {}
    for clock, k in (("wall", 0), ("cpu", 1)):
        best_pipeline, best_model = max(p[k] for p in pipeline), max(m[k] for m in model_only)
        figures[clock] = dict(pipeline=best_pipeline, model_only=best_model, ratio=best_pipeline / best_model)
        unit = "img/s" if clock == "wall" else "img per CPU-second"
        print(f"best ({clock} clock): pipeline {best_pipeline:.1f} {unit}, model only {best_model:.1f} {unit}, "
              f"ratio {best_pipeline / best_model:.3f}")
    print("(on a shared machine the CPU clock is the steadier figure: a descheduled process does not count)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            arch=args.arch, size=args.size, batch=args.batch, threads=args.threads, **perf, fused_adam=fused,
            rounds=dict(pipeline=pipeline, model_only=model_only), best=figures), indent=2))


if __name__ == "__main__":
    main()
