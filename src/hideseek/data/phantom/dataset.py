"""The phantom data set on disk: the COVIDx-format classification set (patients, split
files) and the segmentation sets, planned from seed sequences and written image by image.

Layout under out_dir::

    covidx/{images,masks}/pNNNNN_k.png, covidx/{train,test}.txt
    seg/train/images/<tag><k>.png, seg/train/masks/<tag>mask.png   (Tang et al. XLSor naming)
    seg/{nih,cohen}/{images,masks}/<name>.png
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...io import atomic_path, write_text_atomic
from ...vocabulary import CLASSES
from .acquisition import Acquisition
from .anatomy import Anatomy
from .config import SOURCES, PhantomConfig
from .disease import Disease
from .geometry import Geometry, case_size
from .render import Case, Streams, render, render_case, render_mask
from .signature import SiteSignature

# partition ids that key the seed sequences (never renumber: it would change the data set)
PARTITION_ID = {"train": 0, "test": 1, "seg_train": 2, "seg_nih": 3, "seg_cohen": 4,
                "external": 5}  # external: the external test sets (external.py)
# seed sub-keys: a patient's shared draws (1) and its images (2, k); a tag's images (1, k)
PATIENT_KEY, IMAGE_KEY = 1, 2
TAG_IMAGE_KEY = 1
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]
PARTS = ("covidx", "seg")  # the top-level folders write_phantom moves into place


@dataclass(frozen=True)
class SegTestSet:
    """A segmentation test set: its name, size and label mix."""

    name: str
    count: int
    label_probs: tuple[float, float, float]  # in CLASSES order


def seg_test_sets(cfg: PhantomConfig) -> tuple[SegTestSet, SegTestSet]:
    # NIH: mostly normal; Cohen: mostly diseased
    return (SegTestSet("nih", cfg.seg.n_nih, (0.7, 0.15, 0.15)),
            SegTestSet("cohen", cfg.seg.n_cohen, (0.1, 0.3, 0.6)))


@dataclass(frozen=True)
class Patient:
    """One patient of the classification set; `index` counts the class's patients in the
    partition and keys the patient's seeds."""

    pid: int
    class_index: int
    source_index: int
    height: int
    width: int
    n_images: int
    index: int

    @property
    def label(self) -> str:
        return CLASSES[self.class_index]

    @property
    def source(self) -> str:
        return SOURCES[self.source_index]


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, key)]))


def covidx_plan(cfg: PhantomConfig) -> dict[str, list[Patient]]:
    """The patients of each partition ("train", "test"), numbered across both."""
    plan: dict[str, list[Patient]] = {}
    pid = 0
    for part, n_per_class in (("train", cfg.n_train_per_class), ("test", cfg.n_test_per_class)):
        patients = plan[part] = []
        for class_index in range(len(CLASSES)):
            count, draw = 0, 0
            while count < n_per_class:
                rng = seeded_rng(cfg.seed, PARTITION_ID[part], class_index, draw)
                # the planted shortcut: most patients are imaged at their class's home site
                site = class_index if rng.random() < cfg.shortcut else int(rng.integers(0, len(SOURCES)))
                n_images = min(2 if rng.random() < cfg.second_image_prob else 1, n_per_class - count)
                patients.append(Patient(pid, class_index, site, *case_size(rng, cfg.long_side), n_images, draw))
                count += n_images
                draw += 1
                pid += 1
    return plan


def write_png(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image, PNG_PARAMS):
            raise OSError(f"could not write {tmp}")


def _write_covidx(out: Path, cfg: PhantomConfig, plan: dict[str, list[Patient]], progress) -> None:
    cdir = out / "covidx"
    for part, patients in plan.items():
        lines = []
        for p in patients:
            key = (cfg.seed, PARTITION_ID[part], p.class_index, p.index)
            shared = Streams.split(seeded_rng(*key, PATIENT_KEY))  # anatomy, disease, site
            anatomy = Anatomy.draw(shared.anatomy)
            disease, signature = Disease.draw(shared.disease), SiteSignature.draw(shared.signature)
            for k in range(p.n_images):
                own = Streams.split(seeded_rng(*key, IMAGE_KEY, k))  # positioning, exposure
                case = Case(anatomy, Geometry.draw(own.geometry), disease, signature,
                            Acquisition.draw(own.acquisition))
                img, mask = render(p.height, p.width, p.label, p.source, cfg, case)
                name = f"p{p.pid:05d}_{k}.png"
                write_png(cdir / "images" / name, img)
                write_png(cdir / "masks" / name, mask)
                lines.append(f"p{p.pid:05d} {name} {p.label} {p.source}\n")
                progress.update(1)
        write_text_atomic(cdir / f"{part}.txt", "".join(lines))


def _write_seg_train(out: Path, cfg: PhantomConfig, progress) -> None:
    """Tang et al. XLSor "Augmentation" naming: per tag one mask and images of one anatomy
    and positioning, with labels balanced over the tag and random sites."""
    per_tag = cfg.seg.images_per_tag
    for t in range(cfg.seg.n_train_tags):
        rng = seeded_rng(cfg.seed, PARTITION_ID["seg_train"], t)
        height, width = case_size(rng, cfg.long_side)
        shared = Streams.split(rng)
        anatomy, geometry = Anatomy.draw(shared.anatomy), Geometry.draw(shared.geometry)
        labels = [CLASSES[i % len(CLASSES)] for i in range(per_tag)]
        labels = [labels[i] for i in rng.permutation(per_tag)]
        tag = f"t{t:04d}"
        for k in range(per_tag):
            own = Streams.split(seeded_rng(cfg.seed, PARTITION_ID["seg_train"], t, TAG_IMAGE_KEY, k))
            source = SOURCES[int(own.signature.integers(0, len(SOURCES)))]
            case = Case(anatomy, geometry, Disease.draw(own.disease), SiteSignature.draw(own.signature),
                        Acquisition.draw(own.acquisition))
            img, _mask = render(height, width, labels[k], source, cfg, case)
            write_png(out / "seg/train/images" / f"{tag}{k}.png", img)
            progress.update(1)
        write_png(out / "seg/train/masks" / f"{tag}mask.png", render_mask(height, width, anatomy, geometry))


def _write_seg_tests(out: Path, cfg: PhantomConfig, progress) -> None:
    for test_set in seg_test_sets(cfg):
        for i in range(test_set.count):
            rng = seeded_rng(cfg.seed, PARTITION_ID[f"seg_{test_set.name}"], i)
            height, width = case_size(rng, cfg.long_side)
            label = CLASSES[int(rng.choice(len(CLASSES), p=test_set.label_probs))]
            source = SOURCES[int(rng.integers(0, len(SOURCES)))]
            img, mask = render_case(rng, height, width, label, source, cfg)
            name = f"{test_set.name}_{i:04d}.png"
            write_png(out / "seg" / test_set.name / "images" / name, img)
            write_png(out / "seg" / test_set.name / "masks" / name, mask)
            progress.update(1)


def generate_phantom(out_dir: str | Path, cfg: Mapping | PhantomConfig | None) -> None:
    """Write the whole phantom data set under out_dir (layout in the module docstring);
    settings missing from `cfg` take PhantomConfig's defaults."""
    from tqdm import tqdm

    cfg = PhantomConfig.of(cfg)
    out = Path(out_dir)
    for d in ("covidx/images", "covidx/masks", "seg/train/images", "seg/train/masks",
              "seg/nih/images", "seg/nih/masks", "seg/cohen/images", "seg/cohen/masks"):
        (out / d).mkdir(parents=True, exist_ok=True)
    plan = covidx_plan(cfg)
    total = (sum(p.n_images for patients in plan.values() for p in patients)
             + cfg.seg.n_train_tags * cfg.seg.images_per_tag + cfg.seg.n_nih + cfg.seg.n_cohen)
    with tqdm(total=total, desc="phantom", unit="img", file=sys.stderr, mininterval=1.0) as progress:
        _write_covidx(out, cfg, plan, progress)
        _write_seg_train(out, cfg, progress)
        _write_seg_tests(out, cfg, progress)


def write_phantom(out_dir: str | Path, cfg: Mapping | PhantomConfig | None) -> None:
    """generate_phantom into a temporary folder beside out_dir, then move covidx/ and seg/
    into place, so a killed run leaves nothing half-written under out_dir."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_phantom(tmp, cfg)
    out.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        shutil.rmtree(out / part, ignore_errors=True)
        (tmp / part).rename(out / part)
    shutil.rmtree(tmp, ignore_errors=True)
