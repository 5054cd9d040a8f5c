"""An external site mix of the phantom: a test-only set from "another hospital".

The training phantom images class i mostly at its home site ``SOURCES[i]`` (the planted
shortcut). An external set draws new patients of the same anatomy, disease and sites, with the
site-label association changed:

* ``reversed``: class i is imaged at the *next* class's home site ``SOURCES[(i + 1) % 3]`` with
  probability ``shortcut`` (the training phantom's by default), else at a random site. A model
  that reads the site predicts the wrong class: a site-only rule scores about (1 − shortcut) / 3,
  below chance, while the disease inside the lungs is unchanged.
* ``independent``: the site is drawn independently of the label (a site-only rule is at chance).

The set is written in the COVIDx split-file format (``covidx/external.txt``, every line a test
image, with the true lung masks in ``covidx/masks``), so the ordinary ingestion reads it.
Patients are numbered after the training phantom's, and their seeds use their own partition id,
so neither a patient nor an image is shared with the training phantom.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ...vocabulary import CLASSES
from .config import SOURCES, PhantomConfig
from .dataset import PARTITION_ID, Patient, _write_covidx, covidx_plan, seeded_rng
from .geometry import case_size

PART = "external"  # the split file's stem and the partition id of the seeds
MIXES = ("reversed", "independent")


def external_site(class_index: int, mix: str, shortcut: float, rng) -> int:
    """The site index of one external patient of class `class_index`."""
    if mix == "reversed" and rng.random() < shortcut:
        return (class_index + 1) % len(SOURCES)
    return int(rng.integers(0, len(SOURCES)))


def external_plan(cfg: PhantomConfig, n_per_class: int, mix: str, seed: int, shortcut: float | None = None
                  ) -> tuple[PhantomConfig, list[Patient]]:
    """(the rendering settings, the patients) of an external set beside the phantom `cfg`.

    The rendering settings are the training phantom's with this set's seed; `shortcut` None takes
    the training phantom's. Patient ids continue after the training phantom's last one.
    """
    if mix not in MIXES:
        raise ValueError(f"unknown external mix {mix!r}; expected one of {MIXES}")
    shortcut = cfg.shortcut if shortcut is None else float(shortcut)
    first_pid = 1 + max((p.pid for patients in covidx_plan(cfg).values() for p in patients), default=-1)
    ext_cfg = replace(cfg, seed=int(seed), shortcut=shortcut)
    patients, pid = [], first_pid
    for class_index in range(len(CLASSES)):
        count, draw = 0, 0
        while count < n_per_class:
            rng = seeded_rng(ext_cfg.seed, PARTITION_ID[PART], class_index, draw)
            site = external_site(class_index, mix, shortcut, rng)
            n_images = min(2 if rng.random() < cfg.second_image_prob else 1, n_per_class - count)
            patients.append(Patient(pid, class_index, site, *case_size(rng, cfg.long_side), n_images, draw))
            count += n_images
            draw += 1
            pid += 1
    return ext_cfg, patients


def write_external_phantom(out_dir: str | Path, phantom: Mapping | PhantomConfig | None, n_per_class: int,
                           mix: str = "reversed", seed: int = 1, shortcut: float | None = None) -> Path:
    """Write the external set under out_dir (``covidx/{images,masks}``, ``covidx/external.txt``)
    through a temporary folder, so a killed run leaves nothing half-written; return the split file."""
    from tqdm import tqdm

    ext_cfg, patients = external_plan(PhantomConfig.of(phantom), int(n_per_class), mix, seed, shortcut)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in ("covidx/images", "covidx/masks"):
        (tmp / folder).mkdir(parents=True)
    with tqdm(total=sum(p.n_images for p in patients), desc=f"external phantom ({mix})", unit="img",
              file=sys.stderr, mininterval=1.0) as progress:
        _write_covidx(tmp, ext_cfg, {PART: patients}, progress)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "covidx", ignore_errors=True)
    (tmp / "covidx").rename(out / "covidx")
    shutil.rmtree(tmp, ignore_errors=True)
    return out / "covidx" / f"{PART}.txt"
