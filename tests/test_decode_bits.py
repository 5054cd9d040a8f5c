"""One 16-bit rule per data set: store.bits_stored, or one depth found from every image's peak,
never each image's own (two 12-bit images of one scanner must keep their relative brightness)."""

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO, write_png
from hideseek.data.decode import bit_depth_note, dataset_bits, read_gray, to_gray_uint8
from hideseek.data.store import ImageStore, write_store

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
SIDE = 16  # long_side = image size: the store keeps the pixels unresized


def twelve_bit(peak: int) -> np.ndarray:
    """A 16-bit image of 12-bit content: raw values 0, 1000 and 2048, and `peak`."""
    pixels = np.zeros((SIDE, SIDE), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1], pixels[0, 2] = 1000, 2048, peak
    return pixels


def two_images(tmp_path, peaks=(2048, 4000), extra=None):
    """Two 12-bit PNGs (peaks 2048 and 4000) and the frame write_store takes."""
    names = []
    for k, peak in enumerate(peaks):
        names.append(f"im{k}.png")
        write_png(tmp_path / "images" / names[-1], twelve_bit(peak))
    for name, pixels in (extra or {}).items():
        names.append(name)
        write_png(tmp_path / "images" / name, pixels)
    return pd.DataFrame(dict(image_id=names, patient_id=[f"p{k}" for k in range(len(names))], filename=names,
                             label="normal", source="s", partition="train", split_file="train.txt",
                             line=range(1, len(names) + 1)))


def stored(tmp_path, frame, bits_stored=None):
    kept, problems = write_store(frame, tmp_path / "images", SIDE, tmp_path / "pixels.npy", progress=False,
                                 bits_stored=bits_stored)
    assert not problems
    store = ImageStore(tmp_path / "pixels.npy", kept)
    return kept, [store[k] for k in range(len(store))]


def test_bits_stored_12_maps_one_raw_value_to_one_gray_in_both_images(tmp_path):
    low, high = (read_gray(write_png(tmp_path / f"{p}.png", twelve_bit(p)), bits_stored=12) for p in (2048, 4000))
    assert low[0, 0] == high[0, 0] == round(1000 * 255 / 4095)
    assert low[0, 1] == high[0, 1] == 128
    assert high[0, 2] == round(4000 * 255 / 4095)


def test_own_peak_rule_without_bits_stored_is_per_image():
    # What the store no longer does: per image, a peak of 2047 reads as 11-bit, 2048 as 12-bit,
    # and the same raw value 1000 comes out twice as bright in the first.
    below, above = (np.array([[1000, peak]], dtype=np.uint16) for peak in (2047, 2048))
    assert to_gray_uint8(below)[0, 0] == 125 and to_gray_uint8(above)[0, 0] == 62
    assert to_gray_uint8(below, 12)[0, 0] == to_gray_uint8(above, 12)[0, 0] == 62


def test_data_set_wide_rule_scales_every_16bit_image_by_the_largest_peak(tmp_path):
    kept, (low, high) = stored(tmp_path, two_images(tmp_path))
    assert low[0, 0] == high[0, 0] == round(1000 * 255 / 4095)  # 12-bit from 4000, for both
    assert low[0, 1] == high[0, 1] == 128
    assert kept["raw_bits"].tolist() == [16, 16] and kept["raw_peak"].tolist() == [2048, 4000]
    assert bit_depth_note(kept, None) == (
        "Bit depth: 2 of 2 images are 16-bit, all scaled by one depth, 12-bit (4095 -> 255): "
        "the smallest that holds their largest value, 4000 (store.bits_stored not set).")


def test_bits_stored_in_the_store_and_values_above_are_clipped_and_counted(tmp_path):
    frame = two_images(tmp_path, peaks=(2048, 5000))
    kept, (low, high) = stored(tmp_path, frame, bits_stored=12)
    assert low[0, 0] == high[0, 0] == round(1000 * 255 / 4095) and high[0, 2] == 255
    assert kept["raw_clipped"].tolist() == [0, 1]
    assert bit_depth_note(kept, 12) == (
        "Bit depth: 2 of 2 images are 16-bit, all scaled by one depth, 12-bit (4095 -> 255): store.bits_stored; "
        "their largest value is 5000. 1 image has 1 pixel above 4095, clipped to white: check "
        "store.bits_stored against the scanner's bit depth.")
    # Without bits_stored, 5000 needs 13 bits: nothing is clipped, both images are darker alike.
    kept, (low, high) = stored(tmp_path, frame)
    assert low[0, 1] == high[0, 1] == round(2048 * 255 / 8191)


def test_8bit_images_are_stored_as_they_are_beside_16bit_ones(tmp_path):
    gray8 = np.arange(SIDE * SIDE, dtype=np.uint8).reshape(SIDE, SIDE)
    kept, images = stored(tmp_path, two_images(tmp_path, extra={"eight.png": gray8}))
    assert np.array_equal(images[2], gray8) and kept["raw_bits"].tolist() == [16, 16, 8]
    assert np.array_equal(images[0], read_gray(tmp_path / "images" / "im0.png", bits_stored=12))
    only8, _ = stored(tmp_path, two_images(tmp_path, peaks=(), extra={"eight.png": gray8}))
    assert bit_depth_note(only8, None) == "Bit depth: all 1 images are 8-bit, stored as they are."


def test_dataset_bits():
    assert dataset_bits([2048, 4000]) == 12 and dataset_bits([], None) == 8 and dataset_bits([70000 // 2], 10) == 10


def test_schema_bits_stored_default_null_range_8_to_16():
    config = {}
    validate(config, SCHEMA)
    assert config["store"]["bits_stored"] is None
    validate({"store": {"bits_stored": 12}}, SCHEMA)
    for bad, message in ((7, "7 is less than the minimum of 8"), (17, "17 is greater than the maximum of 16")):
        with pytest.raises(WorkflowError, match=message):
            validate({"store": {"bits_stored": bad}}, SCHEMA)
    readme = (REPO / "config" / "README.md").read_text()
    assert "| `bits_stored` | null |" in readme
    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text()).get("store", {}).get("bits_stored") is None
