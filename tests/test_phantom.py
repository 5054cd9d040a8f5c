"""Tests for the built-in synthetic radiograph generator (hideseek.data.phantom)."""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from hideseek.data import phantom as P
from hideseek.data.phantom import dataset

SMALL = {
    "seed": 0,
    "n_train_per_class": 6,
    "n_test_per_class": 3,
    "second_image_prob": 0.3,
    "long_side": [96, 128],
    "shortcut": 0.9,
    "disease_contrast": 1.0,
    "signature_strength": 1.0,
    "seg": {"n_train_tags": 2, "images_per_tag": 6, "n_nih": 2, "n_cohen": 2},
}


def _cfg(**kw) -> dict:
    cfg = copy.deepcopy(SMALL)
    for k, v in kw.items():
        if k == "seg":
            cfg["seg"].update(v)
        else:
            cfg[k] = v
    return cfg


def _read_split(path: Path) -> list[list[str]]:
    return [line.split(" ") for line in path.read_text().splitlines()]


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _n_components(mask: np.ndarray) -> int:
    return ndi.label(mask > 0, structure=np.ones((3, 3), bool))[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom_a")
    P.generate_phantom(out, _cfg())
    return out


# ----------------------------------------------------------------------------- determinism


def test_deterministic_and_seed_dependent(small, tmp_path):
    again = tmp_path / "again"
    P.generate_phantom(again, _cfg())
    a, b = _all_files(small), _all_files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert not [k for k in a if ".tmp" in k]

    other = tmp_path / "other"
    P.generate_phantom(other, _cfg(seed=1))
    c = _all_files(other)
    common = [k for k in a if k in c and k.endswith(".png")]
    assert common
    assert sum(a[k] != c[k] for k in common) > 0.9 * len(common)


def test_config_fills_defaults_and_rejects_unknown_settings():
    cfg = P.PhantomConfig.of({"seed": 3, "long_side": [64, 80], "seg": {"n_nih": 2}})
    assert (cfg.seed, cfg.long_side, cfg.shortcut) == (3, (64, 80), 0.9)
    assert (cfg.seg.n_nih, cfg.seg.n_cohen) == (2, 30)
    with pytest.raises(ValueError, match="shortcutt"):
        P.PhantomConfig.of({"shortcutt": 1})
    with pytest.raises(ValueError, match="n_nihh"):
        P.PhantomConfig.of({"seg": {"n_nihh": 1}})


# ----------------------------------------------------------------------------- writing in place


def test_write_phantom_replaces_both_parts(small, tmp_path):
    out = tmp_path / "phantom"
    (out / "covidx").mkdir(parents=True)
    (out / "covidx" / "stale.png").write_bytes(b"old")
    (out / "other.txt").write_text("kept")
    (tmp_path / "phantom.tmp" / "covidx").mkdir(parents=True)  # left by a killed run
    P.write_phantom(out, _cfg())
    for part in ("covidx", "seg"):
        assert _all_files(out / part) == _all_files(small / part)
    assert (out / "other.txt").read_text() == "kept"
    assert not (tmp_path / "phantom.tmp").exists()


def test_write_phantom_failure_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "phantom"
    (out / "covidx").mkdir(parents=True)
    (out / "covidx" / "train.txt").write_text("previous")

    def killed(tmp_dir, cfg):
        (Path(tmp_dir) / "covidx" / "images").mkdir(parents=True)
        raise RuntimeError("killed")

    monkeypatch.setattr(dataset, "generate_phantom", killed)
    with pytest.raises(RuntimeError, match="killed"):
        P.write_phantom(out, _cfg())
    assert _all_files(out) == {"covidx/train.txt": b"previous"}


# ----------------------------------------------------------------------------- COVIDx files


def test_split_files(small):
    cdir = small / "covidx"
    patients = {}
    for part, n_per in (("train", 6), ("test", 3)):
        rows = _read_split(cdir / f"{part}.txt")
        assert all(len(r) == 4 for r in rows)
        counts = collections.Counter(r[2] for r in rows)
        assert counts == {c: n_per for c in P.CLASSES}
        assert {r[3] for r in rows} <= set(P.SOURCES)
        assert len({r[1] for r in rows}) == len(rows)
        for pid, fn, label, source in rows:
            assert fn.startswith(pid + "_") and fn.endswith(".png")
            assert (cdir / "images" / fn).is_file()
            assert (cdir / "masks" / fn).is_file()
        patients[part] = {r[0] for r in rows}
        # a patient keeps one class and one source
        per_pid = collections.defaultdict(set)
        for pid, _fn, label, source in rows:
            per_pid[pid].add((label, source))
        assert all(len(v) == 1 for v in per_pid.values())
    assert patients["train"].isdisjoint(patients["test"])


def test_images_and_masks(small):
    cdir = small / "covidx"
    names = sorted(p.name for p in (cdir / "images").glob("*.png"))
    assert names == sorted(p.name for p in (cdir / "masks").glob("*.png"))
    shapes = set()
    for fn in names:
        img = cv2.imread(str(cdir / "images" / fn), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(cdir / "masks" / fn), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.ndim == 2
        assert mask.shape == img.shape
        assert set(np.unique(mask)) <= {0, 255}
        lab, n = ndi.label(mask > 0, structure=np.ones((3, 3), bool))
        assert n == 2, fn
        frac = np.bincount(lab.ravel())[1:] / mask.size
        assert frac.min() > 0.02 and frac.max() < 0.25, (fn, frac)
        assert 96 <= max(img.shape) <= 128
        shapes.add(img.shape)
    assert len(shapes) > 3
    assert any(h != w for h, w in shapes)
    assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)


def test_second_images_share_patient(small):
    rows = _read_split(small / "covidx" / "train.txt") + _read_split(small / "covidx" / "test.txt")
    per_pid = collections.Counter(r[0] for r in rows)
    assert max(per_pid.values()) <= 2
    twins = [p for p, n in per_pid.items() if n == 2]
    for pid in twins:
        a = cv2.imread(str(small / "covidx" / "images" / f"{pid}_0.png"), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(small / "covidx" / "images" / f"{pid}_1.png"), cv2.IMREAD_GRAYSCALE)
        assert a.shape == b.shape and not np.array_equal(a, b)


# ----------------------------------------------------------------------------- shortcut knob


def test_shortcut_one_fixes_source(tmp_path):
    P.generate_phantom(tmp_path, _cfg(shortcut=1.0))
    for part in ("train", "test"):
        for _pid, _fn, label, source in _read_split(tmp_path / "covidx" / f"{part}.txt"):
            assert source == P.SOURCES[P.CLASSES.index(label)]
    sheet = tmp_path / "sheet.png"  # empty cells are drawn as "none"
    P.make_contact_sheet(tmp_path / "covidx", sheet, per_cell=1)
    assert cv2.imread(str(sheet)) is not None


def test_shortcut_zero_is_uniform(tmp_path):
    cfg = _cfg(shortcut=0.0, n_train_per_class=60, n_test_per_class=1, long_side=[64, 72],
               seg={"n_train_tags": 0, "images_per_tag": 6, "n_nih": 0, "n_cohen": 0})
    P.generate_phantom(tmp_path, cfg)
    rows = _read_split(tmp_path / "covidx" / "train.txt")
    for label in P.CLASSES:
        counts = collections.Counter(r[3] for r in rows if r[2] == label)
        assert sum(counts.values()) == 60
        for s in P.SOURCES:
            assert 6 <= counts[s] <= 38, (label, counts)


# ----------------------------------------------------------------------------- signal placement


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_disease_only_inside_signature_only_outside(seed):
    cfg = _cfg()
    H, W = 120, 104
    renders = {(lab, src): P.render_case(np.random.default_rng(seed), H, W, lab, src, cfg)
               for lab in P.CLASSES for src in P.SOURCES}
    mask = renders[("normal", "hospital_a")][1]
    inside = mask > 0
    assert 0.1 < inside.mean() < 0.45
    for (lab, src), (img, m) in renders.items():
        assert np.array_equal(m, mask)  # the lung mask depends on neither class nor source
        assert img.shape == (H, W) and img.dtype == np.uint8
        # another source: identical inside the lungs
        for src2 in P.SOURCES:
            other = renders[(lab, src2)][0]
            assert np.array_equal(img[inside], other[inside])
        # another label: identical outside the lungs
        for lab2 in P.CLASSES:
            other = renders[(lab2, src)][0]
            assert np.array_equal(img[~inside], other[~inside])
    # and the signals are really there
    base = renders[("normal", "hospital_a")][0].astype(int)
    for src in ("hospital_b", "hospital_c"):
        d = np.abs(renders[("normal", src)][0].astype(int) - base)[~inside]
        assert d.mean() > 3
    for lab in ("pneumonia", "COVID-19"):
        d = renders[(lab, "hospital_a")][0].astype(int) - base
        assert d[inside].max() > 3


def test_disease_contrast_zero_removes_disease():
    cfg = _cfg(disease_contrast=0.0)
    for seed in range(3):
        ref = P.render_case(np.random.default_rng(seed), 110, 100, "normal", "hospital_b", cfg)[0]
        for lab in ("pneumonia", "COVID-19"):
            img = P.render_case(np.random.default_rng(seed), 110, 100, lab, "hospital_b", cfg)[0]
            assert np.array_equal(img, ref)


def test_signature_strength_zero_removes_signature():
    cfg = _cfg(signature_strength=0.0)
    for seed in range(3):
        ref = P.render_case(np.random.default_rng(seed), 100, 120, "COVID-19", "hospital_a", cfg)[0]
        for src in ("hospital_b", "hospital_c"):
            img = P.render_case(np.random.default_rng(seed), 100, 120, "COVID-19", src, cfg)[0]
            assert np.array_equal(img, ref)


def test_disease_is_brighter_inside_lungs():
    cfg = _cfg()
    for lab in ("pneumonia", "COVID-19"):
        diffs = []
        for seed in range(6):
            a, m = P.render_case(np.random.default_rng(seed), 112, 100, lab, "hospital_c", cfg)
            b, _ = P.render_case(np.random.default_rng(seed), 112, 100, "normal", "hospital_c", cfg)
            diffs.append((a.astype(float) - b)[m > 0].mean())
        assert min(diffs) >= 0 and np.mean(diffs) > 1.0, (lab, diffs)


def test_render_rejects_unknown_label():
    with pytest.raises(ValueError):
        P.render_case(np.random.default_rng(0), 64, 64, "tuberculosis", "hospital_a", _cfg())


# ----------------------------------------------------------------------------- segmentation sets


def test_seg_train_tang_naming(small):
    imgs = sorted(p.name for p in (small / "seg/train/images").glob("*.png"))
    masks = sorted(p.name for p in (small / "seg/train/masks").glob("*.png"))
    tags = [m[: -len("mask.png")] for m in masks]
    assert len(tags) == 2 and all(m.endswith("mask.png") for m in masks)
    assert imgs == sorted(f"{t}{k}.png" for t in tags for k in range(6))
    for t in tags:
        mask = cv2.imread(str(small / "seg/train/masks" / f"{t}mask.png"), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(mask)) <= {0, 255} and _n_components(mask) == 2
        shots = [cv2.imread(str(small / "seg/train/images" / f"{t}{k}.png"), cv2.IMREAD_UNCHANGED)
                 for k in range(6)]
        assert all(s.shape == mask.shape for s in shots)
        assert len({s.tobytes() for s in shots}) == 6


@pytest.mark.parametrize("name", ["nih", "cohen"])
def test_seg_test_sets(small, name):
    d = small / "seg" / name
    imgs = sorted(p.name for p in (d / "images").glob("*.png"))
    assert len(imgs) == 2
    assert imgs == sorted(p.name for p in (d / "masks").glob("*.png"))
    for fn in imgs:
        img = cv2.imread(str(d / "images" / fn), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(d / "masks" / fn), cv2.IMREAD_UNCHANGED)
        assert img.shape == mask.shape and _n_components(mask) == 2


# ----------------------------------------------------------------------------- contact sheet


def test_contact_sheet(small, tmp_path):
    out = tmp_path / "sub" / "sheet.png"
    P.make_contact_sheet(small / "covidx", out, per_cell=2)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 500
    assert img.std() > 10
    assert not list(out.parent.glob("*.tmp*"))
