"""Speed of auditing an imported model: predicting every representation of a test set through
hideseek.imported (store read, the model's own geometry, forward, label mapping) against the
bare forward time of the same images, for the torch path and the onnxruntime path.

    .venv/bin/python scripts/bench_imported.py --images 300 --size 224 --threads 2

Builds a phantom test set of --images images in five representations (in a temporary folder),
an untrained torchvision ResNet-50 (weights=None) saved as a state_dict and exported to ONNX.
Prints seconds and images/s per path and the ratio (pipeline / bare forward); the issue's target
is a ratio of at most ~2 for the torch path. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="test images per representation")
    parser.add_argument("--size", type=int, default=224, help="model input side in px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    import numpy as np
    import torch
    import torchvision
    from snakemake.utils import validate

    from hideseek.imported.model import load_imported
    from hideseek.imported.predict import predict_stores
    from hideseek.imported.preprocess import load_partition, to_input
    from test_imported_fixtures import phantom_stores

    torch.set_num_threads(args.threads)
    per_class = -(-args.images // 3)
    side = int(np.ceil(args.size / 0.92)) + 8
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        stores, _, _ = phantom_stores(tmp / "stores", {"test": per_class}, size=(side, side - 16))
        print(f"phantom test set: {3 * per_class} images x {len(stores)} representations, {side}x{side - 16} px, "
              f"built in {time.perf_counter() - started:.1f} s")
        net = torchvision.models.resnet50(weights=None, num_classes=3).eval()
        torch.save(net.state_dict(), tmp / "r50.pt")
        torch.onnx.export(net, (torch.zeros(1, 3, args.size, args.size),), str(tmp / "r50.onnx"), input_names=["x"],
                          dynamic_axes={"x": {0: "n"}}, opset_version=17, do_constant_folding=False, dynamo=False)
        pre = dict(input_size=args.size, square="centre_crop", top_crop=0.08, channels=3, intensity="imagenet")
        labels = dict(kind="softmax", outputs={"normal": 0, "pneumonia": 1, "COVID-19": 2})
        entries = {"torch": dict(format="torchvision", architecture="resnet50", path=str(tmp / "r50.pt"),
                                 preprocessing=pre, labels=labels, batch_size=args.batch),
                   "onnxruntime": dict(format="onnx", path=str(tmp / "r50.onnx"), preprocessing=pre, labels=labels,
                                       batch_size=args.batch)}
        for entry in entries.values():
            validate({"imported_models": {"m": entry}}, str(Path(__file__).resolve().parents[1] / "workflow" /
                                                             "schemas" / "config.schema.yaml"))
        # the same images, preprocessed once, for the bare forward passes
        x01 = torch.cat([load_partition(*store, pre)[0] for store in stores.values()]).unsqueeze(1).float() / 255
        x = to_input(x01, pre)
        n = len(x)
        print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads, batch {args.batch}, "
              f"ResNet-50 at {args.size} px, {n} images in all")
        results = {}
        for path, entry in entries.items():
            model = load_imported(path, entry)
            with torch.inference_mode():  # warm-up
                model.scores(torch.zeros(2, args.size, args.size, dtype=torch.uint8))
            started = time.perf_counter()
            with torch.inference_mode():
                for start in range(0, n, args.batch):
                    batch = x[start:start + args.batch]
                    if model.session is not None:
                        model.session.run(None, {model.session.get_inputs()[0].name: batch.numpy()})
                    else:
                        model.torch_model.net(batch)
            bare = time.perf_counter() - started
            started = time.perf_counter()
            predict_stores(model, stores, batch_size=args.batch, progress=False)
            pipeline = time.perf_counter() - started
            results[path] = (bare, pipeline)
            print(f"{path:12s} bare forward {bare:7.1f} s ({n / bare:6.1f} img/s); all five representations "
                  f"through hideseek.imported {pipeline:7.1f} s ({n / pipeline:6.1f} img/s); ratio {pipeline / bare:.2f}")
        torch_bare = results["torch"][0]
        print(f"onnxruntime pipeline / torch bare forward: {results['onnxruntime'][1] / torch_bare:.2f}")


if __name__ == "__main__":
    main()
