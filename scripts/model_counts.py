#!/usr/bin/env python
"""Print parameter and MAC counts of the audit's classifiers at given input sizes.

    .venv/bin/python scripts/model_counts.py                      # all archs at 224 and 480 px
    .venv/bin/python scripts/model_counts.py --sizes 128 --width 0.25 --archs covidnet_cxr4a

Models are built on the meta device (no memory, no arithmetic), so this takes seconds.
MACs count Conv2d and Linear multiply-accumulates for one image (hideseek.classification.models.count_macs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

import torch  # noqa: E402

from hideseek.classification.models import PUBLISHED_COUNTS, build_model, count_macs, count_parameters  # noqa: E402
from hideseek.vocabulary import ARCHITECTURES, COVIDNET_ARCHS  # noqa: E402


TORCHVISION_NOTES = {"alexnet": "torchvision alexnet", "vgg11": "torchvision vgg11_bn",
                     "resnet50": "torchvision resnet50"}


def rows(archs, sizes, width, num_classes):
    for arch in archs:
        with torch.device("meta"):
            model = build_model(arch, num_classes=num_classes, width=width)
        params = count_parameters(model)
        for size in sizes:
            macs = count_macs(model, size)
            if arch in COVIDNET_ARCHS:
                notes = ["PEPX re-implementation, not the GenSynth graph"]
                published = PUBLISHED_COUNTS[arch]
                if published["input_size"] == size and width == 1.0:
                    notes.append(f"published {published['params'] / 1e6:.1f} M / {published['macs'] / 1e9:.2f} G "
                                 f"(ours {params / published['params'] - 1:+.1%} / {macs / published['macs'] - 1:+.1%})")
                yield arch, width, size, params, macs, "; ".join(notes)
            else:
                yield arch, "-", size, params, macs, TORCHVISION_NOTES[arch]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 480], help="input sizes in px")
    parser.add_argument("--width", type=float, default=1.0, help="COVID-Net width multiplier (1.0 = paper scale)")
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--csv", action="store_true", help="CSV instead of a Markdown table")
    args = parser.parse_args(argv)

    if args.csv:
        print("arch,width,input_px,params,macs,note")
        for arch, width, size, params, macs, note in rows(args.archs, args.sizes, args.width, args.num_classes):
            print(f'{arch},{width},{size},{params},{macs},"{note}"')
        return 0
    print("| arch | width | input | params (M) | MACs (G) | note |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for arch, width, size, params, macs, note in rows(args.archs, args.sizes, args.width, args.num_classes):
        print(f"| {arch} | {width} | {size}² | {params / 1e6:.2f} | {macs / 1e9:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
