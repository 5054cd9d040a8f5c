import logging
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from hideseek.errors import InputError
from hideseek.segmentation.pairing import (DEFAULT_MASK_CHECKS, index_seg_sets, pair_seg_folder,
                                           write_seg_index)
from hideseek.data.decode import read_mask

from conftest import REPO, gradient_image, write_png

TANG = dict(image_regex=r"^(?P<tag>.+?)(?P<k>\d)\.png$", mask_name="{tag}mask.png", group="{tag}")


def make_set(root, names, mask_for=lambda n: n, shape=(40, 32)):
    for name in names:
        write_png(root / "images" / name, gradient_image(*shape))
        mask = np.zeros(shape, np.uint8)
        mask[5:20, 4:12] = 255
        write_png(root / "masks" / mask_for(name), mask)
    return dict(images=str(root / "images"), masks=str(root / "masks"))


def test_tang_naming_groups_six_images_per_mask(tmp_path):
    names = [f"t{tag}{k}.png" for tag in ("01", "02") for k in range(6)]
    folder = make_set(tmp_path, names, mask_for=lambda n: n[:3] + "mask.png")
    pairs = pair_seg_folder("train", {**folder, **TANG})
    assert len(pairs) == 12
    assert pairs.groupby("group").size().to_dict() == {"t01": 6, "t02": 6}
    assert set(pairs["mask"].str.rsplit("/", n=1).str[1]) == {"t01mask.png", "t02mask.png"}


def test_missing_mask_and_shape_mismatch_are_listed(tmp_path):
    folder = make_set(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(InputError, match=r"1 problem\):\n.*b\.png: mask not found"):
        pair_seg_folder("nih", folder)
    write_png(tmp_path / "masks" / "b.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="image is 32x40 px but its mask .* is 10x10 px"):
        index_seg_sets(folder, {})


def test_bad_folder_and_regex_name_the_key(tmp_path):
    with pytest.raises(InputError, match=r"segmentation_data.train.images: folder not found"):
        pair_seg_folder("train", dict(images=str(tmp_path / "x"), masks=str(tmp_path)))
    folder = make_set(tmp_path, ["a.png"])
    with pytest.raises(InputError, match=r"\{tag\}, which image_regex does not capture"):
        pair_seg_folder("train", {**folder, "mask_name": "{tag}mask.png"})


def test_mask_binarisation_accepts_0_1_and_0_255(tmp_path):
    ones = np.zeros((10, 10), np.uint8)
    ones[2:5, 2:5] = 1
    assert read_mask(write_png(tmp_path / "m1.png", ones)).sum() == 9
    assert read_mask(write_png(tmp_path / "m255.png", ones * 255)).sum() == 9
    assert read_mask(write_png(tmp_path / "empty.png", ones * 0)).sum() == 0


def test_real_lung_masks_pair_decode_and_pass_the_mask_checks(shared_real):
    seg = shared_real / "seg"
    table, dropped = index_seg_sets(dict(images=str(seg / "images"), masks=str(seg / "masks")), {})
    assert len(table) == 90 and dropped.empty
    assert table["lung_fraction"].between(0.05, 0.6).all()
    assert list(table.columns) == ["set", "image", "mask", "group", "height", "width", "lung_fraction"]


# ----------------------------------------------------------------------------- ground-truth mask checks


def two_lungs(size=64):
    """A plausible 0/255 lung mask: two ellipses, about a quarter of the image."""
    mask = np.zeros((size, size), np.uint8)
    for centre_x, half_width in ((size * 3 // 10, size // 9), (size * 7 // 10, size // 8)):
        cv2.ellipse(mask, (centre_x, size // 2), (half_width, size * 3 // 10), 0, 0, 360, 255, -1)
    return mask


def bad_masks(size=64):
    """{case: (decoded mask, the reason with its numbers, as a regex)}."""
    rng = np.random.default_rng(0)
    tiny = np.zeros((size, size), np.uint8)
    tiny[30:33, 30:33] = 255
    photo = (60 + 2 * np.arange(size)[None, :] + rng.normal(0, 5, (size, size))).clip(0, 255).astype(np.uint8)
    large = np.full((size, size), 255, np.uint8)
    large[:4] = 0
    return {
        "empty": (np.zeros((size, size), np.uint8), r"empty \(no foreground pixel\)"),
        "near_empty": (tiny, r"near_empty \(lung fraction 0\.002 < min_lung_fraction 0\.05\)"),
        "noise": ((rng.random((size, size)) < 0.5).astype(np.uint8) * 255,
                  r"noise_like \(\d+ foreground regions, background in \d{3} pieces; max_components 20"),
        "photo": (photo, r"non_binary \(9\d% of pixels lie between its levels \d+ and \d+, more than "
                         r"max_gray_fraction 0\.2: a gray image, not a mask\)"),
        "large": (large, r"implausible_fraction \(lung fraction 0\.938 > max_lung_fraction 0\.7\)"),
    }


def mask_set(root, masks: dict[str, np.ndarray]):
    """A segmentation set: one random image per mask, plus one good pair (`good.png`)."""
    for name, mask in {"good": two_lungs(), **masks}.items():
        write_png(root / "images" / f"{name}.png", gradient_image(*mask.shape))
        write_png(root / "masks" / f"{name}.png", mask)
    return dict(images=str(root / "images"), masks=str(root / "masks"))


@pytest.mark.parametrize("case", list(bad_masks()))
def test_each_bad_mask_is_listed_with_its_reason(tmp_path, case):
    mask, reason = bad_masks()[case]
    with pytest.raises(InputError) as error:
        index_seg_sets(mask_set(tmp_path / "train", {}), {"nih": mask_set(tmp_path / "nih", {case: mask})})
    message = str(error.value)
    assert re.search(rf"{tmp_path}/nih/masks/{case}\.png: {reason}.* \(used by 1 image of test_sets\.nih\)",
                     message)
    assert "good.png" not in message and "1 problem" in message


def test_fail_lists_every_bad_mask_and_says_what_to_do(tmp_path):
    cases = bad_masks()
    with pytest.raises(InputError) as error:
        index_seg_sets(mask_set(tmp_path, {name: mask for name, (mask, _) in cases.items()}), {})
    message = str(error.value)
    assert message.startswith("segmentation_data: ground-truth masks that are not plausible lung masks (5 problems)")
    for name, (_, reason) in cases.items():
        assert re.search(rf"masks/{name}\.png: {reason}", message), name
    assert "Fix or replace these masks" in message and "segmentation_data.mask_checks.on_bad: drop" in message


def test_drop_leaves_the_pairs_out_and_lists_them(tmp_path, caplog):
    folder = mask_set(tmp_path / "train", {"empty": bad_masks()["empty"][0]})
    tests = {"nih": mask_set(tmp_path / "nih", {"noise": bad_masks()["noise"][0]})}
    out = tmp_path / "results" / "seg_sets.csv"
    with caplog.at_level(logging.WARNING):
        table = write_seg_index(folder, tests, out, out.with_name("seg_sets_dropped.csv"), dict(on_bad="drop"))
    assert sorted(table["image"].str.rsplit("/", n=1).str[1]) == ["good.png", "good.png"]
    assert list(table.columns) == ["set", "image", "mask", "group", "height", "width", "lung_fraction"]
    dropped = pd.read_csv(out.with_name("seg_sets_dropped.csv"))
    assert dropped[["set", "group"]].values.tolist() == [["train", "empty"], ["nih", "noise"]]
    assert dropped["reason"].str.startswith(("empty (", "noise_like (")).all()
    assert "2 problems" in caplog.text and "train/masks/empty.png: empty" in caplog.text


def test_drop_that_empties_a_set_stops_naming_the_set(tmp_path):
    folder = mask_set(tmp_path / "train", {})
    (tmp_path / "nih" / "masks").mkdir(parents=True)
    write_png(tmp_path / "nih" / "images" / "a.png", gradient_image(64, 64))
    write_png(tmp_path / "nih" / "masks" / "a.png", np.zeros((64, 64), np.uint8))
    nih = dict(images=str(tmp_path / "nih" / "images"), masks=str(tmp_path / "nih" / "masks"))
    with pytest.raises(InputError, match=r"segmentation_data.test_sets.nih: every mask is flagged"):
        index_seg_sets(folder, {"nih": nih}, dict(on_bad="drop"))


def test_a_shared_mask_is_listed_once_with_its_images(tmp_path):
    names = [f"t01{k}.png" for k in range(6)]
    folder = make_set(tmp_path, names, mask_for=lambda n: "t01mask.png", shape=(64, 64))
    write_png(tmp_path / "masks" / "t01mask.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match=r"\(1 problem\):\n.*t01mask\.png: empty .*\(used by 6 images of train\)"):
        index_seg_sets({**folder, **TANG}, {})


def test_anti_aliased_and_jpeg_masks_pass(tmp_path):
    blurred = cv2.blur(two_lungs(), (3, 3))
    assert len(np.unique(blurred)) > 2  # really anti-aliased
    folder = mask_set(tmp_path, {"blurred": blurred, "ones": (two_lungs() > 0).astype(np.uint8)})
    jpeg = dict(images=folder["images"], masks=str(tmp_path / "jpeg"), mask_name="{stem}.jpg")
    for name in ("good", "blurred", "ones"):  # JPEG ringing stays near the two levels
        (tmp_path / "jpeg").mkdir(exist_ok=True)
        assert cv2.imwrite(str(tmp_path / "jpeg" / f"{name}.jpg"), two_lungs(), [cv2.IMWRITE_JPEG_QUALITY, 75])
    table, dropped = index_seg_sets(folder, {"jpeg": jpeg})
    assert len(table) == 6 and dropped.empty


def test_blurred_real_masks_pass(shared_real, tmp_path):
    seg = shared_real / "seg"
    names = sorted(p.name for p in (seg / "masks").glob("*.png"))[::15]
    for name in names:
        gray = cv2.imread(str(seg / "masks" / name), cv2.IMREAD_GRAYSCALE)
        write_png(tmp_path / "masks" / name, cv2.blur(gray, (3, 3)))
    folder = dict(images=str(seg / "images"), masks=str(tmp_path / "masks"),
                  image_regex="^(?P<stem>" + "|".join(n[:-4] for n in names) + r")\.png$")
    table, dropped = index_seg_sets(folder, {})
    assert len(table) == len(names) and dropped.empty


def test_schema_defaults_are_the_code_defaults():
    from snakemake.utils import validate

    config = {}
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config["segmentation_data"]["mask_checks"] == DEFAULT_MASK_CHECKS
