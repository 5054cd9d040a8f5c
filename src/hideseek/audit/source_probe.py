"""The source probe: the same architecture trained to predict the data source from each
representation, scored within each class. If the source is predictable with the lungs hidden,
the images say where they came from."""

from __future__ import annotations

import logging

import pandas as pd

from ..io import read_table, write_csv_atomic
from ..stats import bootstrap_weights, mean_ci
from ..vocabulary import CLASSES

log = logging.getLogger(__name__)


def probe_skip_reason(index: pd.DataFrame) -> str | None:
    """Why the source probe cannot run on this data (None if it can)."""
    if "source" not in index.columns or index["source"].isna().all():
        return "the data carry no source column"
    test = index[index["partition"] == "test"]
    per_class = test.dropna(subset=["source"]).groupby("label")["source"].nunique()
    if per_class.empty or (per_class < 2).all():
        return "every class's test images come from a single source"
    return None


def probe_rows(frame: pd.DataFrame, rep: str, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Within-class source accuracy of one probe's test predictions (columns true_class,
    source, predicted_source, patient_id) against the within-class majority baseline, and
    balanced accuracy (mean recall over the class's sources) against 1 / n_sources.

    A probe that only knew the class could do no better than the baseline within a class."""
    rows = []
    usable = []
    for cls in CLASSES:
        sub = frame[frame["true_class"] == cls]
        k = sub["source"].nunique()
        if k < 2:
            rows.append(dict(representation=rep, true_class=cls, n_images=len(sub), n_sources=int(k),
                             note="single source in this class: skipped"))
            continue
        usable.append(sub)
        rows.append(_probe_row(sub, rep, cls, n_boot, seed, level))
    if usable:
        rows.append(_probe_row(pd.concat(usable), rep, "all", n_boot, seed, level))
    return rows


def _probe_row(sub: pd.DataFrame, rep: str, cls: str, n_boot: int, seed: int, level: float) -> dict:
    correct = (sub["source"] == sub["predicted_source"]).to_numpy(dtype=float)
    weights = bootstrap_weights(sub["patient_id"], sub["true_class"], n_boot, seed)
    acc, lo, hi = mean_ci(correct, weights, level)
    # within-class majority baseline (per class, pooled over the classes in `sub`)
    majority = sub.groupby("true_class")["source"].transform(lambda s: s.value_counts().idxmax())
    baseline = float((sub["source"] == majority).mean())
    recalls = sub.assign(c=correct).groupby(["true_class", "source"])["c"].mean()
    balanced = float(recalls.groupby(level=0).mean().mean())
    chance_bal = float((1.0 / sub.groupby("true_class")["source"].nunique()).mean())
    return dict(representation=rep, true_class=cls, n_images=len(sub), n_sources=int(sub["source"].nunique()),
                accuracy=acc, ci_low=lo, ci_high=hi, baseline=baseline, above_baseline=bool(lo > baseline),
                balanced_accuracy=balanced, balanced_chance=chance_bal, note="")


def run_source_probe(arch: str, recipe: dict, stores: dict, *, seed: int = 0, device: str = "auto",
                     threads: int = 1, n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95,
                     checkpoint_root=None) -> pd.DataFrame:
    """For each representation (`stores`: rep -> (pixels, index)), train `arch` to predict the
    data source (:func:`hideseek.classification.training.train_classifier`; sources as the
    targets, a source-balanced sampler), then score it within each class on the test images."""
    import tempfile

    import torch

    from ..classification import inputs, prediction, training
    from ..classification.models import build_model
    from ..classification.performance import inference_settings
    from ..devices import resolve_device

    rows = []
    for rep, (pixels, index_path) in stores.items():
        index = read_table(index_path)
        sources = sorted(index["source"].dropna().astype(str).unique())
        code = {s: i for i, s in enumerate(sources)}
        splits = {}
        for part in ("train", "val", "test"):
            split = inputs.load_split(pixels, index_path, part, recipe["input_size"],
                                        per_class=recipe.get("train_images_per_class") if part == "train" else None)
            keep = split.frame["source"].notna().to_numpy(copy=True)  # writable: torch shares its memory
            split.images = split.images[torch.from_numpy(keep)]
            split.frame = split.frame[keep].reset_index(drop=True)
            split.labels = torch.tensor([code[s] for s in split.frame["source"].astype(str)], dtype=torch.int64)
            splits[part] = split
        probe_recipe = dict(recipe, class_weights=[1.0] * len(sources), sampler="balanced")
        ckpt = checkpoint_root or tempfile.mkdtemp(prefix="source_probe_")
        # The sources are the labels: one output, one history column and one share of the
        # selection's balanced accuracy each, however many there are.
        result = training.train_classifier(arch, probe_recipe, splits["train"], splits["val"], seed,
                                           f"{ckpt}/{rep}", device=device, threads=threads, labels=sources,
                                           progress=False, checkpoint_every=0)
        log.info("source probe on %s, selected epoch %d:\n%s", rep, result.best_epoch, result.history.to_string())
        model = build_model(arch, num_classes=len(sources), width=probe_recipe["width"])
        model.load_state_dict(result.best_state)
        dev = resolve_device(device, "classification.device")
        perf = inference_settings(result.info, probe_recipe, dev)  # as it was trained
        model = model.to(dev, memory_format=torch.channels_last if perf["channels_last"] else torch.preserve_format)
        test = splits["test"]
        predicted = prediction.predict_logits(model, test.images, perf, probe_recipe["eval_batch_size"]).argmax(1).numpy()
        frame = pd.DataFrame(dict(true_class=test.frame["label"], source=test.frame["source"].astype(str),
                                  predicted_source=[sources[i] for i in predicted], patient_id=test.frame["patient_id"]))
        rows += probe_rows(frame, rep, n_boot, boot_seed, level)
    return pd.DataFrame(rows)


def representation_stores(files, reps) -> dict:
    """rep -> (pixels, index) from a rule's named inputs ``pixels_{rep}`` and ``index_{rep}``."""
    return {rep: (files[f"pixels_{rep}"], files[f"index_{rep}"]) for rep in reps}


def skipped_probe_table(reps, reason: str) -> pd.DataFrame:
    """The probe table when the probe cannot run: one ``all`` row per representation saying why."""
    return pd.DataFrame([dict(representation=rep, true_class="all", note=f"skipped: {reason}") for rep in reps])


def write_source_probe(arch: str, recipe: dict, files, reps, out_csv, *, seed: int = 0, device: str = "auto",
                       threads: int = 1, n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95,
                       checkpoint_root=None) -> pd.DataFrame:
    """source_probe.csv: :func:`run_source_probe` on `reps`, or the skipped table when the data
    cannot support a probe (:func:`probe_skip_reason` on the first representation's index)."""
    stores = representation_stores(files, reps)
    reason = probe_skip_reason(read_table(stores[reps[0]][1]))
    if reason:
        log.warning("source probe skipped: %s", reason)
        table = skipped_probe_table(reps, reason)
    else:
        table = run_source_probe(arch, recipe, stores, seed=seed, device=device, threads=threads, n_boot=n_boot,
                                 boot_seed=boot_seed, level=level, checkpoint_root=checkpoint_root)
    table.insert(0, "arch", arch)
    write_csv_atomic(table, out_csv)
    log.info("source probe:\n%s", table.to_string())
    return table
