"""A hospital-style DICOM folder with a labels CSV, through ingestion, Table 1 and the workflow.

The folder is made from the shared real radiographs (cls-mini, downsampled to 64 px): nested
sub-folders, half the files without an extension (found by their preamble), patients and sites
in the headers only. Nothing here trains a model.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from hideseek import plan
from hideseek.data.decode import read_gray, resize_long_side
from hideseek.data.ingest import ingest_classification_data
from hideseek.data.store import ImageStore
from hideseek.data.table1 import write_table1
from hideseek.errors import InputError
from hideseek.io import read_table
from hideseek.segmentation.pairing import pair_seg_folder

from conftest import SHARED_REAL
from test_dicom import exact_window, make_dicom, save
from test_ingest import snakemake  # targets first, then the default config and ours on top

DATA_CFG = dict(on_missing="fail", val_fraction=0.2, split_seed=0, test_fraction=0.2, near_duplicate_threshold=0.98,
                on_duplicate="fail", source_rules=[], patient_from="PatientID",
                source_from="{InstitutionName}/{Manufacturer}")
SITES = {"kermany": dict(InstitutionName="Guangzhou", Manufacturer="ACME", ViewPosition="PA"),
         "mhh": dict(InstitutionName="Hannover", Manufacturer="Other Corp", ViewPosition="AP")}
PER_CLASS = 8


def cls_mini_rows():
    path = SHARED_REAL / "cls-mini" / "labels.txt"
    if not path.is_file():
        pytest.skip(f"real radiograph fixtures not found at {SHARED_REAL}")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    picked = []
    for label in ("normal", "pneumonia", "COVID-19"):
        picked += [row for row in rows if row[2] == label][:PER_CLASS]
    return picked


def write_dicom_folder(root: Path) -> tuple[Path, dict[str, np.ndarray], list[dict]]:
    """12-bit windowed DICOMs (MONOCHROME1 for one site) of 24 real radiographs at 64 px; one
    patient of each class has a second image. Returns (folder, PNG by SOPInstanceUID, CSV rows)."""
    folder = root / "dicom"
    pngs, rows = {}, []
    picked = cls_mini_rows()
    for position, (patient, name, label, site) in enumerate(picked):
        png = resize_long_side(read_gray(SHARED_REAL / "cls-mini" / "images" / name), 64)
        patient = patient if position % PER_CLASS != 1 else picked[position - 1][0]  # a second image
        stored = png.astype(np.int64) * 15 + 100
        photometric = "MONOCHROME1" if site == "mhh" else "MONOCHROME2"
        if photometric == "MONOCHROME1":
            stored = 4095 - stored
        window = exact_window(4095 - 3925, 4095 - 100) if site == "mhh" else exact_window(100, 3925)
        ds = make_dicom(stored, 12, photometric, **window, **SITES[site], PatientID=patient,
                        ImagerPixelSpacing=[0.5, 0.5])
        uid = ds.SOPInstanceUID
        relative = f"{site}/study{position // 4}/" + (f"IM{position:04d}" if position % 2 else f"{name[:-4]}.dcm")
        save(ds, folder / relative)
        pngs[uid] = png
        rows.append(dict(SOPInstanceUID=uid, filename=relative, label=label))
    return folder, pngs, rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    root = tmp_path_factory.mktemp("hospital")
    folder, pngs, rows = write_dicom_folder(root)
    return dict(root=root, folder=folder, pngs=pngs, rows=rows,
                by_uid=write_csv(root / "labels_uid.csv", rows, ["SOPInstanceUID", "label"]),
                by_name=write_csv(root / "labels_name.csv", rows, ["filename", "label"]))


def ingest(tmp_path, image_dir, labels_csv, cfg=None):
    out = tmp_path / "out"
    index = ingest_classification_data(
        {**DATA_CFG, **(cfg or {})}, 64, image_dir=image_dir, train_split=None, test_split=None,
        out_index=out / "images.csv", out_pixels=out / "pixels.npy", out_dropped=out / "dropped.csv",
        out_report=out / "report.md", out_duplicates=out / "duplicates.csv", labels_csv=labels_csv)
    return index, out


def test_folder_and_csv_by_uid_ingest_with_patients_sources_and_views_from_the_headers(tmp_path, hospital):
    index, out = ingest(tmp_path, hospital["folder"], hospital["by_uid"])
    stored = read_table(out / "images.csv")
    assert len(stored) == 3 * PER_CLASS
    assert set(stored["source"]) == {"Guangzhou/ACME", "Hannover/Other Corp"}
    assert (stored["source_origin"] == "header").all() and (stored["patient_id"] == stored["PatientID"]).all()
    assert stored["patient_id"].nunique() == 3 * PER_CLASS - 3  # one patient per class has two images
    assert (stored.groupby("patient_id")["partition"].nunique() == 1).all()  # carved by patient
    assert set(stored["partition"]) == {"train", "val", "test"}
    assert set(stored["ViewPosition"]) == {"PA", "AP"} and (stored["pixel_spacing_mm"] == "0.5\\0.5").all()
    assert (stored["pixel_spacing_tag"] == "ImagerPixelSpacing").all()
    # every stored image is the PNG it was made from, within one grey level (MONOCHROME1 ones too)
    store = ImageStore(out / "pixels.npy", stored)
    uids = {row["filename"]: row["SOPInstanceUID"] for row in hospital["rows"]}
    for position, name in enumerate(stored["filename"]):
        assert np.abs(store[position].astype(int) - hospital["pngs"][uids[name]]).max() <= 1, name
    report = (out / "report.md").read_text()
    assert "DICOM: 24 of 24 images" in report and "24 from DICOM headers (source_from)" in report
    assert "Test: carved, requested test_fraction 20%" in report


def test_the_same_csv_keyed_by_file_name_gives_the_same_index(tmp_path, hospital):
    by_uid, _ = ingest(tmp_path / "uid", hospital["folder"], hospital["by_uid"])
    by_name, _ = ingest(tmp_path / "name", hospital["folder"], hospital["by_name"])
    columns = ["filename", "patient_id", "label", "source", "partition", "ViewPosition"]
    assert by_uid[columns].sort_values("filename").reset_index(drop=True).equals(
        by_name[columns].sort_values("filename").reset_index(drop=True))


def test_bad_rows_and_bad_files_are_listed_per_line_and_per_file(tmp_path, hospital):
    rows = [dict(r) for r in hospital["rows"]]
    rows[0]["label"] = "covid-19"
    bad = write_csv(tmp_path / "bad.csv", rows, ["SOPInstanceUID", "label"])
    with pytest.raises(InputError, match=r"bad.csv:2: label 'covid-19' is not one of .*did you mean 'COVID-19'"):
        ingest(tmp_path, hospital["folder"], bad)
    with pytest.raises(InputError, match=r"needs exactly one key column, filename or SOPInstanceUID"):
        ingest(tmp_path, hospital["folder"], write_csv(tmp_path / "nokey.csv", rows, ["label"]))
    # a UID no file has, a corrupt DICOM and one without pixels: missing / unreadable images
    folder = tmp_path / "dicom"
    shutil.copytree(hospital["folder"], folder)
    rows = [dict(r) for r in hospital["rows"]]
    rows.append(dict(SOPInstanceUID="1.2.3.999", label="normal"))
    (folder / rows[3]["filename"]).write_bytes((folder / rows[3]["filename"]).read_bytes()[:-1000])
    ds = make_dicom(np.zeros((64, 64)), 8, PatientID="X")
    del ds.PixelData
    save(ds, folder / rows[5]["filename"])
    labels = write_csv(tmp_path / "labels.csv", rows, ["filename", "label"])
    rows[-1]["filename"] = "nowhere.dcm"
    labels = write_csv(tmp_path / "labels.csv", rows, ["filename", "label"])
    with pytest.raises(InputError) as failed:
        ingest(tmp_path, folder, labels)
    message = str(failed.value)
    assert "labels.csv:5:" in message and "do not decode" in message
    assert "labels.csv:7:" in message and "no pixel data" in message
    assert "labels.csv:26: image not found" in message
    uid_rows = write_csv(tmp_path / "uid.csv", rows, ["SOPInstanceUID", "label"])
    index, out = ingest(tmp_path / "drop", folder, uid_rows, dict(on_missing="drop"))
    dropped = pd.read_csv(out / "dropped.csv")
    assert len(index) == 3 * PER_CLASS - 2 and len(dropped) == 3
    assert dropped["reason"].str.contains("no DICOM file under .* has SOPInstanceUID 1.2.3.999").any()


def test_patient_from_needs_the_attribute_and_a_dicom_keyword(tmp_path, hospital):
    folder = tmp_path / "dicom"
    shutil.copytree(hospital["folder"], folder)
    first = hospital["rows"][0]
    ds = make_dicom(hospital["pngs"][first["SOPInstanceUID"]], 8, PatientID="")
    ds.SOPInstanceUID = first["SOPInstanceUID"]
    save(ds, folder / first["filename"])
    with pytest.raises(InputError, match=r"labels_uid.csv:2: .*: PatientID is empty \(classification_data.patient_from"):
        ingest(tmp_path, folder, hospital["by_uid"])
    with pytest.raises(InputError, match=r"classification_data.source_from: 'Manufactuer' is not a DICOM attribute"):
        ingest(tmp_path, hospital["folder"], hospital["by_uid"], dict(source_from="{InstitutionName}/{Manufactuer}"))
    with pytest.raises(InputError, match=r"no patient_id column .* set patient_from: PatientID"):
        ingest(tmp_path, hospital["folder"], hospital["by_uid"], dict(patient_from=None))


def test_split_files_mixing_png_and_dicom_record_headers_only_for_dicom(tmp_path, tiny_covidx):
    image_dir = Path(tiny_covidx["image_dir"])
    png = read_gray(image_dir / "nor00_0.png")
    save(make_dicom(png, 8, Manufacturer="ACME", ViewPosition="PA", PatientID="ignored"), image_dir / "nor00_0.dcm")
    train = Path(tiny_covidx["train_split"])
    train.write_text(train.read_text().replace("nor00_0.png", "nor00_0.dcm"))
    out = tmp_path / "out"
    index = ingest_classification_data(
        {**DATA_CFG, "patient_from": None, "source_from": "Manufacturer"}, 40, image_dir=image_dir,
        train_split=train, test_split=tiny_covidx["test_split"], out_index=out / "i.csv", out_pixels=out / "p.npy",
        out_dropped=out / "d.csv", out_report=out / "r.md", out_duplicates=out / "dup.csv")
    stored = read_table(out / "i.csv").set_index("filename")
    assert stored.at["nor00_0.dcm", "source"] == "ACME" and stored.at["nor00_0.dcm", "patient_id"] == "nor00"
    assert stored.at["nor00_0.dcm", "source_origin"] == "header" and stored.at["nor01_1.png", "source"] == "rsna"
    assert stored.drop(index="nor00_0.dcm")[["Manufacturer", "ViewPosition"]].isna().all().all()
    assert len(index) == len(stored)
    store = ImageStore(out / "p.npy", out / "i.csv")
    assert np.array_equal(store[list(stored.index).index("nor00_0.dcm")], png)


def test_table1_counts_classes_by_view_position(tmp_path, hospital):
    index, out = ingest(tmp_path, hospital["folder"], hospital["by_uid"])
    write_table1(read_table(out / "images.csv"), tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "s.csv", "test")
    text = (tmp_path / "t.md").read_text()
    assert "Images per class by view position (DICOM ViewPosition" in text
    row = next(line for line in text.splitlines() if line.startswith("| all") and "| AP" in line)
    assert [int(n) for n in row.strip("| ").split("|")[2:]] == [0, 0, PER_CLASS, PER_CLASS]  # COVID-19 all AP


def test_segmentation_folders_accept_dicom_images(tmp_path):
    images = sorted((SHARED_REAL / "seg" / "images").glob("*.png"))[:2]
    if not images:
        pytest.skip("no shared segmentation images")
    for image in images:
        save(make_dicom(read_gray(image), 8), tmp_path / "images" / f"{image.stem}.dcm")
        mask = cv2.imread(str(SHARED_REAL / "seg" / "masks" / image.name), cv2.IMREAD_GRAYSCALE)
        (tmp_path / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "masks" / image.name), mask)
    pairs = pair_seg_folder("train", dict(images=str(tmp_path / "images"), masks=str(tmp_path / "masks")))
    assert len(pairs) == 2 and all(Path(p).suffix == ".dcm" for p in pairs["image"])
    assert np.array_equal(read_gray(pairs["image"].iloc[0]), read_gray(images[0]))


def test_config_keys_of_the_other_kind_are_refused(config):
    config["classification_data"].update(kind="labels_csv", image_dir="x", labels_csv="y.csv", train_split="t.txt")
    with pytest.raises(InputError, match="classification_data.train_split does not apply to kind: labels_csv"):
        plan.check_config(config)
    # a config layered on one with split files (config/real_seg.yaml) unsets them with null
    config["classification_data"]["train_split"] = None
    plan.check_config(config)
    config["classification_data"].update(kind="covidx", labels_csv=None)
    with pytest.raises(InputError, match="classification_data.train_split is empty but kind: covidx needs it"):
        plan.check_config(config)


def test_workflow_runs_on_a_dicom_folder_with_a_labels_csv(tmp_path, hospital):
    """The whole workflow plans on it (dry run); ingest and Table 1 run for real."""
    config = tmp_path / "dicom.yaml"
    config.write_text(yaml.safe_dump({
        "classification_data": {"kind": "labels_csv", "image_dir": str(hospital["folder"]),
                                "labels_csv": str(hospital["by_uid"]), "patient_from": "PatientID",
                                "source_from": "{InstitutionName}/{Manufacturer}", "val_fraction": 0.2},
        "external_test_sets": {},
        "store": {"long_side": 36},
        "classification": {"architectures": ["covidnet_cxr3a"], "models": {"covidnet_cxr3a": {"input_size": 32}}}}))
    plan_text = snakemake(tmp_path, config, "-n")
    assert "rule ingest:" in plan_text and "train_classifier" in plan_text
    snakemake(tmp_path, config, "results/tables/table1_data.md")
    index = read_table(tmp_path / "results" / "data" / "images.csv")
    assert len(index) == 3 * PER_CLASS and set(index["Manufacturer"]) == {"ACME", "Other Corp"}
    table1 = (tmp_path / "results" / "tables" / "table1_data.md").read_text()
    assert "labelled by" in table1 and "Guangzhou/ACME" in table1 and "view position" in table1
    assert "Nothing to be done" in snakemake(tmp_path, config, "results/tables/table1_data.md", "-n")


def test_dicom_decoded_in_two_processes_gives_the_same_store(tmp_path, hospital):
    """write_store decodes DICOM in processes (the decoders hold the GIL): same images, same order."""
    from hideseek.data.store import write_store

    names = [row["filename"] for row in hospital["rows"]] + ["missing.dcm"]
    frame = pd.DataFrame(dict(filename=names, split_file="labels.csv", line=range(2, len(names) + 2)))
    stores = {}
    for threads in (1, 2):
        kept, problems = write_store(frame, hospital["folder"], 48, tmp_path / f"{threads}.npy", threads=threads,
                                     progress=False)
        assert [str(p) for p in problems] == [f"labels.csv:{len(names) + 1}: image not found: "
                                              f"{hospital['folder'] / 'missing.dcm'}"]
        stores[threads] = (kept.drop(columns=["split_file"]), np.load(tmp_path / f"{threads}.npy"))
    assert stores[1][0].equals(stores[2][0]) and np.array_equal(stores[1][1], stores[2][1])


def test_rule_inputs_are_the_listed_files_or_the_whole_folder(hospital):
    """Rule ingest's inputs (plan.labels_csv_images): by file name, the files the CSV lists that exist;
    by SOPInstanceUID, which only the headers hold, every file under image_dir."""
    folder = hospital["folder"]
    every = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    assert plan.labels_csv_images(str(folder), str(hospital["by_uid"])) == every
    assert sorted(plan.labels_csv_images(str(folder), str(hospital["by_name"]))) == every
    assert plan.labels_csv_images(str(folder), str(folder / "not_yet.csv")) == []


def test_report_warns_when_only_some_dicoms_carry_a_window(tmp_path, hospital):
    folder = tmp_path / "dicom"
    shutil.copytree(hospital["folder"], folder)
    first = hospital["rows"][0]
    ds = make_dicom(hospital["pngs"][first["SOPInstanceUID"]], 8, PatientID="kermany_IM-0001", **SITES["kermany"])
    ds.SOPInstanceUID = first["SOPInstanceUID"]
    save(ds, folder / first["filename"])
    _, out = ingest(tmp_path, folder, hospital["by_uid"])
    assert "**1 of the 24 DICOM images have no VOI LUT or window**" in (out / "report.md").read_text()
    _, out = ingest(tmp_path / "windowed", folder, hospital["by_uid"],
                    dict(dicom_window={"center": 2013, "width": 3826}))
    assert "no VOI LUT" not in (out / "report.md").read_text()
