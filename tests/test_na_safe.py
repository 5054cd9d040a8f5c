"""Patients, sources and ids called NA, null, None, nan survive every reader of the project's
own CSVs (pandas' defaults would turn them into missing values): counts and checks stay right."""

from __future__ import annotations

import logging
import re
import runpy
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, gradient_image, write_png
from hideseek.io import read_table

NA_LIKE = ["NA", "null", "None", "nan", "N/A", "007"]
CLASSES = ["normal", "pneumonia", "COVID-19"]
REPS = ["data", "lungs_removed", "lungs_boxed_out"]


def test_every_reader_of_our_csvs_goes_through_read_table():
    offenders = [f"{path.relative_to(REPO)}:{n}" for folder in ("src/hideseek", "workflow/scripts")
                 for path in sorted((REPO / folder).rglob("*.py")) if path.name != "io.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bread_csv\(", line)]
    assert offenders == [], "use hideseek.io.read_table"


def test_read_table_keeps_na_like_strings_and_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("patient_id,source,value,note\n" + "".join(f"{p},{p},1.5,{p}\n" for p in NA_LIKE) + "x,y,,\n")
    table = read_table(path)
    assert table["patient_id"].tolist() == [*NA_LIKE, "x"] and table["source"].tolist() == [*NA_LIKE, "y"]
    assert table["note"].tolist()[:5] == NA_LIKE[:5]  # not a known text column: still no NA parsing
    assert table["value"].dtype == np.float64 and np.isnan(table["value"].iloc[-1])  # empty cell: missing


# ----------------------------------------------------------------------------- the store index

def index_frame():
    """Eight images: sources NA and rsna in every partition, patients named like missing values."""
    rows = []
    for k, (patient, partition) in enumerate(zip(NA_LIKE + ["p1", "p2"], ["train"] * 3 + ["val"] * 2 + ["test"] * 3)):
        rows.append(dict(image_id=f"{patient}.png", patient_id=patient, filename=f"{patient}.png".replace("/", "_"),
                         label=CLASSES[k % 3], source="NA" if k % 2 == 0 else "rsna", partition=partition,
                         split_file="train.txt", line=k + 1))
    return pd.DataFrame(rows)


def test_image_store_index(tmp_path):
    from hideseek.data.store import ImageStore

    frame = index_frame().assign(offset=np.arange(8) * 4, height=2, width=2)
    frame.to_csv(tmp_path / "images.csv", index=False)
    np.save(tmp_path / "pixels.npy", np.zeros(32, np.uint8))
    store = ImageStore(tmp_path / "pixels.npy", tmp_path / "images.csv")
    assert store.index["patient_id"].tolist() == frame["patient_id"].tolist()
    assert store.index["source"].tolist() == frame["source"].tolist() and store[7].shape == (2, 2)


def test_table1_script_on_source_na_and_patients_na_null_none(tmp_path):
    index = index_frame()
    index.to_csv(tmp_path / "images.csv", index=False)
    # One exact pair across partitions, between files named like missing values.
    pd.DataFrame(dict(line_a=["train.txt:1"], line_b=["train.txt:6"], file_a=["NA.png"], file_b=["N/A.png"],
                      partition_a=["train"], partition_b=["test"], kind=["exact"], correlation=[1.0],
                      action=["reported"])).to_csv(tmp_path / "duplicates.csv", index=False)
    out = SimpleNamespace(csv=str(tmp_path / "t1.csv"), md=str(tmp_path / "t1.md"), shortcut=str(tmp_path / "s.csv"))
    fake = SimpleNamespace(input=SimpleNamespace(index=str(tmp_path / "images.csv"),
                                                 duplicates=str(tmp_path / "duplicates.csv")), output=out,
                           params=SimpleNamespace(dataset="test"), log=[str(tmp_path / "table1.log")])
    handlers = logging.getLogger().handlers[:]
    try:
        runpy.run_path(str(REPO / "workflow" / "scripts" / "table1.py"), init_globals=dict(snakemake=fake))
    finally:
        logging.getLogger().handlers[:] = handlers
    counts = read_table(out.csv).set_index(["partition", "source"])
    assert counts.loc[("all", "all"), "patients"] == 8 and counts.loc[("all", "NA"), "total"] == 4
    assert counts.loc[("train", "NA"), "patients"] == 2  # patients NA and None
    table1_md = (tmp_path / "t1.md").read_text()
    assert "| NA " in table1_md
    assert "1 exact and 0 near pairs; 1 across partitions, 0 of them dropped from test" in table1_md


def test_mask_qc_reader_of_figure1(tmp_path):
    from hideseek.representations import pick_examples

    ids = ["low", "NA", "high", "flagged"]
    index = pd.DataFrame(dict(image_id=ids, label="normal", partition="test", source="s"))
    qc = pd.DataFrame(dict(image_id=ids, lung_fraction=[0.1, 0.3, 0.9, 0.3], flag=["", "", "", "too_small"]))
    qc.to_csv(tmp_path / "qc.csv", index=False)
    # The unflagged image nearest the median lung fraction is NA (lost to pandas' defaults).
    assert pick_examples(index, read_table(tmp_path / "qc.csv"), ["normal"]) == {"normal": 1}
    assert "read_table(inp.qc)" in (REPO / "workflow" / "scripts" / "figure1.py").read_text()


# ----------------------------------------------------------------------------- prediction files

def predictions(arch="alexnet"):
    """Each representation's model on its own test set and the data model on every test set:
    18 images of 6 patients named like missing values, sources NA and rsna."""
    rng = np.random.default_rng(0)
    frames = []
    for train_rep, test_rep in [(r, r) for r in REPS] + [("data", r) for r in REPS[1:]]:
        true = np.repeat(CLASSES, 6)
        predicted = np.where(rng.random(18) < 0.7, true, "normal")
        probs = np.full((18, 3), 0.1)
        probs[np.arange(18), [CLASSES.index(p) for p in predicted]] = 0.8
        frames.append(pd.DataFrame(dict(
            arch=arch, train_rep=train_rep, seed=0, test_rep=test_rep, image_id=[f"im{k:02d}" for k in range(18)],
            patient_id=np.tile(NA_LIKE, 3), source=np.tile(["NA", "rsna"], 9), true=true, predicted=predicted,
            p_normal=probs[:, 0], p_pneumonia=probs[:, 1], p_covid=probs[:, 2])))
    return pd.concat(frames, ignore_index=True)


def written_predictions(tmp_path):
    pred = predictions()
    files = []
    for rep, sub in pred.groupby("train_rep"):
        files.append(tmp_path / f"pred_{rep}.csv")
        sub.to_csv(files[-1], index=False)
    return pred, files


def test_prediction_files_read_by_the_audit_tables(tmp_path):
    from hideseek.audit.comparisons import write_audit_tables

    pred, files = written_predictions(tmp_path)
    out = [tmp_path / f"{name}.csv" for name in ("hiding", "comparison", "per_source", "auroc")]
    tables = write_audit_tables(files, REPS, *out, n_boot=20)
    per_source = tables["per_source"].query("representation == 'data'")
    assert sorted(set(per_source["source"])) == ["NA", "rsna"]  # not folded into 'unknown'
    own = pred[(pred["train_rep"] == "data") & (pred["test_rep"] == "data")]
    expected = own.groupby(["true", "source"])["patient_id"].nunique()
    assert per_source.set_index(["true", "source"])["n_patients"].sort_index().tolist() == expected.tolist()
    assert (tables["comparison"]["n_patients"] == 6).all()


def test_prediction_files_read_by_the_classifier_tables(tmp_path):
    from hideseek.classification.tables import write_classifier_table

    _, files = written_predictions(tmp_path)
    table = write_classifier_table("alexnet", files, tmp_path / "t.csv", tmp_path / "t.md", "test", n_boot=20)
    assert (table["n_patients"] == 6).all() and "18 test images of 6 patients" in (tmp_path / "t.md").read_text()


def test_verdict_index(tmp_path):
    from hideseek.audit.comparisons import representation_comparison
    from hideseek.audit.verdict import build_verdict

    index = index_frame()
    index.loc[index["partition"] == "test", "label"] = ["normal", "normal", "COVID-19"]
    index.to_csv(tmp_path / "images.csv", index=False)
    representation_comparison(predictions(), REPS, n_boot=20).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame([dict(representation="data", true_class="all", mask_ratio=1.0, mask_ratio_ci_low=0.9,
                       mask_ratio_ci_high=1.1, mask_energy_share=0.5)]).to_csv(tmp_path / "a.csv", index=False)
    verdict = build_verdict(tmp_path / "images.csv", [tmp_path / "c.csv"], [tmp_path / "a.csv"], None, ["alexnet"],
                            margin=0.1, learned_margin=0.1)
    assert verdict.loc[0, "chance"] == pytest.approx(2 / 3) and verdict.loc[0, "n_test_patients"] == 6


# ----------------------------------------------------------------------------- the source probe's index

def probe_store(tmp_path):
    """A store whose test normals come from sources NA and rsna (the probe's minimum)."""
    from hideseek.data.store import write_store

    rows = [dict(label=label, source=source, partition=partition)
            for partition in ("train", "val", "test")
            for label, source in (("normal", "NA"), ("normal", "rsna"), ("pneumonia", "NA"))]
    frame = pd.DataFrame(rows).assign(patient_id=[f"{p}{k}" for k, p in enumerate(["NA", "null", "None"] * 3)],
                                      split_file="train.txt", line=range(1, 10))
    frame["filename"] = frame["image_id"] = [f"im{k}.png" for k in range(9)]
    for name in frame["filename"]:
        write_png(tmp_path / "images" / name, gradient_image(20, 20))
    kept, problems = write_store(frame, tmp_path / "images", 20, tmp_path / "pixels.npy", progress=False)
    assert not problems
    kept.to_csv(tmp_path / "images.csv", index=False)
    return {f"{kind}_{rep}": str(tmp_path / ("pixels.npy" if kind == "pixels" else "images.csv"))
            for kind in ("pixels", "index") for rep in ("data",)}


def test_source_probe_index_keeps_source_na(tmp_path, monkeypatch):
    from hideseek.audit import source_probe
    from hideseek.classification import training

    files = probe_store(tmp_path)
    # Read with pandas' defaults, source NA is missing and every test class has a single source.
    assert source_probe.probe_skip_reason(pd.read_csv(files["index_data"])) is not None
    seen = {}

    class Stop(Exception):
        pass

    def fake_train(arch, recipe, train, val, *args, **kwargs):
        seen.update(n_sources=len(recipe["class_weights"]), labels=train.labels.tolist(),
                    sources=train.frame["source"].tolist())
        raise Stop

    monkeypatch.setattr(training, "train_classifier", fake_train)
    with pytest.raises(Stop):
        source_probe.write_source_probe("alexnet", dict(input_size=12), files, ["data"], tmp_path / "probe.csv",
                                        checkpoint_root=tmp_path / "ck")
    assert seen["n_sources"] == 2 and seen["sources"] == ["NA", "rsna", "NA"] and seen["labels"] == [0, 1, 0]
