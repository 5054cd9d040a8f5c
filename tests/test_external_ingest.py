"""An external set on real radiographs: ingested test-only into its own store, and checked against
the training data for shared patients, exact copies and near copies (re-encoded, rescaled)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from hideseek.data.ingest import ingest_classification_data
from hideseek.data.store import ImageStore
from hideseek.errors import InputError
from hideseek.external.ingest import OVERLAP_COLUMNS, ingest_external

DATA_CFG = dict(on_missing="fail", val_fraction=0.2, split_seed=0, test_fraction=0.2, near_duplicate_threshold=0.98,
                on_duplicate="fail", source_rules=[])
EXT_CFG = dict(kind="covidx", on_missing="fail", source_rules=[], near_duplicate_threshold=0.98, on_overlap="fail")
STORE = dict(long_side=64, bits_stored=None)


@pytest.fixture
def sites(tmp_path, shared_real):
    """A training store from two thirds of cls-mini, and an external split file of the last third
    plus an exact copy, a near copy (JPEG, 0.9 scale) of training images and a training patient."""
    lines = (shared_real / "cls-mini" / "labels.txt").read_text().splitlines()
    train, external = [l for i, l in enumerate(lines) if i % 3], [l for i, l in enumerate(lines) if not i % 3]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    out = tmp_path / "train_store"
    ingest_classification_data(DATA_CFG, 64, shared_real / "cls-mini" / "images", tmp_path / "train.txt", None,
                               out / "images.csv", out / "pixels.npy", out / "dropped.csv", out / "report.md",
                               out / "duplicates.csv")
    ext_dir = tmp_path / "ext_images"
    ext_dir.mkdir()
    for line in external:
        name = line.split()[1]
        shutil.copy(shared_real / "cls-mini" / "images" / name, ext_dir / name)  # in tmp_path (symlinks are refused)
    source = shared_real / "cls-mini" / "images"
    first, second, third = (next(l.split() for l in train if l.split()[2] == label)
                            for label in ("normal", "pneumonia", "COVID-19"))
    shutil.copy(source / first[1], ext_dir / "exact_copy.png")
    image = cv2.imread(str(source / second[1]), cv2.IMREAD_GRAYSCALE)
    _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    near = cv2.resize(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(ext_dir / "near_copy.png"), near)
    other = cv2.imread(str(source / external[-1].split()[1]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(ext_dir / "known_patient.png"), np.ascontiguousarray(other[:, ::-1]))  # a new image
    added = [f"newsite_1 exact_copy.png {first[2]} site_x", f"newsite_2 near_copy.png {second[2]} site_x",
             f"{third[0]} known_patient.png {third[2]} site_x"]
    (tmp_path / "ext.txt").write_text("\n".join(external + added) + "\n")
    return dict(train=out, ext_dir=ext_dir, split=tmp_path / "ext.txt", n_external=len(external),
                shared={"exact_copy.png": "exact", "near_copy.png": "near", "known_patient.png": "patient"})


def _outputs(folder):
    return {key: folder / name for key, name in (
        ("index", "images.csv"), ("pixels", "pixels.npy"), ("dropped", "dropped_lines.csv"),
        ("duplicates", "duplicates.csv"), ("overlap", "overlap.csv"), ("report", "ingest_report.md"))}


def _ingest(sites, folder, **cfg):
    return ingest_external("site2", {**EXT_CFG, **cfg}, STORE, sites["ext_dir"], sites["split"],
                           sites["train"] / "pixels.npy", sites["train"] / "images.csv", _outputs(folder))


def test_shared_patients_and_copies_of_training_images_fail_by_name(sites, tmp_path):
    with pytest.raises(InputError) as err:
        _ingest(sites, tmp_path / "fail")
    message = str(err.value)
    assert "external_test_sets.site2: 3 external image(s) share a patient or are copies" in message
    assert "exact_copy.png: an exact copy of training image" in message
    assert "near_copy.png: a near copy (correlation 0.9" in message
    assert "known_patient.png: patient" in message and "on_overlap: drop" in message
    assert not (tmp_path / "fail" / "pixels.npy").exists()


def test_drop_leaves_them_out_and_the_rest_is_a_test_only_store(sites, tmp_path):
    index = _ingest(sites, tmp_path / "drop", on_overlap="drop")
    out = _outputs(tmp_path / "drop")
    overlap = pd.read_csv(out["overlap"])
    assert list(overlap.columns) == OVERLAP_COLUMNS and (overlap["action"] == "dropped").all()
    assert dict(zip(overlap["image_id"], overlap["kind"])) == sites["shared"]
    assert len(index) == sites["n_external"] and not set(index["image_id"]) & set(sites["shared"])
    assert (index["partition"] == "test").all() and set(index["label"]) == {"normal", "pneumonia", "COVID-19"}
    store = ImageStore(out["pixels"], out["index"])
    assert len(store) == len(index) and max(store[len(store) - 1].shape) == 64
    assert np.load(out["pixels"]).size == int((index["height"] * index["width"]).sum())  # compacted
    report = out["report"].read_text()
    assert report.startswith("# Ingestion report: external_test_sets.site2")
    assert "Test only: every image of" in report and "## Shared with the training data (3 images)" in report
    assert "external_test_sets.site2.near_duplicate_threshold" in report


def test_a_clean_external_set_passes_and_a_missing_image_names_the_key(sites, tmp_path):
    lines = sites["split"].read_text().splitlines()[:-3]
    sites["split"].write_text("\n".join(lines + ["ghost1 ghost.png normal site_x"]) + "\n")
    with pytest.raises(InputError, match=r"(?s)external_test_sets\.site2: .*ghost\.png.*external_test_sets\.site2\."
                                         r"on_missing: drop"):
        _ingest(sites, tmp_path / "missing")
    index = _ingest(sites, tmp_path / "clean", on_missing="drop")
    assert len(index) == sites["n_external"] and pd.read_csv(tmp_path / "clean" / "overlap.csv").empty
    assert "None: no external patient or image is in the training data." in (
        tmp_path / "clean" / "ingest_report.md").read_text()


def test_an_external_dicom_folder_with_a_labels_csv(sites, tmp_path, shared_real):
    """Another site's DICOMs keyed by SOPInstanceUID, patient and source from the headers; the
    DICOM of a training image is found as an exact copy of it."""
    from test_dicom import make_dicom, save  # the DICOM tests' writer (pydicom)

    rows = []
    external = [line.split() for line in sites["split"].read_text().splitlines()[:sites["n_external"]]]
    lines = [l for label in ("normal", "pneumonia", "COVID-19") for l in [l for l in external if l[2] == label][:3]]
    assert len({l[1] for l in lines}) == 9  # 9 distinct external images, 3 per class
    first_training = pd.read_csv(sites["train"] / "images.csv").iloc[0]
    lines.append(["newsite_9", first_training["filename"], first_training["label"], "x"])
    for k, (patient, name, label, _) in enumerate(lines):
        pixels = cv2.imread(str(shared_real / "cls-mini" / "images" / name), cv2.IMREAD_GRAYSCALE)
        ds = make_dicom(pixels, 8, PatientID=f"site2-{patient}", Manufacturer="VendorX" if k % 2 else "VendorY")
        save(ds, tmp_path / "dicom" / f"study{k // 4}" / f"IM{k:04d}")
        rows.append(dict(SOPInstanceUID=ds.SOPInstanceUID, label=label))
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    cfg = {**EXT_CFG, "kind": "labels_csv", "patient_from": "PatientID", "source_from": "Manufacturer",
           "dicom_window": 0, "on_overlap": "drop"}
    index = ingest_external("site2", cfg, STORE, tmp_path / "dicom", None, sites["train"] / "pixels.npy",
                            sites["train"] / "images.csv", _outputs(tmp_path / "out"), labels_csv=tmp_path / "labels.csv")
    assert len(index) == 9 and (index["partition"] == "test").all()
    assert set(index["source"]) == {"VendorX", "VendorY"} and index["patient_id"].str.startswith("site2-").all()
    overlap = pd.read_csv(tmp_path / "out" / "overlap.csv")
    assert list(overlap["kind"]) == ["exact"] and overlap.loc[0, "training_image_id"] == first_training["image_id"]
    # the report names the labels CSV the test images came from
    assert f"Test only: every image of {tmp_path / 'labels.csv'} is a test image" in (tmp_path / "out" / "ingest_report.md").read_text()
