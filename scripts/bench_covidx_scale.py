#!/usr/bin/env python
"""Paper scale on this machine, by simulation: a synthetic COVIDx5-sized tree, ingested, dry-run,
and one 480 px training job's start-up and peak memory.

    .venv/bin/python scripts/bench_covidx_scale.py --train 1400 --test 300 --full-startup
    .venv/bin/python scripts/bench_covidx_scale.py                  # all 13,958 + 300 images

1. Writes, with 2 processes, a COVIDx5-like tree under --out (default: a new temporary folder,
   removed at the end unless --keep): ``images/`` and ``train_COVIDx5.txt`` / ``test_COVIDx5.txt``
   (``patient_id filename label [source]``), the class mix of COVIDx5 (7966 / 5475 / 517 and
   100 / 100 / 100), RSNA uuid names (the test set's RSNA lines without a source column, as in
   COVIDx5), ``covid-19-pneumonia-...`` (cohen), ``COVID-00...`` (fig1), ``ACTMED-...``,
   ``COVID-19(...)`` (sirm); sizes like the collections': RSNA 1024 x 1024, hospital DR
   ~2000 x 2500 and ~3000 x 2500, small ~500 x 600 figures; 8-bit PNG, a few 12-bit values in
   16-bit PNGs; smooth gradients + Gaussian noise (sigma 1.5 gray levels), which compresses
   like a radiograph (~0.46 byte per pixel), not like pure noise or a flat image. Free disk is
   checked first.
2. Measures, each step in its own process: ingestion into the image store
   (:func:`hideseek.data.ingest.ingest_classification_data`, store long side 522 = 480 / 0.92,
   2 threads, the shipped config's checks), the Snakemake dry run of the whole workflow on a
   config pointing at the tree, and one training job's start-up on that store at 480 px:
   loading the train and val partitions (:func:`hideseek.classification.inputs.load_split`),
   their fingerprints, building COVID-Net CXR4-A at width 1.0 and its Adam optimizer (its state
   allocated by one zero-gradient step, which moves no weight; nothing is trained). Its peak RSS
   is compared with the store's size + the 480 px tensors + weights, gradients and Adam's two
   moments + 2 GB.
3. Below full scale, extrapolates ingestion and the tree to COVIDx5's 14,258 images, linearly in
   the pixels written and decoded (labelled so). The dry run is also measured at COVIDx5's full line count (the split files
   repeated onto hard links of the written images: a dry run reads names, not pixels), and with
   --full-startup the start-up is measured on a full-count store (the measured store's images
   repeated to COVIDx5's partition sizes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CLASSES = ("normal", "pneumonia", "COVID-19")
FULL_TRAIN = dict(zip(CLASSES, (7966, 5475, 517)))  # train_COVIDx5.txt
FULL_TEST = dict(zip(CLASSES, (100, 100, 100)))  # test_COVIDx5.txt
FULL_IMAGES = sum(FULL_TRAIN.values()) + sum(FULL_TEST.values())
# Where each class's images come from (shares), roughly as in COVIDx5.
SOURCES = {
    "train": {"normal": {"rsna": 1.0}, "pneumonia": {"rsna": 0.995, "cohen": 0.005},
              "COVID-19": {"cohen": 0.55, "sirm": 0.28, "actmed": 0.10, "fig1": 0.07}},
    "test": {"normal": {"rsna": 1.0}, "pneumonia": {"rsna": 0.96, "cohen": 0.04},
             "COVID-19": {"cohen": 0.40, "sirm": 0.40, "actmed": 0.10, "fig1": 0.10}},
}
# (width, height) of each kind of image, before jitter, and the share of 16-bit PNGs per source.
SIZES = {"rsna": [(1024, 1024)], "cohen": [(500, 600), (2000, 2500), (3000, 2500)],
         "actmed": [(2000, 2500)], "fig1": [(3000, 2500)], "sirm": [(500, 600), (1024, 1024)]}
SIXTEEN_BIT = {"cohen": 0.05, "actmed": 0.10}
PATIENT_PREFIX = {"cohen": "", "fig1": "COVID-", "actmed": "actmed-", "sirm": "sirm-"}
# Bytes per pixel on disk (measured for this content at PNG level 1: 0.46 and 1.27), with room.
DISK_BYTES_PER_PIXEL = {8: 0.55, 16: 1.5}
STORE_LONG_SIDE = 522  # 480 / 0.92: the store a 480 px COVID-Net needs
INPUT_SIZE = 480
GB = 1e9


# ---------------------------------------------------------------------------------------------
# 1. The synthetic tree


def class_counts(total: int, full: dict, minimum: int) -> dict:
    """`total` images split like `full` (largest remainders), each class at least `minimum`."""
    shares = {label: total * n / sum(full.values()) for label, n in full.items()}
    counts = {label: max(minimum, math.floor(share)) for label, share in shares.items()}
    while sum(counts.values()) > total and max(counts.values()) > minimum:  # the minimums came from the largest
        counts[max(counts, key=counts.get)] -= 1
    for label in sorted(shares, key=lambda k: shares[k] - math.floor(shares[k]), reverse=True):
        if sum(counts.values()) >= total:
            break
        counts[label] += 1
    return counts


def _take(shares: dict, n: int, rng) -> list[str]:
    """`n` source names drawn in the given shares (rounded, the rest by chance)."""
    names = [source for source, share in shares.items() for _ in range(int(share * n))]
    names += list(rng.choice(list(shares), size=n - len(names), p=list(shares.values())))
    return [str(name) for name in rng.permutation(names)]


def plan_tree(n_train: int, n_test: int, size_scale: float, seed: int = 0) -> list[dict]:
    """One dict per image: split, line fields (patient, name, label, source or None), size, depth, seed."""
    rng = np.random.default_rng(seed)
    counters = dict.fromkeys(("cohen", "fig1", "actmed", "sirm", "patient"), 0)
    specs = []
    for split, total, full, minimum in (("train", n_train, FULL_TRAIN, 4), ("test", n_test, FULL_TEST, 1)):
        for label, count in class_counts(total, full, minimum).items():
            sources = _take(SOURCES[split][label], count, rng)
            current = {}  # source -> [patient, images it still gets]; patients stay in one split and class
            for source in sources:
                if source == "rsna":  # RSNA: one image per patient, the uuid is both
                    name = f"{uuid.UUID(bytes=rng.bytes(16), version=4)}.png"
                    patient = name[:-4]
                else:
                    counters[source] += 1
                    k = counters[source]
                    if current.get(source, [None, 0])[1] == 0:  # ~1.35 images per patient (COVIDx5: 100 from 74)
                        counters["patient"] += 1
                        current[source] = [f"{PATIENT_PREFIX[source]}{counters['patient']}",
                                           1 + int(rng.random() < 0.35)]
                    current[source][1] -= 1
                    patient = current[source][0]
                    name = {"cohen": f"covid-19-pneumonia-{k}-PA.png", "fig1": f"COVID-{k:05d}.png",
                            "actmed": f"ACTMED-COVID-{k:04d}.png", "sirm": f"COVID-19({k}).png"}[source]
                width, height = SIZES[source][rng.integers(len(SIZES[source]))]
                jitter = 1.0 if source == "rsna" else rng.uniform(0.92, 1.08, size=2)
                width, height = (max(16, round(s * size_scale * j)) for s, j in zip((width, height), np.broadcast_to(jitter, 2)))
                bits = 16 if rng.random() < SIXTEEN_BIT.get(source, 0.0) else 8
                # The test set's RSNA lines have no source column (COVIDx5): source_rules name them.
                column = None if (split == "test" and source == "rsna") else source
                specs.append(dict(split=split, patient=patient, name=name, label=label, source=column,
                                  width=int(width), height=int(height), bits=bits, seed=len(specs) + 1000 * seed))
    return specs


def radiograph(height: int, width: int, bits: int, seed: int) -> np.ndarray:
    """Smooth anatomy-like gradients (body, two darker lungs, a random low-frequency field, a
    vertical ramp) plus Gaussian noise of 1.5 gray levels: compresses like a radiograph."""
    import cv2

    rng = np.random.default_rng(seed)
    sh, sw = max(8, height // 8), max(8, width // 8)
    yy, xx = (a.astype(np.float32) for a in np.mgrid[0:sh, 0:sw])
    yy, xx = yy / sh, xx / sw
    lungs = sum(np.exp(-((xx - cx) / 0.16) ** 2 - ((yy - 0.48) / 0.28) ** 2)
                for cx in (0.3 + rng.normal(0, 0.02), 0.7 + rng.normal(0, 0.02)))
    field = cv2.resize(rng.random((6, 6)).astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC)
    body = np.exp(-((xx - 0.5) / 0.45) ** 4)
    small = (0.15 + 0.6 * body - 0.35 * lungs + 0.12 * field + 0.15 * yy).astype(np.float32)
    full = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    peak = 4095 if bits == 16 else 255  # 16-bit files hold 12-bit values, like many scanners
    image = full * peak + rng.standard_normal((height, width), dtype=np.float32) * (1.5 * peak / 255)
    return np.clip(image, 0, peak).astype(np.uint16 if bits == 16 else np.uint8)


def _write_one(job: tuple[str, dict]) -> int:
    import cv2

    folder, spec = job
    path = os.path.join(folder, spec["name"])
    ok, encoded = cv2.imencode(".png", radiograph(spec["height"], spec["width"], spec["bits"], spec["seed"]),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    encoded.tofile(path)
    return encoded.size


def split_lines(specs: list[dict], split: str) -> str:
    fields = ([s["patient"], s["name"], s["label"]] + ([s["source"]] if s["source"] else []) for s in specs
              if s["split"] == split)
    return "".join(" ".join(f) + "\n" for f in fields)


def write_tree(root: Path, specs: list[dict], workers: int) -> dict:
    """Images and split files under `root`; returns the paths, bytes on disk and seconds."""
    from tqdm import tqdm

    images = root / "images"
    images.mkdir(parents=True)
    start, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    with Pool(workers) as pool:
        jobs = ((str(images), spec) for spec in specs)
        sizes = list(tqdm(pool.imap_unordered(_write_one, jobs, chunksize=4), total=len(specs),
                          desc="writing synthetic images", unit="img", mininterval=5.0))
    paths = dict(image_dir=images, train_split=root / "train_COVIDx5.txt", test_split=root / "test_COVIDx5.txt")
    paths["train_split"].write_text(split_lines(specs, "train"))
    paths["test_split"].write_text(split_lines(specs, "test"))
    return dict(paths=paths, seconds=time.perf_counter() - start, bytes=disk_usage(root), images=len(sizes),
                cpu_seconds=cpu_seconds(resource.RUSAGE_CHILDREN) - cpu)


def disk_usage(path: Path) -> int:
    """Bytes the files under `path` take on disk (allocated blocks, like du)."""
    return sum(entry.stat().st_blocks * 512 for entry in Path(path).rglob("*") if entry.is_file())


def pixels(specs: list[dict]) -> int:
    return sum(s["width"] * s["height"] for s in specs)


def store_bytes(specs: list[dict], long_side: int) -> int:
    return int(sum(s["width"] * s["height"] * min(1.0, long_side / max(s["width"], s["height"])) ** 2
                   for s in specs))


def check_disk(root: Path, specs: list[dict], long_side: int, full_startup_bytes: int) -> int:
    """Refuse (exit) when the tree, the store (written twice while ingesting) and the full-count
    store would not fit on the file system of `root`; returns the estimate in bytes."""
    tree = sum(s["width"] * s["height"] * DISK_BYTES_PER_PIXEL[s["bits"]] for s in specs)
    need = int(tree + 2 * store_bytes(specs, long_side) + full_startup_bytes + 0.5 * GB)
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    df = subprocess.run(["df", "-h", str(probe)], capture_output=True, text=True).stdout.strip()
    if need > free:
        sys.exit(f"not enough disk under {probe}: this run needs about {need / GB:.1f} GB (images "
                 f"{tree / GB:.1f} GB, store and its copies), {free / GB:.1f} GB are free:\n{df}\n"
                 "Pass --out on a larger file system, or scale down with --train / --test / --size-scale.")
    return need


# ---------------------------------------------------------------------------------------------
# 2. The measurements, each in a fresh process (python this_script --phase NAME --spec JSON)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def cpu_seconds(who=resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (all its threads), or of its ended children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def validated_config(tree: dict, long_side: int) -> dict:
    """The shipped config with the tree as classification data, schema-checked (defaults filled)."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["classification_data"].update(kind="covidx", **{k: str(v) for k, v in tree.items()})
    config["store"]["long_side"] = long_side
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def phase_ingest(spec: dict) -> dict:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from hideseek.data.ingest import ingest_classification_data

    config = validated_config(spec["tree"], spec["long_side"])
    store = Path(spec["store"])
    start = time.perf_counter()
    index = ingest_classification_data(
        config["classification_data"], spec["long_side"], image_dir=spec["tree"]["image_dir"],
        train_split=spec["tree"]["train_split"], test_split=spec["tree"]["test_split"],
        out_index=store / "index.csv", out_pixels=store / "pixels.npy", out_dropped=store / "dropped_lines.csv",
        out_report=store / "ingest_report.md", out_duplicates=store / "duplicates.csv", threads=spec["threads"],
        bits_stored=config["store"]["bits_stored"])
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, cpu_seconds=cpu_seconds(), images=len(index),
                store_bytes=os.path.getsize(store / "pixels.npy"),
                partitions=index["partition"].value_counts().to_dict(), peak_rss=_peak_rss_bytes())


def phase_startup(spec: dict) -> dict:
    """One training job's start-up: what run_training_job and _new_run do before the first step."""
    marks = [("start", time.perf_counter())]
    import torch

    torch.set_num_threads(spec["threads"])
    from hideseek.classification.inputs import load_split, split_fingerprint
    from hideseek.classification.models import build_model
    from hideseek.classification.performance import make_optimizer

    marks.append(("imports", time.perf_counter()))
    pixels, index = spec["store"] + "/pixels.npy", spec["store"] + "/index.csv"
    train = load_split(pixels, index, "train", spec["input_size"])
    val = load_split(pixels, index, "val", spec["input_size"])
    marks.append(("load_split", time.perf_counter()))
    split_fingerprint(train), split_fingerprint(val)
    marks.append(("fingerprint", time.perf_counter()))
    model = build_model("covidnet_cxr4a", num_classes=3, width=spec.get("width", 1.0))
    optimizer, _ = make_optimizer(model, dict(lr=2e-4, betas=(0.9, 0.999), weight_decay=0.0), torch.device("cpu"))
    for parameter in model.parameters():  # gradients and Adam's moments exist from the first step on
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()  # zero gradients: Adam's update is 0 / (0 + eps) = 0, no weight moves
    marks.append(("model+optimizer", time.perf_counter()))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(phases={b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}, seconds=marks[-1][1] - marks[0][1],
                train_images=len(train), val_images=len(val), tensor_bytes=train.images.numel() + val.images.numel(),
                param_bytes=params, store_bytes=os.path.getsize(pixels), peak_rss=_peak_rss_bytes(),
                cpu_seconds=cpu_seconds(),
                threads=spec["threads"])


def run_phase(name: str, spec: dict, log_path: Path) -> dict:
    """Run a phase in a fresh Python; its log (stderr) goes to `log_path`; returns its JSON result."""
    with open(log_path, "w") as log:
        done = subprocess.run([sys.executable, __file__, "--phase", name, "--spec", json.dumps(spec, default=str)],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    if done.returncode != 0:
        sys.exit(f"the {name} step failed (exit {done.returncode}); its log: {log_path}\n"
                 + log_path.read_text()[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def dry_run(tree: dict, workdir: Path, long_side: int, log_path: Path) -> dict:
    """`snakemake -n` of the whole workflow on a config pointing at the tree: seconds and jobs."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    mine = workdir / "covidx_scale.yaml"
    mine.write_text(yaml.safe_dump({
        "classification_data": {"kind": "covidx", "on_missing": "drop", **{k: str(v) for k, v in tree.items()}},
        "store": {"long_side": long_side}}))
    command = [str(Path(sys.executable).parent / "snakemake"), "-n", "--cores", "2", "-s", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(REPO / "config" / "config.yaml"), str(mine)]
    start, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"the dry run failed (exit {done.returncode}); its log: {log_path}\n{done.stderr[-3000:]}")
    jobs = re.search(r"^total\s+(\d+)$", done.stdout, re.M)
    return dict(seconds=seconds, cpu_seconds=cpu, jobs=int(jobs.group(1)) if jobs else None)


def full_count_tree(tree: dict, root: Path) -> dict:
    """COVIDx5's line count on hard links: each split file's lines repeated (new names, fresh
    patients) until it has COVIDx5's lines; every name a hard link of a written image."""
    images = root / "images"
    images.mkdir(parents=True)
    out = dict(image_dir=images)
    for key, full in (("train_split", FULL_TRAIN), ("test_split", FULL_TEST)):
        lines = Path(tree[key]).read_text().splitlines()
        target, written = sum(full.values()), []
        for k in range(target):
            fields = lines[k % len(lines)].split()
            copy = k // len(lines)
            name = fields[1] if copy == 0 else f"r{copy}_{fields[1]}"
            os.link(Path(tree["image_dir"]) / fields[1], images / name)
            written.append(" ".join([fields[0] if copy == 0 else f"r{copy}_{fields[0]}", name, *fields[2:]]))
        out[key] = root / Path(tree[key]).name
        out[key].write_text("\n".join(written) + "\n")
    return out


def full_count_store(store: Path, out: Path, factors: dict) -> None:
    """A store with each partition's images repeated to `factors[partition]` times as many (new image ids)."""
    from hideseek.data.store import ImageStore, write_derived_store

    source = ImageStore(store / "pixels.npy", store / "index.csv")
    picks = []
    for partition, rows in source.index.groupby("partition", sort=False):
        picks.append(np.resize(rows.index.to_numpy(), round(len(rows) * factors[partition])))
    rows = np.sort(np.concatenate(picks), kind="stable")
    index = source.index.iloc[rows].reset_index(drop=True)
    index["image_id"] = [f"{image_id}#{k}" for k, image_id in enumerate(index["image_id"])]
    sizes = (index["height"] * index["width"]).to_numpy(np.int64)
    index["offset"] = np.cumsum(sizes) - sizes
    out.mkdir(parents=True, exist_ok=True)
    write_derived_store(index, (source[int(r)] for r in rows), out / "pixels.npy", out / "index.csv",
                        progress=True, desc="writing the full-count store")


# ---------------------------------------------------------------------------------------------
# 3. The report


def available_memory() -> int:
    """MemAvailable (/proc/meminfo) in bytes; 0 when unknown."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0
    found = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else 0


def cpu_line() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"CPU: unknown (no lscpu), {os.cpu_count()} cores"
    model = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    flags = set(re.search(r"^Flags:\s*(.+)$", lscpu, re.M).group(1).split()) if "Flags:" in lscpu else set()
    amx = sorted(f for f in flags if f.startswith("amx"))
    return (f"CPU: {model.group(1).strip() if model else '?'}, {os.cpu_count()} cores; avx512f "
            f"{'yes' if 'avx512f' in flags else 'no'}, avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}, "
            f"amx {' '.join(amx) if amx else 'no'}; load average at start {os.getloadavg()[0]:.1f}")


def gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def budget(startup: dict) -> float:
    """Store + 480 px tensors + weights, gradients and Adam's two moments + 2 GB."""
    return startup["store_bytes"] + startup["tensor_bytes"] + 4 * startup["param_bytes"] + 2 * GB


def startup_cell(s: dict) -> str:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in s["phases"].items())
    return (f"{s['seconds']:.1f} s, CPU {s['cpu_seconds']:.0f} s ({phases}); {s['train_images']} train + "
            f"{s['val_images']} val images")


def rss_cell(s: dict) -> str:
    within = "within" if s["peak_rss"] <= budget(s) else "NOT within"
    return (f"{gb(s['peak_rss'])} vs budget {gb(budget(s))} (store {gb(s['store_bytes'])} + tensors "
            f"{gb(s['tensor_bytes'])} + 4 x model {gb(s['param_bytes'])} + 2 GB): {within}")


def report(args, cpu: str, tree: dict, ingest: dict, dry: dict, dry_full: dict | None, startup: dict,
           startup_full: dict | None, scale: float) -> str:
    """The table; `scale`: COVIDx5's pixels over the measured tree's (the linear extrapolation).
    Wall seconds depend on what else runs; CPU seconds (all threads and processes) less so."""
    n = tree["images"]
    full = n >= FULL_IMAGES
    linear = "(extrapolated, linear in pixels)"
    ingest_rate = ingest["images"] / ingest["seconds"]
    rows = [
        ("tree written (2 processes)",
         f"{tree['seconds']:.0f} s, CPU {tree['cpu_seconds']:.0f} s, {gb(tree['bytes'])} on disk",
         "as measured" if full else
         f"{tree['seconds'] * scale:.0f} s, CPU {tree['cpu_seconds'] * scale:.0f} s, {gb(tree['bytes'] * scale)} {linear}"),
        (f"ingest (store long side {args.long_side}, {args.threads} threads)",
         f"{ingest['seconds']:.1f} s, {ingest_rate:.1f} images/s, CPU {ingest['cpu_seconds']:.0f} s "
         f"({ingest['images'] / ingest['cpu_seconds']:.1f} images per CPU s), store {gb(ingest['store_bytes'])}, "
         f"peak RSS {gb(ingest['peak_rss'])}",
         "as measured" if full else
         f"{ingest['seconds'] * scale:.0f} s ({ingest['seconds'] * scale / 60:.1f} min), CPU "
         f"{ingest['cpu_seconds'] * scale:.0f} s, store {gb(ingest['store_bytes'] * scale)} {linear}"),
        ("dry run (whole workflow)", f"{dry['seconds']:.1f} s, CPU {dry['cpu_seconds']:.0f} s, {dry['jobs']} jobs",
         "as measured" if full else
         f"{dry_full['seconds']:.1f} s, CPU {dry_full['cpu_seconds']:.0f} s, {dry_full['jobs']} jobs "
         f"(measured, {FULL_IMAGES:,} lines on hard links)"),
        (f"training start-up at {args.input_size} px (CXR4-A, width {args.width})", startup_cell(startup),
         "as measured" if full else startup_cell(startup_full) + " (measured, full-count store)" if startup_full
         else "not measured (--full-startup)"),
        ("peak RSS of that start-up", rss_cell(startup),
         "as measured" if full else rss_cell(startup_full) + " (measured, full-count store)" if startup_full
         else "not measured (--full-startup)"),
    ]
    head = f"| figure | measured, {n:,} images | COVIDx5 scale, {FULL_IMAGES:,} images |"
    lines = [cpu, "", head, "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--train", type=int, default=sum(FULL_TRAIN.values()), help="training lines (13958)")
    parser.add_argument("--test", type=int, default=sum(FULL_TEST.values()), help="test lines (300)")
    parser.add_argument("--size-scale", type=float, default=1.0, help="image sides x this (1.0: real-like sizes)")
    parser.add_argument("--out", type=Path, help="where the tree goes (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep --out's tree and stores afterwards")
    parser.add_argument("--workers", type=int, default=2, help="processes writing the images (2)")
    parser.add_argument("--threads", type=int, default=2, help="ingest decoding threads, torch threads (2)")
    parser.add_argument("--long-side", type=int, default=STORE_LONG_SIDE, help="store long side (522 = 480 / 0.92)")
    parser.add_argument("--input-size", type=int, default=INPUT_SIZE, help="classifier input (480)")
    parser.add_argument("--width", type=float, default=1.0, help="CXR4-A width in the start-up (1.0: the paper's)")
    parser.add_argument("--full-startup", action="store_true",
                        help="also measure the start-up on a store of COVIDx5's size (below full scale)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.phase:  # a measurement in its own process
        print(json.dumps(dict(ingest=phase_ingest, startup=phase_startup)[args.phase](json.loads(args.spec))))
        return
    out = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="covidx_scale_"))
    if out.is_relative_to(REPO):
        sys.exit(f"--out {out} is inside the repository: pass a folder outside it (default: a temporary folder)")
    if (out / "tree").exists():
        sys.exit(f"{out / 'tree'} exists already: pass a fresh --out")
    specs = plan_tree(args.train, args.test, args.size_scale)
    full = len(specs) < FULL_IMAGES
    full_store = store_bytes(specs, args.long_side) * FULL_IMAGES / len(specs) if args.full_startup and full else 0
    need = check_disk(out, specs, args.long_side, full_store)
    cpu = cpu_line()
    print(cpu, flush=True)
    print(f"writing {len(specs):,} images ({args.train} train + {args.test} test lines) under {out} "
          f"(about {need / GB:.1f} GB with the stores)", flush=True)
    try:
        tree = write_tree(out / "tree", specs, args.workers)
        print(f"tree: {tree['images']} images, {gb(tree['bytes'])} in {tree['seconds']:.0f} s", flush=True)
        spec = dict(tree=tree["paths"], long_side=args.long_side, threads=args.threads, input_size=args.input_size, width=args.width,
                    store=str(out / "store"))
        ingest = run_phase("ingest", spec, out / "ingest.log")
        print(f"ingest: {ingest['images']} images in {ingest['seconds']:.1f} s", flush=True)
        dry = dry_run(tree["paths"], out / "workdir", args.long_side, out / "dry_run.log")
        print(f"dry run: {dry['seconds']:.1f} s", flush=True)
        dry_full = startup_full = None
        if full:
            dry_full = dry_run(full_count_tree(tree["paths"], out / "tree_full_count"), out / "workdir_full",
                               args.long_side, out / "dry_run_full.log")
            print(f"dry run at full line count: {dry_full['seconds']:.1f} s", flush=True)
        startup = run_phase("startup", spec, out / "startup.log")
        print(f"start-up: {startup['seconds']:.1f} s", flush=True)
        if args.full_startup and full:
            shutil.rmtree(out / "tree_full_count", ignore_errors=True)
            factor_train, factor_test = sum(FULL_TRAIN.values()) / args.train, sum(FULL_TEST.values()) / args.test
            memory = (startup["store_bytes"] + startup["tensor_bytes"]) * factor_train + 2 * GB
            if memory > available_memory():
                print(f"full-count start-up not measured: it needs about {gb(memory)} of memory, "
                      f"{gb(available_memory())} are available", flush=True)
            else:
                full_count_store(out / "store", out / "store_full_count",
                                 dict(train=factor_train, val=factor_train, test=factor_test))
                startup_full = run_phase("startup", dict(spec, store=str(out / "store_full_count")),
                                         out / "startup_full.log")
        print()
        scale = pixels(plan_tree(sum(FULL_TRAIN.values()), sum(FULL_TEST.values()), args.size_scale)) / pixels(specs)
        print(report(args, cpu, tree, ingest, dry, dry_full, startup, startup_full, scale))
        print(f"\ncommand: {' '.join([Path(sys.executable).name, 'scripts/bench_covidx_scale.py', *(argv or sys.argv[1:])])}")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
