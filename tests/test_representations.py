"""The five representations: pixel identities on a constructed image and mask, boxes, stores, Figure 1."""

import numpy as np
import pandas as pd
import pytest

from hideseek.vocabulary import REPRESENTATIONS
from hideseek.representations import all_representations, figure1, represent, write_representation
from hideseek.segmentation.components import keep_largest_components, lung_box
from hideseek.data.store import write_derived_store
from hideseek.data.store import ImageStore


def constructed():
    """A 30x40 image (values 1..255, never 0) with two 'lungs' and a one-pixel speck."""
    rng = np.random.default_rng(3)
    image = rng.integers(1, 256, size=(30, 40), dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 4:12] = True  # left lung: rows 5-19, cols 4-11
    mask[8:12, 12] = True  # a bulge: the left box reaches column 12
    mask[6:25, 24:33] = True  # right lung: rows 6-24, cols 24-32
    mask[5, 33] = True  # touches the right lung diagonally only: the right box grows to row 5, col 33
    mask[27, 38] = True  # a speck: the third component, excluded from the box
    return image, mask


def test_box_is_union_of_one_tight_box_per_lung():
    _, mask = constructed()
    box = lung_box(mask)
    expected = np.zeros_like(mask)
    expected[5:20, 4:13] = True
    expected[5:25, 24:34] = True
    assert np.array_equal(box, expected)
    assert not box[27, 38]  # the speck is neither kept nor boxed


def test_representation_identities():
    image, mask = constructed()
    reps = all_representations(image, mask)
    box = lung_box(mask)
    assert set(reps) == set(REPRESENTATIONS)
    for rep in REPRESENTATIONS:
        assert reps[rep].dtype == np.uint8 and reps[rep].shape == image.shape
    assert np.array_equal(reps["data"], image)
    # isolated + removed and framed + boxed_out partition the image (fill value 0)
    assert np.array_equal(reps["lungs_isolated"].astype(int) + reps["lungs_removed"], image)
    assert np.array_equal(reps["lungs_framed"].astype(int) + reps["lungs_boxed_out"], image)
    # exact pixel rules
    assert np.array_equal(reps["lungs_isolated"], np.where(mask, image, 0))
    assert np.array_equal(reps["lungs_removed"], np.where(mask, 0, image))
    assert np.array_equal(reps["lungs_framed"], np.where(box, image, 0))
    assert np.array_equal(reps["lungs_boxed_out"], np.where(box, 0, image))
    # the pixels of the lungs proper (not the speck) are inside the frame
    lungs = keep_largest_components(mask)
    assert np.array_equal(reps["lungs_framed"][lungs], image[lungs])
    assert (reps["lungs_boxed_out"][lungs] == 0).all()
    # the speck is a lung pixel (hidden by lungs_removed) but outside the box
    assert reps["lungs_removed"][27, 38] == 0 and reps["lungs_boxed_out"][27, 38] == image[27, 38]


def test_empty_mask_hides_nothing_outside_and_everything_inside():
    image, _ = constructed()
    reps = all_representations(image, np.zeros(image.shape, bool))
    assert not reps["lungs_isolated"].any() and not reps["lungs_framed"].any()
    assert np.array_equal(reps["lungs_removed"], image)
    assert np.array_equal(reps["lungs_boxed_out"], image)


def test_two_largest_components_with_8_connectivity():
    mask = np.zeros((12, 12), bool)
    mask[0:3, 0:3] = True  # 9 px
    mask[3, 3] = True  # diagonal neighbour: same component (10 px) under 8-connectivity
    mask[0:2, 8:12] = True  # 8 px
    mask[8:11, 8:10] = True  # 6 px
    mask[10, 0] = True  # 1 px
    kept = keep_largest_components(mask, 2)
    assert kept[3, 3] and kept[0, 0] and kept[0, 8]
    assert not kept[8:11, 8:10].any() and not kept[10, 0]
    assert kept.sum() == 18
    # fewer components than asked: all kept
    assert np.array_equal(keep_largest_components(mask, 10), mask)
    assert not keep_largest_components(np.zeros((5, 5), bool)).any()


def test_unknown_representation_and_shape_mismatch():
    image, mask = constructed()
    with pytest.raises(ValueError, match="unknown representation"):
        represent(image, mask, "lungs_blurred")
    with pytest.raises(ValueError, match="mask is"):
        represent(image, mask[:-1], "lungs_isolated")


def make_store(tmp_path, shapes, labels=None):
    rng = np.random.default_rng(0)
    images = [rng.integers(1, 256, size=s, dtype=np.uint8) for s in shapes]
    offsets = np.cumsum([0] + [h * w for h, w in shapes[:-1]])
    labels = labels or ["normal"] * len(shapes)
    index = pd.DataFrame(dict(image_id=[f"img{i}.png" for i in range(len(shapes))], filename=[f"img{i}.png" for i in range(len(shapes))],
                              label=labels, source="site", partition="test", offset=offsets,
                              height=[s[0] for s in shapes], width=[s[1] for s in shapes]))
    pixels = tmp_path / "data" / "pixels.npy"
    write_derived_store(index, images, pixels, tmp_path / "data" / "images.csv")
    return ImageStore(pixels, tmp_path / "data" / "images.csv"), images


def test_representation_stores_mirror_the_image_store(tmp_path):
    shapes = [(30, 40), (25, 20), (40, 33)]
    store, images = make_store(tmp_path, shapes)
    masks = []
    for h, w in shapes:
        m = np.zeros((h, w), np.uint8)
        m[2:h // 2, 2:w // 3] = 255
        m[2:h // 2, w // 2:w - 2] = 255
        masks.append(m)
    write_derived_store(store.index, masks, tmp_path / "m" / "pixels.npy", tmp_path / "m" / "images.csv")
    mask_store = ImageStore(tmp_path / "m" / "pixels.npy", tmp_path / "m" / "images.csv")
    for rep in REPRESENTATIONS:
        out = tmp_path / rep
        write_representation(store, None if rep == "data" else mask_store, rep, out / "pixels.npy", out / "images.csv",
                             progress=False)
        rep_store = ImageStore(out / "pixels.npy", out / "images.csv")
        assert rep_store.index.equals(store.index)
        for i in range(len(store)):
            assert np.array_equal(rep_store[i], represent(images[i], masks[i] > 0, rep))


def test_derived_store_rejects_wrong_shapes_and_counts(tmp_path):
    store, images = make_store(tmp_path, [(10, 12), (8, 9)])
    with pytest.raises(ValueError, match="the index says"):
        write_derived_store(store.index, [images[0], images[0]], tmp_path / "x.npy", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="got 1 images for 2"):
        write_derived_store(store.index, images[:1], tmp_path / "x.npy", tmp_path / "x.csv")
    assert not (tmp_path / "x.npy").exists()


def test_figure1_one_row_per_class(tmp_path):
    shapes = [(40, 36)] * 3
    store, _ = make_store(tmp_path, shapes, labels=["normal", "pneumonia", "COVID-19"])
    mask = np.zeros((40, 36), np.uint8)
    mask[5:30, 3:15] = 255
    mask[5:30, 20:33] = 255
    write_derived_store(store.index, [mask] * 3, tmp_path / "m" / "pixels.npy", tmp_path / "m" / "images.csv")
    shown = figure1(store, ImageStore(tmp_path / "m" / "pixels.npy", tmp_path / "m" / "images.csv"),
                    tmp_path / "fig1.png")
    assert list(shown["label"]) == ["normal", "pneumonia", "COVID-19"]
    assert (tmp_path / "fig1.png").stat().st_size > 1000
