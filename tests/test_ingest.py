
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from hideseek.errors import InputError
from hideseek.data.ingest import carve_grouped, ingest_classification_data
from hideseek.data.decode import read_gray, resize_long_side
from hideseek.data.splitfiles import attribute_sources, parse_split_file, split_duplicates
from hideseek.data.store import ImageStore

from conftest import REPO, gradient_image, write_png
from test_paper_config import fake_tree

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

DATA_CFG = dict(on_missing="fail", val_fraction=0.2, split_seed=0, test_fraction=0.2,
                near_duplicate_threshold=0.98, on_duplicate="fail",
                source_rules=[{"pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.png$",
                               "source": "rsna"}])


def run_ingest(tmp_path, files, cfg=None, long_side=64):
    out = tmp_path / "out"
    index = ingest_classification_data(
        {**DATA_CFG, **(cfg or {})}, long_side, image_dir=files["image_dir"], train_split=files["train_split"],
        test_split=files.get("test_split"), out_index=out / "images.csv", out_pixels=out / "pixels.npy",
        out_dropped=out / "dropped.csv", out_report=out / "report.md", out_duplicates=out / "duplicates.csv")
    return index, out


def test_parse_reports_each_bad_line_with_file_and_line(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text(
        "p1 a.png normal cohen\n"            # ok, 4 columns
        "p2 b.png pneumonia\n"               # ok, 3 columns
        "\n"                                 # blank: skipped
        "p3 c.png\n"                         # too few columns
        "p4 d.png covid-19 sirm\n"           # wrong case
        "p5 e.png tuberculosis x\n"          # unknown label
        "p6 ../secret.png normal x\n"        # escapes the root
        "p7 /etc/passwd normal x\n"          # absolute
        "p8 sub/../../f.png normal x\n"      # escapes via a subfolder
        "p9 sub/./g.png normal x y z\n"      # too many columns
        "p10 sub/../h.png normal x\n"        # stays inside: ok
    )
    frame, problems = parse_split_file(split, "train")
    assert list(frame["filename"]) == ["a.png", "b.png", "sub/../h.png"]
    assert frame["source"][0] == "cohen" and pd.isna(frame["source"][1])
    lines = {p.line: str(p) for p in problems}
    assert set(lines) == {4, 5, 6, 7, 8, 9, 10}
    assert lines[4].startswith(f"{split}:4: expected 3 or 4")
    assert "did you mean 'COVID-19'" in lines[5]
    assert "'tuberculosis' is not one of normal, pneumonia, COVID-19" in lines[6]
    assert all("outside the image folder" in lines[n] for n in (7, 8, 9))


def test_duplicates_exact_kept_once_conflicting_reported(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text("p1 a.png normal s\np1 a.png normal s\np2 b.png normal s\np3 b.png COVID-19 s\n")
    frame, problems = parse_split_file(split, "train")
    deduped, conflicts, notes = split_duplicates(frame)
    assert not problems
    assert deduped["filename"].tolist() == ["a.png", "b.png"]
    assert [n.line for n in notes] == [2] and "duplicate of" in notes[0].reason
    assert [c.line for c in conflicts] == [4] and f"{split}:3" in conflicts[0].reason


def test_source_attribution_column_rule_unknown():
    frame = pd.DataFrame(dict(
        filename=["x.png", "0a1b2c3d-1111-2222-3333-444455556666.png", "sub/other.png"],
        source=["cohen", None, None]))
    out = attribute_sources(frame, DATA_CFG["source_rules"])
    assert out["source"].tolist() == ["cohen", "rsna", "unknown"]
    assert out["source_origin"].tolist() == ["column", "rule", "unknown"]


def test_bad_source_rule_regex_names_the_key():
    with pytest.raises(InputError, match=r"source_rules\[0\]\.pattern"):
        attribute_sources(pd.DataFrame(dict(filename=["a"], source=[None])), [{"pattern": "(", "source": "x"}])


def test_ingest_valid_data_set_builds_store_and_partitions(tmp_path, tiny_covidx):
    index, out = run_ingest(tmp_path, tiny_covidx)
    assert set(index["partition"]) == {"train", "val", "test"}
    # Patients never straddle partitions, and every class is everywhere.
    assert index.groupby("patient_id")["partition"].nunique().max() == 1
    assert index.groupby("partition")["label"].nunique().min() == 3
    # The given test split is kept as is.
    test_names = {line.split()[1] for line in tiny_covidx["test_split"].read_text().split("\n") if line}
    assert set(index.loc[index["partition"] == "test", "filename"]) == test_names
    # The store returns what decoding and resizing the original gives.
    store = ImageStore(out / "pixels.npy", out / "images.csv")
    for position in (0, len(store) - 1):
        original = read_gray(tiny_covidx["image_dir"] / store.index.loc[position, "filename"])
        assert np.array_equal(store[position], resize_long_side(original, 64))
    assert max(store[0].shape) == 64
    assert pd.read_csv(out / "dropped.csv").empty


def test_missing_and_corrupt_images_fail_listing_every_line(tmp_path, tiny_covidx):
    (tiny_covidx["image_dir"] / "nor00_0.png").unlink()
    (tiny_covidx["image_dir"] / "pne03_0.png").write_bytes(b"garbage")
    with pytest.raises(InputError) as error:
        run_ingest(tmp_path, tiny_covidx)
    message = str(error.value)
    assert "2 problems" in message
    assert f"{tiny_covidx['train_split']}:1: image not found" in message
    assert "pne03_0.png" in message and "not a decodable image" in message
    assert "on_missing: drop" in message
    # Nothing half-written is left behind.
    assert list((tmp_path / "out").glob("*")) == []


def test_drop_policy_drops_and_reports(tmp_path, tiny_covidx):
    (tiny_covidx["image_dir"] / "nor00_0.png").unlink()
    index, out = run_ingest(tmp_path, tiny_covidx, {"on_missing": "drop"})
    assert "nor00_0.png" not in set(index["filename"])
    dropped = pd.read_csv(out / "dropped.csv")
    assert dropped["line"].tolist() == [1] and "image not found" in dropped["reason"][0]
    assert "nor00_0.png" in (out / "report.md").read_text()


def test_format_errors_fail_even_with_drop_policy(tmp_path, tiny_covidx):
    with open(tiny_covidx["train_split"], "a") as handle:
        handle.write("px ../escape.png normal rsna\n")
    with pytest.raises(InputError, match="outside the image folder"):
        run_ingest(tmp_path, tiny_covidx, {"on_missing": "drop"})


def test_patient_in_train_and_test_is_a_leak(tmp_path, tiny_covidx):
    write_png(tiny_covidx["image_dir"] / "leak.png", gradient_image(seed=999))  # a new image, not a copy
    with open(tiny_covidx["test_split"], "a") as handle:
        handle.write("nor00 leak.png normal rsna\n")  # nor00 is a training patient
    with pytest.raises(InputError, match=r"patient nor00: test, (train|val)"):
        run_ingest(tmp_path, tiny_covidx)
    assert not (tmp_path / "out" / "pixels.npy").exists()


def test_single_labels_file_carves_grouped_stratified_test(tmp_path, tiny_covidx):
    merged = tmp_path / "labels.txt"
    merged.write_text(tiny_covidx["train_split"].read_text() + tiny_covidx["test_split"].read_text())
    index, _ = run_ingest(tmp_path, dict(image_dir=tiny_covidx["image_dir"], train_split=merged),
                          {"test_fraction": 0.25})
    assert index.groupby("patient_id")["partition"].nunique().max() == 1
    test = index[index["partition"] == "test"]
    assert set(test["label"]) == {"normal", "pneumonia", "COVID-19"}
    assert 0.1 < test["patient_id"].nunique() / index["patient_id"].nunique() < 0.4


def test_missing_split_file_and_image_dir_are_named(tmp_path, tiny_covidx):
    with pytest.raises(InputError, match="split file not found: .*nope.txt"):
        run_ingest(tmp_path, {**tiny_covidx, "train_split": tmp_path / "nope.txt"})
    with pytest.raises(InputError, match="image folder not found: .*noimg"):
        run_ingest(tmp_path, {**tiny_covidx, "image_dir": tmp_path / "noimg"})


def test_real_cls_mini_ingests(tmp_path, shared_real):
    root = shared_real / "cls-mini"
    index, out = run_ingest(tmp_path, dict(image_dir=root / "images", train_split=root / "labels.txt"),
                            long_side=140)
    assert len(index) == 100
    assert set(index["source"]) == {"kermany", "mhh"}
    assert index["source_origin"].eq("column").all()
    assert index.groupby("partition")["label"].nunique().min() == 3
    assert 15 <= (index["partition"] == "test").sum() <= 25
    store = ImageStore(out / "pixels.npy", out / "images.csv")
    assert all(max(store[i].shape) == 140 for i in range(len(store)))


def grouped_frame(groups_per_class=30):
    """Patients of 1-3 images per class; patient n of class c has 1 + n % 3 images."""
    rows = [dict(carve_group=f"{label}{n}", label=label)
            for label in ("normal", "pneumonia", "COVID-19") for n in range(groups_per_class)
            for _ in range(1 + n % 3)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.4])
def test_carving_reaches_the_target_within_one_group_per_class(fraction):
    frame = grouped_frame()
    mask = carve_grouped(frame, fraction, seed=5, what="test")
    assert np.array_equal(mask, carve_grouped(frame, fraction, seed=5, what="test"))  # deterministic
    assert frame.assign(m=mask).groupby("carve_group")["m"].nunique().max() == 1  # groups stay whole
    for label, rows in frame.assign(m=mask).groupby("label"):
        target = round(fraction * len(rows))
        print(f"{fraction}: {label} carved {rows['m'].sum()} of {len(rows)}, target {target}")
        assert abs(int(rows["m"].sum()) - target) <= 3  # the largest group has 3 images
    assert not np.array_equal(mask, carve_grouped(frame, fraction, seed=6, what="test"))


def test_carving_a_class_of_one_patient_says_what_to_change(tmp_path, tiny_covidx):
    labels = tmp_path / "labels.txt"
    lines = (tiny_covidx["train_split"].read_text() + tiny_covidx["test_split"].read_text()).splitlines()
    labels.write_text("\n".join(line for line in lines if "COVID-19" not in line or line.startswith("COV00 ")) + "\n")
    with pytest.raises(InputError) as error:
        run_ingest(tmp_path, dict(image_dir=tiny_covidx["image_dir"], train_split=labels))
    message = str(error.value)
    assert message.startswith("cannot carve a test split of 20% (classification_data.test_fraction) from the pool")
    assert "  COVID-19: 1 image(s) in 1 group(s)  <- too few" in message
    assert "  normal: 15 image(s) in 10 group(s)\n" in message
    assert "Add images of the classes marked" in message
    assert list((tmp_path / "out").glob("*")) == []


def test_report_prints_achieved_counts_next_to_the_requested_fraction(tmp_path, tiny_covidx):
    merged = tmp_path / "labels.txt"
    merged.write_text(tiny_covidx["train_split"].read_text() + tiny_covidx["test_split"].read_text())
    index, out = run_ingest(tmp_path, dict(image_dir=tiny_covidx["image_dir"], train_split=merged),
                            {"test_fraction": 0.3})
    test = index[index["partition"] == "test"].groupby("label").size()
    assert test.sub(round(0.3 * 15)).abs().max() <= 2  # 15 images per class, patients of 1-2
    report = (out / "report.md").read_text()
    assert "requested test_fraction 30% of each class's images" in report
    assert "test / all, requested 30%" in report and "val / (train+val), requested 20%" in report
    assert f"| normal    |" in report and f"{test['normal'] / 15:.1%}" in report


def snakemake(workdir, config, *args):
    """Targets first, then the default config and `config` on top (as the README does)."""
    result = subprocess.run(
        [SNAKEMAKE, *args, "--cores", "1", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(REPO / "config" / "config.yaml"), str(config)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_restoring_a_dropped_image_reruns_ingest(tmp_path, tiny_covidx):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({
        "classification_data": {"kind": "covidx", "image_dir": str(tiny_covidx["image_dir"]), "on_missing": "drop",
                                "train_split": str(tiny_covidx["train_split"]),
                                "test_split": str(tiny_covidx["test_split"])},
        "store": {"long_side": 36},  # inputs the small store can serve (32 px)
        "classification": {"architectures": ["covidnet_cxr3a"], "models": {"covidnet_cxr3a": {"input_size": 32}}}}))
    target = "results/data/images.csv"
    missing = tiny_covidx["image_dir"] / "nor00_0.png"
    kept = missing.read_bytes()
    missing.unlink()
    snakemake(tmp_path, config, target)
    assert "nor00_0.png" not in set(pd.read_csv(tmp_path / target)["filename"])
    assert "Nothing to be done" in snakemake(tmp_path, config, target, "-n")
    # Restored from a backup, with its old time stamp: the new input alone must trigger the rerun.
    missing.write_bytes(kept)
    os.utime(missing, (1e9, 1e9))
    plan = snakemake(tmp_path, config, target, "-n")
    assert "rule ingest:" in plan and "Nothing to be done" not in plan, plan
    print(next(line for line in plan.splitlines() if "reason:" in line))


def test_dry_run_of_the_paper_config_on_14000_listed_images(tmp_path):
    tree = fake_tree(tmp_path)
    images = tmp_path / "covidx" / "images"
    lines = []
    for i in range(14000):
        (images / f"img{i:05d}.png").write_bytes(b"x")
        lines.append(f"p{i} img{i:05d}.png {('normal', 'pneumonia', 'COVID-19')[i % 3]} src")
    (tmp_path / "covidx" / "train_COVIDx5.txt").write_text("\n".join(lines[:13700]) + "\n")
    (tmp_path / "covidx" / "test_COVIDx5.txt").write_text("\n".join(lines[13700:]) + "\n")
    start = time.perf_counter()
    plan = snakemake(tmp_path, tree["config"], "-n")
    print(f"snakemake -n, paper config, 14,000 listed images: {time.perf_counter() - start:.1f} s")
    assert "ingest" in plan


def test_16bit_images_get_one_bit_depth_for_the_data_set(tmp_path, tiny_covidx):
    """Two 12-bit images with different peaks: one rule for the set, stated in the report."""
    image_dir = Path(tiny_covidx["image_dir"])
    ramp = np.linspace(0, 1, 40 * 32).reshape(40, 32)
    for name, peak in (("nor00_0.png", 2048), ("pne00_0.png", 4000)):
        assert cv2.imwrite(str(image_dir / name), (ramp * peak).astype(np.uint16))
    index, out = run_ingest(tmp_path, tiny_covidx, long_side=40)
    report = (out / "report.md").read_text()
    assert "2 of" in report and "12-bit (4095 -> 255)" in report and "store.bits_stored not set" in report
    store = ImageStore(out / "pixels.npy", out / "images.csv")
    first, second = (store[int(np.flatnonzero(store.index["filename"] == n)[0])] for n in ("nor00_0.png", "pne00_0.png"))
    # the same raw scale for both: the brighter image's peak maps to about 4000/4095 of white
    assert abs(int(first.max()) - round(255 * 2048 / 4095)) <= 2 and abs(int(second.max()) - round(255 * 4000 / 4095)) <= 2
