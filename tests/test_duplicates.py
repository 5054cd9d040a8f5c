"""Copies of one image, by name and by content: across partitions an error (or dropped from
test), within one partition reported; carving keeps them together."""

import shutil
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from hideseek.data.duplicates import find_copies, near_pairs
from hideseek.data.store import ImageStore
from hideseek.errors import InputError

from conftest import write_png
from test_ingest import run_ingest


def radiograph_like(seed: int, height: int = 200, width: int = 160) -> np.ndarray:
    """Smooth structure plus fine detail, like a radiograph (pure noise has no near copies)."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 6)
    field += 0.05 * cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1.5)
    field = (field - field.min()) / (field.max() - field.min())
    return np.rint(255 * field).astype(np.uint8)


def near_copy(image: np.ndarray) -> np.ndarray:
    """The same picture saved as JPEG quality 90 and resized by 0.9."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    size = (round(image.shape[1] * 0.9), round(image.shape[0] * 0.9))
    return cv2.resize(decoded, size, interpolation=cv2.INTER_AREA)


def append(split, *lines):
    with open(split, "a") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
    return len(split.read_text().splitlines())  # the last line's number


def nothing_left(tmp_path):
    out = tmp_path / "out"
    return not out.exists() or list(out.iterdir()) == []


def add_near_copy(covidx, where_copy="test"):
    """An original in train (patient orig) and a JPEG/resized copy under another patient."""
    image = radiograph_like(1)
    write_png(covidx["image_dir"] / "orig.png", image)
    cv2.imwrite(str(covidx["image_dir"] / "copy.jpg"), near_copy(image))
    train_line = append(covidx["train_split"], "orig orig.png normal rsna")
    copy_line = append(covidx[f"{where_copy}_split"], "other copy.jpg normal rsna")
    return train_line, copy_line


def test_same_file_under_two_spellings_across_train_and_test_names_both_lines(tmp_path, tiny_covidx):
    write_png(tiny_covidx["image_dir"] / "x.png", radiograph_like(0))
    train_line = append(tiny_covidx["train_split"], "px ./x.png normal rsna")
    test_line = append(tiny_covidx["test_split"], "px sub/../x.png normal rsna")
    with pytest.raises(InputError) as error:
        run_ingest(tmp_path, tiny_covidx)
    message = str(error.value)
    assert (f"{tiny_covidx['test_split']}:{test_line}: 'sub/../x.png' is also listed at "
            f"{tiny_covidx['train_split']}:{train_line} as './x.png', with partition 'test' here, 'train' there") in message
    assert nothing_left(tmp_path)


def test_byte_identical_copy_under_another_patient_in_test_is_an_error(tmp_path, tiny_covidx):
    shutil.copy(tiny_covidx["image_dir"] / "nor00_0.png", tiny_covidx["image_dir"] / "copy.png")
    test_line = append(tiny_covidx["test_split"], "newpatient copy.png normal rsna")
    with pytest.raises(InputError) as error:
        run_ingest(tmp_path, tiny_covidx)
    message = str(error.value)
    assert "copies of one image are in more than one partition" in message
    assert (f"{tiny_covidx['test_split']}:{test_line}: 'copy.png' (test) is an exact copy of 'nor00_0.png' at "
            f"{tiny_covidx['train_split']}:1 (") in message
    assert "on_duplicate: drop_from_test" in message
    assert nothing_left(tmp_path)


def test_reencoded_resized_copy_is_a_near_duplicate(tmp_path, tiny_covidx):
    train_line, copy_line = add_near_copy(tiny_covidx)
    with pytest.raises(InputError) as error:
        run_ingest(tmp_path, tiny_covidx)
    message = str(error.value)
    print(message)
    assert f"{tiny_covidx['test_split']}:{copy_line}: 'copy.jpg' (test) is a near copy (correlation 0.99" in message
    assert f"of 'orig.png' at {tiny_covidx['train_split']}:{train_line} (" in message
    assert "near_duplicate_threshold" in message
    assert nothing_left(tmp_path)
    # With near copies off, only exact copies are looked for: this one passes.
    index, _ = run_ingest(tmp_path, tiny_covidx, {"near_duplicate_threshold": None})
    assert "copy.jpg" in set(index["filename"])


def test_drop_from_test_drops_the_copy_and_reports_it(tmp_path, tiny_covidx):
    train_line, copy_line = add_near_copy(tiny_covidx)
    index, out = run_ingest(tmp_path, tiny_covidx, {"on_duplicate": "drop_from_test"})
    assert "copy.jpg" not in set(index["filename"]) and "orig.png" in set(index["filename"])
    dropped = pd.read_csv(out / "dropped.csv")
    assert dropped["line"].tolist() == [copy_line]
    assert dropped["reason"][0].startswith(f"copy of 'orig.png' at {tiny_covidx['train_split']}:{train_line} (")
    assert dropped["reason"][0].endswith("dropped from test (classification_data.on_duplicate: drop_from_test)")
    pairs = pd.read_csv(out / "duplicates.csv")
    assert pairs.columns.tolist() == ["line_a", "line_b", "file_a", "file_b", "partition_a", "partition_b", "kind",
                                      "correlation", "action"]
    row = pairs.iloc[0]
    assert (row.file_a, row.file_b, row.partition_b, row.kind, row.action) == (
        "orig.png", "copy.jpg", "test", "near", "dropped_from_test")
    assert row.line_b == f"{tiny_covidx['test_split']}:{copy_line}" and row.correlation >= 0.98
    report = (out / "report.md").read_text()
    assert "## Duplicates" in report and "| near    |                    0 |                   1 |" in report
    # The store was compacted: it holds exactly the indexed images, each where the index says.
    store = ImageStore(out / "pixels.npy", out / "images.csv")
    assert store.pixels.size == int((store.index["height"] * store.index["width"]).sum())
    assert np.array_equal(store[len(store) - 1].shape, store.index.loc[len(store) - 1, ["height", "width"]])


def test_copies_within_one_partition_are_reported_and_carved_together(tmp_path, tiny_covidx):
    add_near_copy(tiny_covidx, where_copy="train")
    shutil.copy(tiny_covidx["image_dir"] / "pne01_0.png", tiny_covidx["image_dir"] / "twin.png")
    append(tiny_covidx["train_split"], "twinpatient twin.png pneumonia cohen")
    for seed in range(4):  # the pairs are never split between train and val
        index, out = run_ingest(tmp_path, tiny_covidx, {"split_seed": seed})
        pairs = pd.read_csv(out / "duplicates.csv").set_index("file_b")
        assert set(pairs.index) == {"copy.jpg", "twin.png"}
        assert (pairs["action"] == "reported").all()
        assert (pairs["partition_a"] == pairs["partition_b"]).all()
        assert pairs.loc["twin.png", "kind"] == "exact" and pairs.loc["copy.jpg", "kind"] == "near"
        assert pd.read_csv(out / "dropped.csv").empty


def store_of(images):
    flat = np.concatenate([image.ravel() for image in images])
    sizes = [image.size for image in images]
    index = pd.DataFrame(dict(offset=np.cumsum([0, *sizes[:-1]]), height=[i.shape[0] for i in images],
                              width=[i.shape[1] for i in images]))
    return flat, index


def test_find_copies_exact_and_near_pairs():
    base = [cv2.resize(radiograph_like(seed), (51, 64), interpolation=cv2.INTER_AREA) for seed in range(6)]
    near = cv2.resize(near_copy(base[2]), (51, 64), interpolation=cv2.INTER_AREA)
    images = [*base, base[4].copy(), near, np.full((64, 51), 7, np.uint8), np.full((64, 51), 7, np.uint8)]
    pairs = find_copies(*store_of(images), threshold=0.98)
    found = {(a, b, kind) for a, b, kind in pairs[["a", "b", "kind"]].itertuples(index=False)}
    assert found == {(4, 6, "exact"), (2, 7, "near"), (8, 9, "exact")}
    assert find_copies(*store_of(images), threshold=None)["kind"].eq("exact").all()


def test_near_pairs_on_5000_thumbnails_is_fast_and_finds_planted_copies():
    rng = np.random.default_rng(0)
    thumbs = rng.standard_normal((5000, 1024)).astype(np.float32)
    thumbs[4321] = thumbs[17] + 0.01 * rng.standard_normal(1024)  # a near copy
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    thumbs /= np.linalg.norm(thumbs, axis=1, keepdims=True)
    start = time.perf_counter()
    i, j, r = near_pairs(thumbs, 0.98)
    print(f"near_pairs on 5,000 thumbnails: {time.perf_counter() - start:.2f} s")
    assert list(zip(i, j)) == [(17, 4321)] and r[0] > 0.99
