"""Resumable training checkpoints, one format for every training in the workflow.

A checkpoint is a dict of tensors, numbers, strings and lists (loadable with
``torch.load(..., weights_only=True)``) carrying ``format``, a ``fingerprint`` of what the run
depends on (recipe, data, seed) and whatever the training needs to resume: model, optimizer,
epoch, history, best-so-far weights and the RNG states (:func:`rng_state`). :func:`load` returns
``None`` for a missing, cut-short (killed mid-write), foreign or stale file, so a training then
starts afresh. Checkpoints live outside the rules' declared outputs: Snakemake deletes those when
a job fails, and a resumed job needs them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "hideseek-checkpoint-2"


def rng_state(generators: dict | None = None) -> dict:
    """The global RNG states (torch, CUDA, numpy, Python) and those of named torch Generators."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        python=[version, list(internal), gauss_next],
        generators={key: gen.get_state() for key, gen in (generators or {}).items()},
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict | None = None) -> None:
    """Restore what :func:`rng_state` saved (the named Generators in place)."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    for key, gen in (generators or {}).items():
        gen.set_state(state["generators"][key])


def save(path: str | Path, payload: dict) -> None:
    """Write `payload` (with ``format`` added) atomically: a kill mid-write leaves the last one."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load(path: str | Path, fingerprint: str) -> dict | None:
    """The checkpoint at `path` if it is readable, ours and of the run `fingerprint`; else None."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a file cut short by a kill: start again
        log.warning("ignoring unreadable checkpoint %s (%s)", path, error)
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to another run (recipe, data or seed changed)", path)
        return None
    return payload


def snapshot(obj):
    """A deep copy whose tensors are detached CPU clones (safe to write while training goes on)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = {k: snapshot(v) for k, v in obj.items()}
        if isinstance(obj, OrderedDict):  # a module state_dict: keep its version metadata
            out = OrderedDict(out)
            if hasattr(obj, "_metadata"):
                out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints in a background thread, one at a time, atomically.

    Writing VGG-11's checkpoint (weights + Adam state, ~1.5 GB) takes seconds to tens of
    seconds on a busy disk; training goes on meanwhile from a snapshot taken in memory. `wait`
    blocks until the last write is on disk and re-raises its error, if any.
    """

    def __init__(self):
        self._thread = None
        self._error = None

    def save(self, path: Path, payload: dict) -> None:
        self.wait()

        def run():
            try:
                save(path, payload)
            except BaseException as error:  # noqa: BLE001 - re-raised by wait()
                self._error = error

        self._thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
