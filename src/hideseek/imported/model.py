"""Loading an imported model, one loader per format, behind one interface.

Every loader returns an :class:`ImportedModel`: the model's own preprocessing and label mapping
resolved, and either a torch module (torchvision, timm, torchxrayvision, hideseek; ONNX after
onnx2torch for CAMs) or an onnxruntime session (ONNX forward passes). Nothing is downloaded:
torchvision / timm / torchxrayvision networks are built with ``weights=None`` /
``pretrained=False`` and their weights read from the local file with
``torch.load(..., weights_only=True)``.

A torch model is wrapped in :class:`ScoredModel`, whose input is what
:func:`hideseek.classification.performance.to_model_input` makes with ``normalize: none`` (3
channels in [0, 1]) and whose output is the three class scores (normal, pneumonia, COVID-19) of
:func:`class_scores`: so Grad-CAM (:mod:`hideseek.audit.cam`) targets a class of ours directly,
whatever the model's head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..vocabulary import CLASSES
from .preprocess import to_input
from .spec import default_output_names

log = logging.getLogger(__name__)

# A class a softmax head does not map gets this logit: softmax gives it ~0, no NaN.
UNMAPPED_LOGIT = -1e4
ONNX_OPSET = 17  # onnx2torch 1.5 converts up to opset 17's operators (Identity-19, ReduceMean-18 fail)


def _key(name: str, *parts: str) -> str:
    return ".".join(("imported_models", name, *parts))


# ---------------------------------------------------------------------------------------------
# Label mapping: raw outputs -> class scores -> probabilities and the predicted class
# ---------------------------------------------------------------------------------------------
def resolve_labels(name: str, labels: dict, n_outputs: int, output_names: list[str] | None) -> dict:
    """The label spec with output indices per class (``index``: class -> list of output indices),
    checked against the model's actual number of outputs."""
    resolved = dict(labels)
    if labels["kind"] == "softmax":
        index = {cls: [int(i)] for cls, i in labels["outputs"].items()}
    else:
        names = list(output_names or [])
        if len(names) != n_outputs:
            raise InputError(f"{_key(name, 'labels', 'output_names')}: {len(names)} names but the model has "
                             f"{n_outputs} outputs; give one name per output, in order")
        index = {cls: [names.index(n) for n in mapped] for cls, mapped in labels["outputs"].items()}
    too_big = {cls: i for cls, ids in index.items() for i in ids if i >= n_outputs}
    if too_big:
        cls, i = next(iter(too_big.items()))
        raise InputError(f"{_key(name, 'labels', 'outputs', cls)}: output {i} does not exist; the model has "
                         f"{n_outputs} outputs (0 to {n_outputs - 1})")
    resolved["index"] = index
    return resolved


def class_scores(raw, labels: dict):
    """(B, K) raw outputs -> (B, 3) class scores in CLASSES order (torch, differentiable).

    softmax: the mapped logits (an unmapped class gets :data:`UNMAPPED_LOGIT`). multilabel: per
    class the largest (sigmoid-activated, unless ``activation: none``) score of its outputs; an
    unmapped disease scores 0 and an unmapped normal ``1 - max(disease scores)``."""
    import torch

    raw = raw.float()
    index = labels["index"]
    if labels["kind"] == "softmax":
        columns = [raw[:, index[cls][0]] if cls in index else torch.full_like(raw[:, 0], UNMAPPED_LOGIT)
                   for cls in CLASSES]
        return torch.stack(columns, 1)
    act = torch.sigmoid(raw) if labels.get("activation", "sigmoid") == "sigmoid" else raw
    zero = torch.zeros_like(act[:, 0])
    scores = {cls: act[:, index[cls]].max(1).values if cls in index else zero for cls in CLASSES}
    if "normal" not in index:
        scores["normal"] = 1 - torch.maximum(scores["pneumonia"], scores["COVID-19"])
    return torch.stack([scores[cls] for cls in CLASSES], 1)


def decide(scores, labels: dict) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, 3), predicted class index (N,)) from :func:`class_scores`.

    softmax: softmax of the scores, the largest. multilabel: the scores divided by their sum (a
    ranking score for AUROC, not a calibrated probability); predicted: with a normal output, the
    largest score; without, normal when no disease score reaches ``threshold``, else the larger
    disease score."""
    import torch

    scores = scores.float()
    if labels["kind"] == "softmax":
        probs = torch.softmax(scores, 1)
        return probs.numpy(), probs.argmax(1).numpy()
    s = scores.clamp(min=0).numpy()
    probs = s / np.clip(s.sum(1, keepdims=True), 1e-12, None)
    if "normal" in labels["index"]:
        return probs, s.argmax(1)
    disease = s[:, 1:]
    predicted = np.where(disease.max(1) >= labels["threshold"], 1 + disease.argmax(1), 0)
    return probs, predicted


# ---------------------------------------------------------------------------------------------
# The loaded model
# ---------------------------------------------------------------------------------------------
def scored_model_class():
    from torch import nn

    class ScoredModel(nn.Module):
        """[0, 1] 3-channel input -> the model's own input (:func:`to_input`) -> its outputs ->
        the three class scores. The imported network is ``self.net``."""

        def __init__(self, net, pre: dict, labels: dict):
            super().__init__()
            self.net, self.pre, self.labels = net, pre, labels

        def forward(self, x01):
            return class_scores(self.net(to_input(x01, self.pre)), self.labels)

    return ScoredModel


@dataclass
class ImportedModel:
    """One imported model, ready to predict. ``torch_model`` (a ScoredModel) or ``session``
    (onnxruntime) does the forward passes; ``cam_layers`` are candidate Grad-CAM targets inside
    ``torch_model`` (``net.`` + the model's module path), None when there is no torch module."""

    name: str
    fmt: str
    pre: dict
    labels: dict
    description: str
    torch_model: object = None
    session: object = None
    cam_layers: list[str] | None = None
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def scores(self, images_u8, batch_size: int = 32):
        """Class scores (N, 3), float32 on the CPU, for a uint8 (N, S, S) tensor."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images_u8), batch_size):
                x01 = images_u8[start:start + batch_size].unsqueeze(1).float().div_(255.0).expand(-1, 3, -1, -1)
                if self.session is not None:
                    raw = torch.from_numpy(onnx_forward(self.session, to_input(x01, self.pre).numpy()))
                    chunks.append(class_scores(raw, self.labels))
                else:
                    chunks.append(self.torch_model(x01.to(self.device)).float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, len(CLASSES))


def outputs_agree(got: np.ndarray, reference: np.ndarray, rtol: float, atol: float) -> bool:
    """Two (N, K) output arrays agree when their largest absolute difference is at most
    ``atol + rtol * (the largest |reference output|)``. Float32 rounding follows the size of the
    values the network carries, which is the model's, not one output's: measured on a 2-epoch tiny
    COVID-Net (logits up to 620), onnxruntime and torch differ by up to 0.014 on an image whose
    largest logit is 1.5 (elementwise ``np.allclose`` fails there) and by 2e-5 of the scale
    overall; a wrongly converted operator is off by the order of the scale itself."""
    got, reference = np.asarray(got, float), np.asarray(reference, float)
    if got.shape != reference.shape:
        return False
    if not reference.size:
        return True
    return bool(np.abs(got - reference).max() <= atol + rtol * np.abs(reference).max())


def onnx_forward(session, x: np.ndarray) -> np.ndarray:
    """The first output of an onnxruntime session for a float32 NCHW batch."""
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0])


def _read_state_dict(name: str, path) -> dict:
    """A state_dict from a .pt/.pth (also inside {"state_dict" | "model_state_dict" | "model": ...},
    DataParallel's ``module.`` prefix removed), read with weights_only=True."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{_key(name, 'path')}: {path} does not exist") from None
    except Exception as error:  # noqa: BLE001 - pickle errors of many kinds: say what to do
        raise InputError(f"{_key(name, 'path')}: {path} is not a state_dict readable with weights_only=True "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:120]}); if it is a whole pickled model, save its "
                         "weights once where you trust the file: torch.save(torch.load(f, weights_only=False)"
                         ".state_dict(), 'weights.pt')") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(f"{_key(name, 'path')}: {path} holds no state_dict (a dict of tensors)")
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def _load_weights(name: str, net, state: dict, what: str) -> None:
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{_key(name, 'path')}: the weights do not fit {what}: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]}); check imported_models.{name}.architecture")


def _first_conv_channels(net) -> int | None:
    from torch import nn

    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else int(conv.in_channels)


def _check_channels(name: str, pre: dict, channels: int | None) -> None:
    if channels is not None and channels != pre["channels"]:
        raise InputError(f"{_key(name, 'preprocessing', 'channels')}: {pre['channels']}, but the model's first "
                         f"convolution takes {channels} channel(s); set channels: {channels}")


def _check_forward(name: str, net, pre: dict):
    """One dry forward pass at the stated input: returns the number of outputs."""
    import torch

    x = torch.zeros(1, pre["channels"], pre["input_size"], pre["input_size"])
    try:
        with torch.inference_mode():
            out = net.eval()(x)
    except RuntimeError as error:
        raise InputError(f"{_key(name, 'preprocessing')}: the model rejects a {tuple(x.shape)} input "
                         f"(input_size {pre['input_size']}, channels {pre['channels']}): {str(error)[:300]}") from None
    if out.ndim != 2:
        raise InputError(f"{_key(name, 'path')}: the model's output has shape {tuple(out.shape)}; a classifier "
                         "returns (batch, outputs)")
    return int(out.shape[1])


def _last_matrix_rows(state: dict) -> int:
    """Outputs of a state_dict's classifier: rows of its last 2-D weight."""
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if not matrices:
        raise InputError("the state_dict has no 2-D weight (no classifier layer)")
    return int(matrices[-1].shape[0])


def build_torchvision(name: str, entry: dict, state: dict):
    import torchvision

    arch = entry["architecture"]
    try:
        builder = torchvision.models.get_model_builder(arch)
    except ValueError:
        raise InputError(f"{_key(name, 'architecture')}: {arch!r} is not a torchvision model; e.g. "
                         f"{', '.join(torchvision.models.list_models(torchvision.models)[:8])}, ...") from None
    kwargs = dict(weights=None, num_classes=_last_matrix_rows(state))
    if arch in ("inception_v3", "googlenet"):
        kwargs.update(aux_logits=False, init_weights=False)
    return builder(**kwargs)


def build_timm(name: str, entry: dict, state: dict):
    import timm

    arch = entry["architecture"]
    if not timm.is_model(arch):
        raise InputError(f"{_key(name, 'architecture')}: {arch!r} is not a timm model (timm.list_models() lists them)")
    probe = timm.create_model(arch, pretrained=False)
    cfg = probe.pretrained_cfg
    classifier, first_conv = f"{cfg.get('classifier')}.weight", f"{cfg.get('first_conv')}.weight"
    num_classes = int(state[classifier].shape[0]) if classifier in state else _last_matrix_rows(state)
    in_chans = int(state[first_conv].shape[1]) if first_conv in state else 3
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans)


def build_xrv(name: str, entry: dict, state: dict):
    """torchxrayvision's DenseNet (its own class, weights=None) or ResNet-50 (torchvision's, one
    input channel, as xrv.models.ResNet builds it: that class downloads in its constructor)."""
    import torch
    import torchvision
    import torchxrayvision as xrv

    n_outputs = len(default_output_names(entry))
    state.pop("op_threshs", None)  # xrv's calibration buffer: not applied (the decision rule is ours)
    if (entry.get("architecture") or "densenet121") == "densenet121":
        return xrv.models.DenseNet(weights=None, num_classes=n_outputs, in_channels=1)
    net = torchvision.models.resnet50(weights=None, num_classes=n_outputs)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for key in list(state):  # a state_dict of the xrv.models.ResNet wrapper: its torchvision model is .model
        if key.startswith("model."):
            state[key[len("model."):]] = state.pop(key)
    return net


BUILDERS = {"torchvision": build_torchvision, "timm": build_timm, "torchxrayvision": build_xrv}


def execution_order_layers(net, pre: dict) -> list[str]:
    """Every leaf module with a 4-D (feature map) output, in the order one forward pass calls
    them: for a graph without named stages (ONNX through onnx2torch, one module per node), the
    deepest of these at a given grid is the last operation at that resolution — typically the
    residual sum or activation that ends a stage."""
    import torch

    order: list[str] = []

    def recorder(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4 and name not in order:
                order.append(name)
        return hook

    leaves = [(n, m) for n, m in net.named_modules() if n and not any(True for _ in m.children())]
    handles = [m.register_forward_hook(recorder(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, pre["channels"], pre["input_size"], pre["input_size"]))
    finally:
        for handle in handles:
            handle.remove()
    return order


def default_cam_layers(net, fmt: str, arch: str | None, pre: dict) -> list[str]:
    """Candidate Grad-CAM targets, shallow to deep, by family: this workflow's own architectures
    (:func:`hideseek.classification.models.gradcam_candidate_layers`), ResNets' residual blocks
    (torchvision, timm, torchxrayvision), DenseNets' dense blocks, timm's ``feature_info``
    stages, else every feature-map operation in execution order (:func:`execution_order_layers`;
    ONNX graphs). The CAM uses the deepest with a grid of at least 7 x 7
    (:func:`hideseek.audit.cam.choose_cam_layer`)."""
    names = dict(net.named_modules())
    if fmt == "hideseek":
        from ..classification.models import gradcam_candidate_layers

        return [n for n, _ in gradcam_candidate_layers(net, arch)]
    if all(f"layer{k}" in names for k in range(1, 5)):
        return [f"layer{k}.{i}" for k in range(1, 5) for i in range(len(names[f"layer{k}"]))]
    dense = [n for n in names if n.startswith("features.denseblock") and n.count(".") == 1]
    if dense:
        return dense
    info = getattr(net, "feature_info", None)
    if info is not None:
        stages = [fi["module"] for fi in info if fi.get("module") in names]
        if stages:
            return stages
    return execution_order_layers(net, pre)


def _cam_layers(name: str, entry: dict, net, arch: str | None, pre: dict) -> list[str]:
    chosen = entry.get("cam_layer")
    if chosen:
        if chosen not in dict(net.named_modules()):
            raise InputError(f"{_key(name, 'cam_layer')}: {chosen!r} is not a module of this model; e.g. "
                             f"{', '.join(default_cam_layers(net, entry['format'], arch, pre)[-4:])}")
        return [f"net.{chosen}"]
    return [f"net.{n}" for n in default_cam_layers(net, entry["format"], arch, pre)]


def _describe(entry: dict) -> str:
    arch = f" {entry['architecture']}" if entry.get("architecture") else ""
    return f"{entry['format']}{arch} from {entry['path']}"


def load_imported(name: str, entry: dict, device: str = "cpu", *, onnx_as_torch: bool = False) -> ImportedModel:
    """The model of one ``imported_models`` entry (already schema-checked and
    :func:`hideseek.imported.spec.check_entry`-checked). ONNX models run in onnxruntime unless
    `onnx_as_torch` (onnx2torch conversion, for Grad-CAM; it raises what the converter raises)."""
    fmt = entry["format"]
    if fmt == "hideseek":
        return _load_hideseek(name, entry, device)
    pre = dict(entry["preprocessing"])
    if fmt == "onnx":
        return _load_onnx(name, entry, pre, device, onnx_as_torch)
    state = _read_state_dict(name, entry["path"])
    net = BUILDERS[fmt](name, entry, state)
    _check_channels(name, pre, _first_conv_channels(net))
    _load_weights(name, net, state, _describe(entry))
    n_outputs = _check_forward(name, net, pre)
    labels = resolve_labels(name, entry["labels"], n_outputs, default_output_names(entry))
    return _torch_model(name, entry, pre, labels, net, device, entry.get("architecture"))


def _torch_model(name, entry, pre, labels, net, device, arch, description=None, extra=None) -> ImportedModel:
    net = net.float().eval()
    cams = _cam_layers(name, entry, net, arch, pre)
    model = scored_model_class()(net, pre, labels).to(device).eval()
    return ImportedModel(name=name, fmt=entry["format"], pre=pre, labels=labels,
                         description=description or _describe(entry), torch_model=model, cam_layers=cams,
                         device=str(device), extra=extra or {})


def _load_hideseek(name: str, entry: dict, device: str) -> ImportedModel:
    """A model.pt of this workflow: its recipe gives the preprocessing (the classifier input:
    top 8 % cut, centre square, input_size, 3 channels, [0, 1] or ImageNet mean/std), its
    ``classes`` the softmax mapping."""
    from ..classification.prediction import load_trained
    from ..classification.recipes import TOP_CROP

    try:
        net, payload, perf = load_trained(entry["path"], device)
    except FileNotFoundError:
        raise InputError(f"{_key(name, 'path')}: {entry['path']} does not exist") from None
    pre = dict(input_size=int(payload["recipe"]["input_size"]), square="centre_crop", top_crop=TOP_CROP, channels=3,
               intensity="imagenet" if perf["normalize"] == "imagenet" else "unit")
    labels = resolve_labels(name, dict(kind="softmax", outputs={c: i for i, c in enumerate(payload["classes"])}),
                            len(payload["classes"]), None)
    net = net.to(memory_format=__import__("torch").contiguous_format)
    return _torch_model(name, entry, pre, labels, net, device, payload["arch"],
                        description=f"hideseek {payload['arch']} from {entry['path']}", extra=dict(arch=payload["arch"]))


def _load_onnx(name: str, entry: dict, pre: dict, device: str, as_torch: bool) -> ImportedModel:
    import onnxruntime as ort

    path = entry["path"]
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise InputError(f"{_key(name, 'path')}: onnxruntime cannot open {path}: {str(error)[:300]}") from None
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        raise InputError(f"{_key(name, 'path')}: the graph's input has shape {shape}; expected (batch, channels, "
                         "height, width)")
    if isinstance(shape[1], int):
        _check_channels(name, pre, shape[1])
    for side in shape[2:]:
        if isinstance(side, int) and side != pre["input_size"]:
            raise InputError(f"{_key(name, 'preprocessing', 'input_size')}: {pre['input_size']}, but the ONNX graph "
                             f"takes {shape[2]} x {shape[3]} inputs; set input_size: {side}")
    x = np.zeros((1, pre["channels"], pre["input_size"], pre["input_size"]), np.float32)
    try:
        out = onnx_forward(session, x)
    except Exception as error:  # noqa: BLE001
        raise InputError(f"{_key(name, 'preprocessing')}: the ONNX graph rejects a {x.shape} input: "
                         f"{str(error)[:300]}") from None
    labels = resolve_labels(name, entry["labels"], int(out.reshape(1, -1).shape[1]), default_output_names(entry))
    if not as_torch:
        return ImportedModel(name=name, fmt="onnx", pre=pre, labels=labels, description=_describe(entry),
                             session=session, device="cpu")
    import onnx2torch

    net = onnx2torch.convert(str(path))
    model = _torch_model(name, entry, pre, labels, net, device, None)
    model.session = None
    model.extra["session"] = session  # for the logit check against onnxruntime
    return model
