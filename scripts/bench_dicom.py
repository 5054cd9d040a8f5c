#!/usr/bin/env python
"""DICOM decoding speed on this machine: images/s through ingestion's own path, by transfer syntax.

    .venv/bin/python scripts/bench_dicom.py                      # 1,000 images at 2,000 px, 2 threads
    .venv/bin/python scripts/bench_dicom.py --n 200 --threads 1

A few distinct 12-bit radiographs at ``--long-side`` px (shared real radiographs upsampled, with
detector-like noise so that JPEG 2000 has something to code) are written as DICOM in each
syntax (uncompressed; JPEG 2000 lossless through pylibjpeg-openjpeg; RLE with ``--syntaxes``),
then ``--n`` images are decoded, cycling through them, by
:func:`hideseek.data.store.write_store`: the DICOM pipeline (modality LUT, window, MONOCHROME1),
the resize to ``store.long_side`` and the store written, in ``--threads`` workers (processes,
for DICOM), as rule ``ingest`` does. Prints images/s per syntax (and the single-thread decode
alone), images per CPU-second of this process and its workers, and the load average (other jobs
on the cores slow the first figure, not the second), with the CPU model from ``lscpu``. Nothing
is kept: everything lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from hideseek.data.decode import decode_gray, read_gray  # noqa: E402
from hideseek.data.store import write_store  # noqa: E402
from hideseek.resize import resize  # noqa: E402

SHARED = Path(os.environ.get("HIDESEEK_SHARED_REAL", REPO.parent / "shared" / "data" / "real"))
SYNTAXES = {"uncompressed": None, "j2k": "JPEG2000Lossless", "rle": "RLELossless"}


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"lscpu not available, {os.cpu_count()} CPUs"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (write_store decodes DICOM in processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def radiographs(count: int, long_side: int, seed: int = 0) -> list[np.ndarray]:
    """`count` 12-bit images, height `long_side`, width 0.8 of it, from the shared real radiographs."""
    sources = sorted((SHARED / "seg" / "images").glob("*.png"))
    if not sources:
        sys.exit(f"no shared radiographs under {SHARED}/seg/images (set HIDESEEK_SHARED_REAL)")
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        gray = read_gray(sources[index % len(sources)]).astype(np.float32) * (4095 / 255)
        big = resize(gray, long_side, int(long_side * 0.8))
        images.append(np.clip(np.rint(big + rng.normal(0, 12, big.shape)), 0, 4095).astype(np.uint16))
    return images


def write_dicom(path: Path, stored: np.ndarray, syntax: str | None) -> None:
    import pydicom.uid
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PhotometricInterpretation = "DX", "bench", "MONOCHROME1"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 3500
    ds.PixelData = (4095 - stored).astype(np.uint16).tobytes()
    if syntax:
        ds.compress(getattr(pydicom.uid, syntax))
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images decoded per syntax (default 1000)")
    parser.add_argument("--long-side", type=int, default=2000, help="DICOM long side in px (default 2000)")
    parser.add_argument("--distinct", type=int, default=8, help="distinct files per syntax, cycled (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="decoding workers, as rule ingest's threads (default 2)")
    parser.add_argument("--store-side", type=int, default=512, help="store.long_side resized to (default 512)")
    parser.add_argument("--syntaxes", nargs="+", default=["uncompressed", "j2k"], choices=sorted(SYNTAXES))
    args = parser.parse_args()

    print(f"CPU: {lscpu_model()}; {args.threads} decoding workers (processes, for DICOM)")
    print(f"{args.n} images per syntax at {args.long_side} x {int(args.long_side * 0.8)} px, 12-bit MONOCHROME1 with "
          f"a window, {args.distinct} distinct files cycled; stored at long side {args.store_side}")
    images = radiographs(args.distinct, args.long_side)
    with tempfile.TemporaryDirectory(prefix="bench_dicom_") as tmp:
        tmp = Path(tmp)
        for name in args.syntaxes:
            folder = tmp / name
            folder.mkdir()
            start = time.perf_counter()
            for index, stored in enumerate(images):
                write_dicom(folder / f"im{index}.dcm", stored, SYNTAXES[name])
            encode = (time.perf_counter() - start) / len(images)
            size = np.mean([p.stat().st_size for p in folder.iterdir()]) / 2**20
            start = time.perf_counter()
            for path in sorted(folder.iterdir()):
                decode_gray(path)
            alone = len(images) / (time.perf_counter() - start)
            frame = pd.DataFrame(dict(filename=[f"im{i % len(images)}.dcm" for i in range(args.n)],
                                      split_file="bench", line=range(1, args.n + 1)))
            start, cpu, load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
            kept, problems = write_store(frame, folder, args.store_side, tmp / f"{name}.npy", threads=args.threads,
                                         progress=False)
            elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            assert not problems and len(kept) == args.n, problems[:3]
            (tmp / f"{name}.npy").unlink()
            print(f"{name:>12}: {args.n / elapsed:6.1f} images/s through write_store ({args.threads} workers; "
                  f"{elapsed:.1f} s for {args.n}, {args.n / cpu:.1f} images per CPU-second, load average "
                  f"{load:.1f} -> {os.getloadavg()[0]:.1f}); decode alone, 1 thread: {alone:.1f} images/s; "
                  f"{size:.1f} MiB per file; encoding {encode:.2f} s per file (not timed above)")


if __name__ == "__main__":
    main()
