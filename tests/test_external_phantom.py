"""The phantom's external set: the training shortcut reversed, the disease unchanged, new patients."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from hideseek.data.phantom import CLASSES, SOURCES, write_phantom
from hideseek.data.phantom.config import PhantomConfig
from hideseek.data.phantom.dataset import covidx_plan
from hideseek.data.phantom.external import external_plan, write_external_phantom

TRAIN = {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72],
         "seg": {"n_train_tags": 1, "images_per_tag": 1, "n_nih": 1, "n_cohen": 1}}


def read_split(path) -> pd.DataFrame:
    return pd.read_csv(path, sep=" ", header=None, names=["patient_id", "filename", "label", "source"])


def site_rule_accuracy(lines: pd.DataFrame) -> float:
    """The shortcut alone: predict the class whose home site the image comes from."""
    predicted = [CLASSES[SOURCES.index(source)] for source in lines["source"]]
    return float(np.mean(np.asarray(predicted) == lines["label"].to_numpy()))


def test_reversed_mix_puts_a_site_only_rule_below_chance(tmp_path):
    split = write_external_phantom(tmp_path / "ext", TRAIN, n_per_class=20, mix="reversed", seed=1)
    lines = read_split(split)
    assert lines["label"].value_counts().to_dict() == {label: 20 for label in CLASSES}
    assert site_rule_accuracy(lines) < 0.15  # chance is 1/3; about (1 - 0.9) / 3 expected
    # every class is mostly imaged at the next class's home site
    for i, label in enumerate(CLASSES):
        assert (lines.loc[lines["label"] == label, "source"] == SOURCES[(i + 1) % 3]).mean() > 0.7
    # on the training phantom the same rule is far above chance: the shortcut is reversed, not removed
    write_phantom(tmp_path / "train", TRAIN)
    assert site_rule_accuracy(read_split(tmp_path / "train" / "covidx" / "train.txt")) > 0.8
    # images and true masks are written for every line
    for name in lines["filename"]:
        assert (split.parent / "images" / name).is_file() and (split.parent / "masks" / name).is_file()


def test_independent_mix_and_the_shortcut_knob():
    cfg = PhantomConfig.of(TRAIN)
    _, independent = external_plan(cfg, 60, "independent", seed=3)
    label_site = pd.crosstab([p.class_index for p in independent], [p.source_index for p in independent])
    assert (label_site.to_numpy() > 0).all()  # every class at every site
    home = np.mean([p.source_index == p.class_index for p in independent])
    assert 0.15 < home < 0.55
    ext_cfg, strict = external_plan(cfg, 30, "reversed", seed=3, shortcut=1.0)
    assert all(p.source_index == (p.class_index + 1) % 3 for p in strict) and ext_cfg.shortcut == 1.0
    ext_cfg, _ = external_plan(cfg, 30, "reversed", seed=3)
    assert ext_cfg.shortcut == cfg.shortcut and ext_cfg.seed == 3  # None: the training phantom's shortcut
    with pytest.raises(ValueError, match="unknown external mix"):
        external_plan(cfg, 10, "sideways", seed=0)


def test_the_disease_is_still_inside_the_lungs_and_patients_are_new(tmp_path):
    """The same external set rendered with and without disease differs only inside the lungs of
    the diseased images: the site mix changed, the disease did not."""
    split = write_external_phantom(tmp_path / "with", TRAIN, n_per_class=6, seed=2)
    write_external_phantom(tmp_path / "without", {**TRAIN, "disease_contrast": 0.0}, n_per_class=6, seed=2)
    lines = read_split(split)
    for row in lines.itertuples():
        diseased = cv2.imread(str(split.parent / "images" / row.filename), cv2.IMREAD_GRAYSCALE).astype(int)
        clean = cv2.imread(str(tmp_path / "without/covidx/images" / row.filename), cv2.IMREAD_GRAYSCALE).astype(int)
        lungs = cv2.imread(str(split.parent / "masks" / row.filename), cv2.IMREAD_GRAYSCALE) > 0
        difference = np.abs(diseased - clean)
        assert difference[~lungs].max() == 0
        if row.label == "normal":
            assert difference.max() == 0
        else:
            assert difference[lungs].max() >= 3, row.filename
    # patients continue after the training phantom's: no patient id is shared
    training = {p.pid for patients in covidx_plan(PhantomConfig.of(TRAIN)).values() for p in patients}
    assert not set(lines["patient_id"]) & {f"p{pid:05d}" for pid in training}
    # deterministic: the same settings write the same set
    again = write_external_phantom(tmp_path / "again", TRAIN, n_per_class=6, seed=2)
    assert again.read_text() == split.read_text()
