#!/usr/bin/env python
"""Benchmark of the segmentation stage (prints figures; not a test).

1. ``inference`` -- the bare U-Net forward pass on a ready batch (B, 1, S, S) and the batched
   inference pipeline as ``segment_images`` runs it (pad to square, resize, z-score, forward,
   resize back, crop, two largest components), timed alternately: images/s of each and their
   ratio at the same batch size (target >= 0.8).
2. ``post``      -- mask post-processing (resize back, threshold, components, QC) plus the four
   modified representations, per image, one thread: images/s (target >= 200 on 2 cores).

Each phase runs in a fresh process so that its peak memory (max RSS) is its own.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_segmentation.py                 # light default net, 128 px
    .venv/bin/python scripts/bench_segmentation.py --model results/segmentation/unet.pt \\
        --store results/data --batch 16 --threads 2

With ``--store`` the images come from an image store (``pixels.npy`` + ``images.csv``);
otherwise synthetic radiograph-like images of ``--side`` px are used.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Radiograph-like gray images (long side `side`, varying aspect) with two dark 'lungs'."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        height = side
        width = int(side * rng.uniform(0.8, 1.0))
        image = rng.normal(150, 12, (height, width))
        for cx in (0.3, 0.7):
            center = (int(width * cx), int(height * 0.45))
            axes = (int(width * 0.14), int(height * 0.3))
            lung = np.zeros((height, width), np.uint8)
            cv2.ellipse(lung, center, axes, 0, 0, 360, 1, -1)
            image[lung > 0] -= 80
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def load_images(args) -> list[np.ndarray]:
    if args.store:
        from hideseek.data.store import ImageStore

        store = ImageStore(Path(args.store) / "pixels.npy", Path(args.store) / "images.csv")
        return [store[i] for i in range(min(args.n, len(store)))]
    return synthetic_images(args.n, args.side)


def load_net(args):
    import torch

    from hideseek.segmentation.network import build_unet, load_model
    from hideseek.devices import set_threads

    set_threads(args.threads)
    if args.model:
        model, size, _ = load_model(args.model)
        return model, size
    torch.manual_seed(0)
    network = dict(channels=args.channels, num_res_units=args.res_units, norm="batch", dropout=0.0)
    return build_unet(network).eval(), args.size


def phase_inference(args) -> dict:
    """Bare forward and the full pipeline, timed alternately in one process (fair under varying load)."""
    import torch

    from hideseek.segmentation.inference import LungSegmenter

    model, size = load_net(args)
    images = load_images(args)
    batch = torch.randn(args.batch, 1, size, size)
    n_batches = max(1, len(images) // args.batch)
    segmenter = LungSegmenter(model, size, batch_size=args.batch, workers=args.workers)

    def forward():
        with torch.inference_mode():
            for _ in range(n_batches):
                torch.softmax(model(batch), dim=1)
        return n_batches * args.batch

    def pipeline():
        return sum(1 for _ in segmenter.segment(images))

    forward()
    list(segmenter.segment(images[:args.batch * 2]))  # warm-up
    best = dict(forward=0.0, pipeline=0.0)
    for _ in range(args.repeats):
        for name, run in (("forward", forward), ("pipeline", pipeline)):
            start = time.perf_counter()
            count = run()
            best[name] = max(best[name], count / (time.perf_counter() - start))
    shapes = np.array([image.shape for image in images])
    return dict(forward_images_per_s=best["forward"], pipeline_images_per_s=best["pipeline"], size=size,
                batch=args.batch, n=len(images), image_shape_median=[int(v) for v in np.median(shapes, axis=0)])


def phase_post(args) -> dict:
    import cv2

    from hideseek.segmentation.masks import mask_qc
    from hideseek.representations import all_representations
    from hideseek.segmentation.geometry import image_to_model, model_to_image
    from hideseek.segmentation.inference import postprocess

    images = load_images(args)
    size = args.size
    qc_cfg = dict(min_lung_fraction=0.05, max_lung_fraction=0.65, min_component_ratio=0.25)
    # lung probability maps at model size: the images' own dark regions, blurred (like a net's output)
    probs = []
    for image in images:
        small = image_to_model(image, size).astype(np.float32)
        probs.append(cv2.GaussianBlur((small < np.percentile(small, 30)).astype(np.float32), (5, 5), 1.5))
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for image, prob in zip(images, probs):
            raw, mask = postprocess(model_to_image(prob, image.shape))
            mask_qc(raw, mask, qc_cfg)
            all_representations(image, mask)
        times.append(time.perf_counter() - start)
    return dict(images_per_s=len(images) / min(times), n=len(images))


PHASES = dict(inference=phase_inference, post=phase_post)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained U-Net file (results/segmentation/unet.pt); default: random "
                                        "weights of the light default net")
    parser.add_argument("--store", help="image store folder with pixels.npy + images.csv (e.g. results/data)")
    parser.add_argument("--size", type=int, default=128, help="U-Net input side without --model (default 128)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--res-units", type=int, default=2)
    parser.add_argument("--side", type=int, default=140, help="long side of synthetic images (the store's, 140)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n", type=int, default=256, help="images per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per phase; the best is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's default is 1)")
    parser.add_argument("--workers", type=int, default=1, help="pipeline helper threads (0: all in one thread)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        result = PHASES[args.phase](args)
        result["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(result))
        return

    passthrough = sys.argv[1:]
    results = {}
    for phase in ("inference", "post"):
        run = subprocess.run([sys.executable, __file__, *passthrough, "--phase", phase], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"phase {phase} failed:\n{run.stderr}")
        results[phase] = json.loads(run.stdout.strip().splitlines()[-1])

    inference, post = results["inference"], results["post"]
    ratio = inference["pipeline_images_per_s"] / inference["forward_images_per_s"]
    source = f"store {args.store}" if args.store else f"synthetic images, long side {args.side} px"
    model = args.model or f"random light U-Net {args.channels}, {args.res_units} res units"
    print(f"Segmentation benchmark: {model}, input {inference['size']} px, batch {args.batch}, "
          f"{args.threads} torch thread(s), {args.workers} pipeline worker(s); {inference['n']} images from {source} (median "
          f"{inference['image_shape_median'][0]}x{inference['image_shape_median'][1]} px); best of {args.repeats}")
    print("| stage | images/s | peak RSS (MiB) | note |")
    print("|---|---|---|---|")
    print(f"| bare U-Net forward | {inference['forward_images_per_s']:.1f} | {inference['peak_rss_mib']:.0f} | "
          f"ready (B, 1, S, S) tensor + softmax |")
    print(f"| batched inference pipeline | {inference['pipeline_images_per_s']:.1f} | (same process) | "
          f"{ratio:.2f}x the bare forward (target >= 0.8) |")
    print(f"| post-processing + 4 representations | {post['images_per_s']:.1f} | {post['peak_rss_mib']:.0f} | "
          f"one thread (target >= 200) |")
    print(json.dumps(dict(results, pipeline_to_forward=ratio)))


if __name__ == "__main__":
    main()
