import numpy as np
import pytest

from hideseek.errors import InputError
from hideseek.segmentation.pairing import index_seg_sets, pair_seg_folder
from hideseek.data.decode import read_mask

from conftest import gradient_image, write_png

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


def test_real_lung_masks_pair_and_decode(shared_real):
    seg = shared_real / "seg"
    table = index_seg_sets(dict(images=str(seg / "images"), masks=str(seg / "masks")), {})
    assert len(table) == 90
    assert table["lung_fraction"].between(0.05, 0.6).all()
