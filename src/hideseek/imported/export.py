"""This workflow's trained models exported to ONNX, so a third party can audit them elsewhere
(or here, as ``imported_models: {name: {format: onnx, ...}}``).

The graph takes the classifier input exactly as evaluation feeds the model (float (N, 3, S, S):
the stored image with its top 8 % cut, centre square, resized to the recipe's input size, values
in [0, 1], or ImageNet mean/std when the recipe says ``normalize: imagenet``) and returns the
three logits (normal, pneumonia, COVID-19). The ``imported_models`` entry that audits it is
written into the file's metadata (key ``hideseek_imported_entry``, JSON). The export is checked
against the torch model with onnxruntime before it is written (:data:`EXPORT_RTOL`,
:data:`EXPORT_ATOL`).
"""

from __future__ import annotations

import json
import logging

import numpy as np

from ..errors import InputError
from ..io import atomic_path
from .model import ONNX_OPSET, outputs_agree

log = logging.getLogger(__name__)

EXPORT_RTOL, EXPORT_ATOL = 1e-4, 1e-5
METADATA_KEY = "hideseek_imported_entry"


def imported_entry(payload: dict, normalize: str, onnx_path: str) -> dict:
    """The ``imported_models`` entry that audits the exported graph (same preprocessing and classes)."""
    from ..classification.recipes import TOP_CROP

    return dict(format="onnx", path=str(onnx_path),
                preprocessing=dict(input_size=int(payload["recipe"]["input_size"]), square="centre_crop",
                                   top_crop=TOP_CROP, channels=3,
                                   intensity="imagenet" if normalize == "imagenet" else "unit"),
                labels=dict(kind="softmax", outputs={c: i for i, c in enumerate(payload["classes"])}))


def export_onnx(model_pt, out_onnx, seed: int = 0) -> dict:
    """Export one model.pt to `out_onnx` (opset :data:`hideseek.imported.model.ONNX_OPSET`, batch
    axis dynamic, BatchNorm kept unfused so onnx2torch can convert it back); returns the entry."""
    import onnx
    import onnxruntime as ort
    import torch

    from ..classification.prediction import load_trained

    net, payload, perf = load_trained(model_pt, "cpu")
    net = net.float().eval().to(memory_format=torch.contiguous_format)
    size = int(payload["recipe"]["input_size"])
    x = torch.from_numpy(np.random.default_rng(seed).random((2, 3, size, size), dtype=np.float32))
    entry = imported_entry(payload, perf["normalize"], out_onnx)
    with atomic_path(out_onnx) as tmp:
        torch.onnx.export(net, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=ONNX_OPSET,
                          do_constant_folding=False, dynamo=False)
        graph = onnx.load(str(tmp))
        graph.doc_string = (f"cxr-hideseek {payload['arch']} exported from {model_pt}: input = the classifier input "
                            "(N, 3, S, S) as evaluation feeds it; output = logits normal, pneumonia, COVID-19")
        meta = graph.metadata_props.add()
        meta.key, meta.value = METADATA_KEY, json.dumps(entry)
        onnx.save(graph, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.inference_mode():
            expected = net(x).numpy()
        if not outputs_agree(got, expected, EXPORT_RTOL, EXPORT_ATOL):
            raise InputError(f"{model_pt}: the ONNX export disagrees with the torch model (largest difference "
                             f"{np.abs(got - expected).max():.2e}); not written")
    log.info("%s -> %s: %s at %d px, onnxruntime matches torch (largest difference %.2e)", model_pt, out_onnx,
             payload["arch"], size, float(np.abs(got - expected).max()))
    return entry


def read_entry(onnx_path) -> dict:
    """The ``imported_models`` entry written into an exported graph's metadata."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)
    for prop in graph.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    raise InputError(f"{onnx_path}: no {METADATA_KEY} metadata (not exported by this workflow)")
