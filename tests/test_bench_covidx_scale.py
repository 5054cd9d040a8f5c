"""scripts/bench_covidx_scale.py at a tiny scale: it runs end to end, its split files parse with the
project's own parser (and name the sources the way COVIDx5 does), and it prints every row."""

import importlib.util
import re
import subprocess
import sys

import cv2
import pytest

from conftest import REPO

from hideseek.data.splitfiles import attribute_sources, parse_split_file
from hideseek.vocabulary import CLASSES

SCRIPT = REPO / "scripts" / "bench_covidx_scale.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_covidx_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--train", "30", "--test", "9", "--size-scale", "0.05",
                           "--width", "0.25", "--input-size", "64", "--out", str(out), "--keep"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return out, done.stdout


def test_prints_every_row_measured_and_extrapolated(tiny_run):
    _, stdout = tiny_run
    assert re.search(r"^CPU: .+avx512f (yes|no), avx512_bf16 (yes|no), amx ", stdout, re.M)
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    for row in ("tree written (2 processes)", "ingest (store long side 522, 2 threads)", "dry run (whole workflow)",
                "training start-up at 64 px (CXR4-A, width 0.25)", "peak RSS of that start-up"):
        assert row in rows, f"{row!r} missing from:\n{stdout}"
    assert "measured, 39 images" in stdout and "COVIDx5 scale, 14,258 images" in stdout
    assert "extrapolated, linear in pixels" in rows["ingest (store long side 522, 2 threads)"]
    assert re.search(r"\d+\.\d images/s", rows["ingest (store long side 522, 2 threads)"])
    assert "measured, 14,258 lines on hard links" in rows["dry run (whole workflow)"]
    assert re.search(r": (within|NOT within)", rows["peak RSS of that start-up"])


def test_split_files_parse_with_the_project_parser(tiny_run, config):
    out, _ = tiny_run
    tree = out / "tree"
    train, problems = parse_split_file(tree / "train_COVIDx5.txt", "train", tree / "images")
    assert problems == [] and len(train) == 30
    test, problems = parse_split_file(tree / "test_COVIDx5.txt", "test", tree / "images")
    assert problems == [] and len(test) == 9
    assert test["label"].value_counts().to_dict() == dict.fromkeys(CLASSES, 3)
    assert set(train["label"]) == set(CLASSES)
    # COVIDx5's test RSNA lines have no source column; the shipped source_rules name them rsna.
    rsna = test["source"].isna()
    assert rsna.any() and not test.loc[rsna, "label"].eq("COVID-19").any()
    named = attribute_sources(test, config["classification_data"]["source_rules"])
    assert (named.loc[rsna, "source"] == "rsna").all() and (named["source"] != "unknown").all()
    for frame in (train, test):
        for name in frame["filename"]:
            assert cv2.imread(str(tree / "images" / name), cv2.IMREAD_UNCHANGED) is not None, name
    # No patient in both split files (ingestion would refuse the tree).
    assert not set(train["patient_id"]) & set(test["patient_id"])
    report = (out / "store" / "ingest_report.md").read_text()
    assert "Images kept: train" in report and "(total 39)" in report


def test_sizes_and_mix_follow_covidx5():
    bench = load_script()
    specs = bench.plan_tree(1400, 300, 1.0)
    assert len(specs) == 1700
    counts = bench.class_counts(13958, bench.FULL_TRAIN, 4)
    assert counts == bench.FULL_TRAIN
    rsna = [s for s in specs if re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.png", s["name"])]
    assert rsna and all((s["width"], s["height"]) == (1024, 1024) for s in rsna)
    assert max(s["width"] * s["height"] for s in specs) > 2000 * 2300
    assert min(s["width"] * s["height"] for s in specs) < 700 * 700
    image = bench.radiograph(200, 160, 8, seed=1)
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok and 0.2 < png.size / image.size < 0.9  # compresses like a radiograph: not noise, not flat
    assert bench.radiograph(50, 40, 16, seed=1).dtype.name == "uint16"


def test_refuses_out_inside_the_repository_and_a_tree_that_does_not_fit(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--train", "30", "--test", "9", "--out", str(REPO / "scale")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "inside the repository" in done.stderr
    assert not (REPO / "scale").exists()
    bench = load_script()
    huge = [dict(width=10**6, height=10**6, bits=8)]
    with pytest.raises(SystemExit, match="not enough disk"):
        bench.check_disk(tmp_path / "new", huge, 522, 0)
