"""How a classifier run feeds its model: the input tensor (:func:`to_model_input`, the one
place every consumer gets its inputs from) and the performance switches (precision, bf16
autocast, memory format, fused Adam)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# torchvision's ImageNet statistics (recipe key normalize: imagenet), per RGB channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The precision probe (performance_settings on the CPU): a few training steps of the job's own
# model at its own input size and batch, per candidate setting; the fastest wins. bf16 must be
# clearly faster to be chosen, since it changes the numbers (and a close race flips with noise).
PROBE_WARMUP_STEPS = 1
PROBE_STEPS = 2
BF16_MIN_GAIN = 0.10


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16 (recorded in train_info.json as ``cpu_fast_bf16``). Not used to choose:
    on a 2-core AVX-512-BF16 Xeon without AMX, bf16 autocast was slower than fp32 (ResNet-50
    15.9 vs 19.2 img/s, VGG-11 8.6 vs 13.3); only measuring tells (:func:`performance_settings`)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_cache_dir() -> Path:
    """Where probe results are kept, outside results/ (they describe the machine, not the run):
    $HIDESEEK_CACHE, else $XDG_CACHE_HOME/hideseek, else ~/.cache/hideseek."""
    if os.environ.get("HIDESEEK_CACHE"):
        return Path(os.environ["HIDESEEK_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hideseek"


def _candidate_name(precision: str, channels_last: bool) -> str:
    return precision + ("+channels_last" if channels_last else "")


def measure_step_seconds(model, recipe: dict, n_classes: int, device, candidates) -> dict:
    """Seconds per training step (forward, backward, Adam) of `model` on a random batch at the
    recipe's input size and batch size, per (precision, channels_last) candidate: the best of
    :data:`PROBE_STEPS` after :data:`PROBE_WARMUP_STEPS`. The global RNG state is left as it
    was, so a probed run and a cached one train identically."""
    import copy
    import time

    import torch
    import torch.nn.functional as F

    size, batch = int(recipe["input_size"]), int(recipe["batch_size"])
    seconds = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        images = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8, device=device)
        labels = torch.randint(0, n_classes, (batch,), device=device)
        for precision, channels_last in candidates:
            perf = dict(device=str(device), precision=precision, channels_last=channels_last,
                        normalize=recipe.get("normalize", "none"))
            trial = copy.deepcopy(model).to(device, memory_format=torch.channels_last if channels_last
                                             else torch.preserve_format).train()
            optimizer, _ = make_optimizer(trial, recipe, device)
            times = []
            for step in range(PROBE_WARMUP_STEPS + PROBE_STEPS):
                started = time.perf_counter()
                with autocast(perf):
                    logits = trial(to_model_input(images, perf))
                loss = F.cross_entropy(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step >= PROBE_WARMUP_STEPS:
                    times.append(time.perf_counter() - started)
            seconds[_candidate_name(precision, channels_last)] = min(times)
            del trial, optimizer
    return seconds


def choose_candidate(seconds: dict, candidates) -> tuple[str, bool]:
    """The fastest candidate; a bf16 one only if it beats the fastest fp32 one by BF16_MIN_GAIN."""
    fastest = min(candidates, key=lambda c: seconds[_candidate_name(*c)])
    fp32 = [c for c in candidates if c[0] == "fp32"]
    if fastest[0] == "bf16" and fp32:
        best_fp32 = min(fp32, key=lambda c: seconds[_candidate_name(*c)])
        if seconds[_candidate_name(*fastest)] > (1 - BF16_MIN_GAIN) * seconds[_candidate_name(*best_fp32)]:
            return best_fp32
    return fastest


def _probe_key(arch: str, recipe: dict, n_classes: int, device) -> dict:
    import torch

    # oneDNN's ISA cap (e.g. ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16: AMX off) changes which is faster.
    onednn_isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "default"
    return dict(cpu=cpu_model(), torch=torch.__version__, threads=torch.get_num_threads(), device=str(device),
                onednn_max_cpu_isa=onednn_isa, arch=arch, input_size=int(recipe["input_size"]),
                batch_size=int(recipe["batch_size"]), width=recipe.get("width"), n_classes=int(n_classes))


def probed_settings(arch: str, model, recipe: dict, n_classes: int, device, candidates) -> dict:
    """The probe's choice among `candidates` for this machine and job, from the cache when this
    CPU, torch version, thread count, architecture, size and batch were measured before."""
    key = _probe_key(arch, recipe, n_classes, device)
    key["candidates"] = [_candidate_name(*c) for c in candidates]
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = probe_cache_dir() / "precision_probe" / f"{digest}.json"
    cached = _read_probe(path, key)
    if cached:
        return cached
    try:  # one job measures; a parallel job of the same kind waits for its result
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _read_probe(path, key) or _measure_and_cache(path, key, model, recipe, n_classes, device,
                                                                  candidates)
    except OSError as error:  # a read-only cache folder: measure, and again next time
        log.warning("precision probe cache %s not usable: %s", path.parent, error)
        return _measure_and_cache(None, key, model, recipe, n_classes, device, candidates)


def _read_probe(path: Path, key: dict) -> dict | None:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return dict(cached, source="cached", cache_file=str(path)) if cached.get("key") == key else None


def _measure_and_cache(path: Path | None, key: dict, model, recipe: dict, n_classes: int, device,
                       candidates) -> dict:
    seconds = measure_step_seconds(model, recipe, n_classes, device, candidates)
    precision, channels_last = choose_candidate(seconds, candidates)
    result = dict(key=key, step_seconds=seconds, precision=precision, channels_last=channels_last)
    log.info("precision probe for %s at %d px, batch %d on %s: %s -> %s", key["arch"], key["input_size"],
             key["batch_size"], key["cpu"], {k: round(v, 4) for k, v in seconds.items()},
             _candidate_name(precision, channels_last))
    if path is not None:
        from ..io import write_text_atomic

        write_text_atomic(path, json.dumps(result, indent=1) + "\n")
    return dict(result, source="measured", cache_file=str(path) if path else None)


def performance_settings(recipe: dict, device, probe=None) -> dict:
    """What the run uses: input normalisation, bf16 autocast, channels_last (recorded in the outputs).

    ``precision`` / ``channels_last`` ``auto``: on CUDA bf16 and channels_last; on the CPU the
    faster by measurement, when `probe` (``candidates -> probed_settings(...)``) is given — the
    training jobs give it —, else fp32 without channels_last (exact, never much slower)."""
    precision_options = ["fp32", "bf16"] if recipe["precision"] == "auto" else [recipe["precision"]]
    layout_options = [False, True] if recipe["channels_last"] == "auto" else [bool(recipe["channels_last"])]
    candidates = [(p, c) for p in precision_options for c in layout_options]
    choice = dict(source="forced" if len(candidates) == 1 else "default")
    if len(candidates) == 1:
        precision, channels_last = candidates[0]
    elif device.type == "cuda":
        precision = "bf16" if "bf16" in precision_options else precision_options[0]
        channels_last = True if True in layout_options else layout_options[0]
        choice["source"] = "cuda rule"
    elif probe is not None:
        choice = probe(candidates)
        precision, channels_last = choice["precision"], choice["channels_last"]
    else:
        precision, channels_last = precision_options[0], layout_options[0]
    # A model.pt written before the key existed was trained on [0, 1] inputs, i.e. "none".
    return dict(device=str(device), precision=precision, channels_last=bool(channels_last),
                cpu_fast_bf16=cpu_has_fast_bf16() if device.type == "cpu" else None,
                normalize=recipe.get("normalize", "none"),
                precision_choice=dict(source=choice["source"], step_seconds=choice.get("step_seconds"),
                                      cache_file=choice.get("cache_file")))


def inference_settings(info: dict, recipe: dict, device) -> dict:
    """The settings a trained model is evaluated with: the precision and memory format it was
    trained with (its train_info), when it runs on the same kind of device; else the rule of
    :func:`performance_settings` without a probe."""
    perf = performance_settings(recipe, device)
    if info.get("device", "").split(":")[0] == device.type and "precision" in info:
        perf.update(precision=info["precision"], channels_last=bool(info["channels_last"]),
                    precision_choice=dict(source="as trained"))
    return perf


def make_optimizer(model, recipe: dict, device):
    import torch

    kwargs = dict(lr=recipe["lr"], betas=tuple(recipe["betas"]), weight_decay=recipe["weight_decay"])
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs), True
    except (RuntimeError, TypeError) as error:  # fused Adam not supported on this device/build
        log.warning("fused Adam unavailable on %s (%s); using the foreach implementation", device, error)
        return torch.optim.Adam(model.parameters(), foreach=True, **kwargs), False


def to_model_input(batch_u8, perf: dict, augment_fn=None):
    """uint8 (B, S, S) on the device -> float (B, 3, S, S): values in [0, 1] (augmented there if
    asked, so the fill value stays black), then ImageNet mean/std per channel if
    ``perf["normalize"]`` is ``imagenet`` (what ImageNet-pretrained weights were trained on)."""
    import torch

    x = batch_u8.unsqueeze(1).float().div_(255.0)
    if augment_fn is not None:
        x = augment_fn(x)
    x = x.expand(-1, 3, -1, -1)
    if perf["normalize"] == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if perf["channels_last"] else torch.contiguous_format)


def autocast(perf: dict):
    import torch

    device_type = "cuda" if perf["device"].startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=perf["precision"] == "bf16")
