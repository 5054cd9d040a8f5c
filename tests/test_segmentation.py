"""Lung segmentation: geometry, post-processing, mask QC policies, Table 2 metrics, training and resume."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from hideseek.errors import InputError
from hideseek.segmentation.masks import ground_truth_masks, mask_qc, segment_store
from hideseek.data.store import write_derived_store
from hideseek.segmentation.table2 import METRICS, image_metrics, PAPER_TABLE2, summarize, table2_markdown
from hideseek.segmentation.inference import LungSegmenter, postprocess
from hideseek.segmentation.network import build_unet, load_model
from hideseek.devices import set_threads
from hideseek.segmentation.geometry import image_to_model, mask_to_model, model_to_image, pad_square
from hideseek.segmentation.training import exclude_test_images, grouped_split, train_unet
from hideseek.data.store import ImageStore

from conftest import write_png

TINY = dict(
    masks="predicted", device="cpu", threads=1, seed=0, image_size=32,
    network=dict(channels=[4, 8, 16], num_res_units=1, norm="batch", dropout=0.0),
    train=dict(epochs=2, batch_size=4, learning_rate=0.01, weight_decay=0.0, scheduler="cosine", val_fraction=0.25,
               augment=dict(enabled=True, rotate_deg=10, scale=0.1, translate=0.08, intensity=0.1)),
    inference=dict(batch_size=3, keep_components=2, fill_holes=False),
    qc=dict(min_lung_fraction=0.05, max_lung_fraction=0.65, min_component_ratio=0.25, on_flagged="mean_mask",
            max_flagged_fraction=0.5),
    figure1_partition="test",
)


def two_lungs(height=40, width=32, shift=0):
    mask = np.zeros((height, width), bool)
    mask[8:30, 3 + shift:13 + shift] = True
    mask[8:32, 18 + shift:28 + shift] = True
    return mask


# ----------------------------------------------------------------------------- geometry, post-processing


def test_pad_resize_and_back_restores_the_geometry():
    mask = two_lungs(40, 24)
    square, (top, left) = pad_square(mask.astype(np.uint8))
    assert square.shape == (40, 40) and (top, left) == (0, 8)
    back = model_to_image(mask_to_model(mask, 80).astype(np.float32), mask.shape) > 0.5
    assert back.shape == mask.shape
    assert np.array_equal(back, mask)  # x2 up then exact crop back
    assert image_to_model(np.full((30, 50), 7, np.uint8), 25).shape == (25, 25)


def test_postprocess_keeps_two_largest_and_fills_holes_only_when_asked():
    prob = np.zeros((20, 20), np.float32)
    prob[2:10, 2:8] = 0.9
    prob[5, 5] = 0.1  # a hole
    prob[2:12, 11:18] = 0.8
    prob[16:18, 2:4] = 0.7  # a speck, dropped
    raw, mask = postprocess(prob)
    assert raw[16, 2] and not mask[16, 2]
    assert not mask[5, 5]
    _, filled = postprocess(prob, fill_holes=True)
    assert filled[5, 5]
    _, empty = postprocess(np.zeros((8, 8), np.float32))
    assert not empty.any()


# ----------------------------------------------------------------------------- QC and the flagged-mask policy


def test_mask_qc_flags():
    good = two_lungs()
    assert mask_qc(good, good, TINY["qc"])["flag"] == ""
    empty = np.zeros_like(good)
    row = mask_qc(empty, empty, TINY["qc"])
    assert row["flag"] == "empty" and row["n_kept"] == 0 and row["lung_fraction"] == 0
    one = good.copy()
    one[:, 16:] = False
    assert "one_component" in mask_qc(one, one, TINY["qc"])["flag"]
    small = good.copy()
    small[8:29, 18:28] = False
    assert "unbalanced" in mask_qc(small, small, TINY["qc"])["flag"]
    big = np.ones_like(good)
    assert "too_large" in mask_qc(big, big, TINY["qc"])["flag"]


def mask_store_fixture(tmp_path, n=6):
    shapes = [(40, 32)] * n
    rng = np.random.default_rng(1)
    images = [rng.integers(1, 255, size=s, dtype=np.uint8) for s in shapes]
    index = pd.DataFrame(dict(
        image_id=[f"p{i}.png" for i in range(n)], filename=[f"p{i}.png" for i in range(n)],
        label=["normal", "pneumonia", "COVID-19"] * (n // 3), source="site", partition="test",
        offset=np.arange(n) * 40 * 32, height=40, width=32))
    write_derived_store(index, images, tmp_path / "data" / "pixels.npy", tmp_path / "data" / "images.csv")
    return ImageStore(tmp_path / "data" / "pixels.npy", tmp_path / "data" / "images.csv")


def run_segment_store(tmp_path, store, masks, policy, max_fraction=0.5):
    cfg = copy.deepcopy(TINY)
    cfg["qc"].update(on_flagged=policy, max_flagged_fraction=max_fraction)
    out = tmp_path / policy
    qc = segment_store(store, ((m, m) for m in masks), cfg, out / "pixels.npy", out / "images.csv", out / "qc.csv",
                       out / "summary.csv", out / "summary.md", progress=False)
    return qc, ImageStore(out / "pixels.npy", out / "images.csv")


def test_empty_mask_policy(tmp_path):
    store = mask_store_fixture(tmp_path)
    masks = [two_lungs(shift=i % 2) for i in range(len(store))]
    masks[1] = np.zeros((40, 32), bool)

    qc, out = run_segment_store(tmp_path, store, masks, "keep")
    assert qc.loc[1, "flag"] == "empty" and qc.loc[1, "action"] == "kept"
    assert not out[1].any() and set(np.unique(out[0])) == {0, 255}

    qc, out = run_segment_store(tmp_path, store, masks, "mean_mask")
    assert qc.loc[1, "action"] == "replaced_by_mean_mask"
    # the mean of the unflagged masks (shifted by 0 or 1 px) covers the common lung area
    assert (out[1] > 0)[two_lungs() & two_lungs(shift=1)].all()
    assert np.array_equal(out[0] > 0, masks[0])
    assert out.index.equals(store.index)
    summary = (tmp_path / "mean_mask" / "summary.md").read_text()
    assert "empty: 1" in summary and "Lung area by class" in summary

    with pytest.raises(InputError, match=r"p1\.png: empty"):
        run_segment_store(tmp_path, store, masks, "fail")
    assert not (tmp_path / "fail" / "pixels.npy").exists()

    masks[2] = masks[3] = masks[4] = np.zeros((40, 32), bool)
    with pytest.raises(InputError, match=r"more than segmentation.qc.max_flagged_fraction"):
        run_segment_store(tmp_path, store, masks, "keep", max_fraction=0.25)


def test_ground_truth_masks_are_resized_nearest(tmp_path):
    store = mask_store_fixture(tmp_path, n=3)
    for i in range(3):
        write_png(tmp_path / "truth" / f"p{i}.png", two_lungs(80, 64).astype(np.uint8) * 255)
    masks = list(ground_truth_masks(store.index, tmp_path / "truth"))
    assert all(m.shape == (40, 32) for m, _ in masks)
    assert set(np.unique(masks[0][0])) == {False, True}
    (tmp_path / "truth" / "p2.png").unlink()
    with pytest.raises(InputError, match="p2.png: ground-truth mask not found"):
        list(ground_truth_masks(store.index, tmp_path / "truth"))


# ----------------------------------------------------------------------------- Table 2 metrics


def test_table2_metrics_match_hand_computed_values():
    truth = np.zeros((4, 4), bool)
    truth[1:3, 1:3] = True  # 4 lung px
    pred = np.zeros((4, 4), bool)
    pred[1:3, 1:4] = True  # 6 px: TP 4, FP 2, FN 0, TN 10
    m = image_metrics(pred, truth)
    assert m[("lung", "recall")] == pytest.approx(1.0)
    assert m[("lung", "precision")] == pytest.approx(4 / 6)
    assert m[("lung", "jaccard")] == pytest.approx(4 / 6)
    assert m[("lung", "f1")] == pytest.approx(2 * 4 / (2 * 4 + 2))
    assert m[("lung", "dice")] == pytest.approx(0.8)
    assert m[("lung", "accuracy")] == pytest.approx(14 / 16)
    # background as the positive class: TP 10, FP 0, FN 2
    assert m[("background", "recall")] == pytest.approx(10 / 12)
    assert m[("background", "precision")] == pytest.approx(1.0)
    assert m[("background", "jaccard")] == pytest.approx(10 / 12)
    assert m[("background", "f1")] == pytest.approx(20 / 22)
    assert m[("background", "accuracy")] == pytest.approx(14 / 16)


def test_hausdorff_95_of_a_shifted_square():
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True
    pred = np.roll(truth, 3, axis=1)
    assert image_metrics(pred, truth)[("lung", "hd95")] == pytest.approx(3.0)
    assert image_metrics(truth, truth)[("lung", "hd95")] == pytest.approx(0.0)


def test_empty_prediction_is_scored_not_crashed():
    truth = two_lungs()
    m = image_metrics(np.zeros_like(truth), truth)
    assert m[("lung", "recall")] == 0 and m[("lung", "f1")] == 0
    assert np.isnan(m[("lung", "precision")]) and np.isnan(m[("lung", "hd95")])


def test_summary_averages_per_image_and_markdown_sets_the_paper_beside():
    rows = []
    for set_name, f1s in (("nih", [0.9, 1.0]), ("cohen", [0.8, 0.8])):
        for i, f1 in enumerate(f1s):
            for cls in ("background", "lung"):
                rows.append(dict(set=set_name, image=f"{i}", height=10, width=10, **{"class": cls}, recall=f1,
                                 precision=np.nan if i else f1, jaccard=f1, f1=f1, accuracy=f1, dice=f1, hd95=1.0))
    summary = summarize(pd.DataFrame(rows))
    lookup = summary.set_index(["set", "class", "metric"])
    assert lookup.loc[("nih", "lung", "f1"), "value"] == pytest.approx(0.95)
    assert lookup.loc[("nih", "lung", "precision"), "value"] == pytest.approx(0.9)  # NaN left out
    assert lookup.loc[("nih", "lung", "precision"), "n_undefined"] == 1
    assert lookup.loc[("nih", "lung", "f1"), "ci_low"] >= 0.9
    assert lookup.loc[("nih", "lung", "precision"), "n_averaged"] == 1
    md = table2_markdown(summary)
    assert "| F1 | 0.950 | 0.950 | 0.800 | 0.800 | 0.986 | 0.950 | 0.971 | 0.918 |" in md
    assert "| Precision | 0.900 (n=1) | 0.900 (n=1) | 0.800 (n=1) | 0.800 (n=1) |" in md
    assert "| Images (averaged unless a cell says n=…) | 2 | 2 | 2 | 2 |" in md
    assert "n=… in a cell: that mean is over n images only" in md and "F1 and Dice average different" not in md
    assert PAPER_TABLE2[("Cohen", "lung")]["jaccard"] == 0.854


def test_table2_states_when_f1_and_dice_average_different_images():
    # Image 1 has no true lung pixel but a predicted one: F1 scores it 0, MONAI's Dice leaves it out.
    empty, lungs = np.zeros((40, 32), bool), two_lungs()
    rows = []
    for i, (pred, truth) in enumerate([(lungs, lungs), (lungs, empty), (lungs, lungs)]):
        values = image_metrics(pred, truth)
        rows += [dict(set="nih", image=f"{i}", height=40, width=32, **{"class": cls},
                      **{metric: values[(cls, metric)] for metric in METRICS}) for cls in ("background", "lung")]
    summary = summarize(pd.DataFrame(rows))
    md = table2_markdown(summary)
    assert "| F1 | 0.927 | 0.667 |" in md and "| Dice (MONAI) | 0.927 | 1.000 (n=2) |" in md
    assert "F1 and Dice average different images on nih lung (F1 3, Dice 2)" in md


# ----------------------------------------------------------------------------- training, resume, inference


def seg_pairs(tmp_path, n_groups=4, per_group=2):
    rows = []
    for g in range(n_groups):
        mask = two_lungs(40, 36, shift=g % 3)
        write_png(tmp_path / "masks" / f"g{g}mask.png", mask.astype(np.uint8) * 255)
        for k in range(per_group):
            rng = np.random.default_rng(g * 10 + k)
            image = (rng.normal(60, 10, mask.shape) + 80 * ~mask).clip(0, 255).astype(np.uint8)
            write_png(tmp_path / "images" / f"g{g}{k}.png", image)
            rows.append(dict(set="train", image=str(tmp_path / "images" / f"g{g}{k}.png"),
                             mask=str(tmp_path / "masks" / f"g{g}mask.png"), group=f"g{g}"))
    return pd.DataFrame(rows)


def test_grouped_split_and_test_images_never_trained_on(tmp_path):
    pairs = seg_pairs(tmp_path, n_groups=6, per_group=3)
    train, val = grouped_split(pairs, 0.3, seed=0)
    assert not set(train["group"]) & set(val["group"])
    assert len(val) >= 3 and len(train) + len(val) == len(pairs)
    # a test set naming a training image (same path) and one holding a renamed copy (same bytes)
    copy_path = tmp_path / "copy.png"
    copy_path.write_bytes((tmp_path / "images" / "g11.png").read_bytes())
    test = pd.DataFrame(dict(set="held", image=[pairs.loc[0, "image"], str(copy_path)], mask=pairs.loc[0, "mask"]))
    kept, dropped = exclude_test_images(pairs, test)
    assert set(dropped["image"]) == {pairs.loc[0, "image"], str(tmp_path / "images" / "g11.png")}
    assert len(kept) == len(pairs) - 2


def test_training_resumes_after_a_kill_to_the_same_weights(tmp_path):
    set_threads(1)
    pairs = seg_pairs(tmp_path)
    straight = train_unet(pairs, TINY, tmp_path / "a.pt", tmp_path / "a.csv", tmp_path / "ckpt_a", "cpu",
                          progress=False)
    assert list(straight["epoch"]) == [1, 2]
    # "killed" after epoch 1: only the checkpoint is left; the rerun resumes at epoch 2
    partial = train_unet(pairs, TINY, tmp_path / "b.pt", tmp_path / "b.csv", tmp_path / "ckpt_b", "cpu",
                         progress=False, epoch_budget=1)
    assert list(partial["epoch"]) == [1] and not (tmp_path / "b.pt").exists()
    checkpoint = torch.load(tmp_path / "ckpt_b" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and {"model", "optimizer", "best_state", "rng", "config"} <= set(checkpoint)
    resumed = train_unet(pairs, TINY, tmp_path / "b.pt", tmp_path / "b.csv", tmp_path / "ckpt_b", "cpu",
                         progress=False)
    assert list(resumed["epoch"]) == [1, 2]
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert pd.read_csv(tmp_path / "a.csv")["val_dice"].equals(pd.read_csv(tmp_path / "b.csv")["val_dice"])
    # a changed config does not resume from a stale checkpoint
    other = copy.deepcopy(TINY)
    other["train"]["learning_rate"] = 0.005
    fresh = train_unet(pairs, other, tmp_path / "c.pt", tmp_path / "c.csv", tmp_path / "ckpt_b", "cpu",
                       progress=False, epoch_budget=1)
    assert list(fresh["epoch"]) == [1]


def test_segmenter_keeps_order_and_shapes_across_batches(tmp_path):
    set_threads(1)
    torch.manual_seed(0)
    model = build_unet(TINY["network"]).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(30 + 3 * i, 40 - 2 * i), dtype=np.uint8) for i in range(7)]
    batched = list(LungSegmenter(model, 32, batch_size=3).segment(images))
    single = [next(LungSegmenter(model, 32, batch_size=1).segment([image])) for image in images]
    assert [m.shape for _, m in batched] == [image.shape for image in images]
    for (raw_a, a), (raw_b, b) in zip(batched, single):
        assert np.array_equal(a, b) and np.array_equal(raw_a, raw_b)
    assert list(LungSegmenter(model, 32).segment([])) == []


def test_model_file_loads_with_weights_only(tmp_path):
    set_threads(1)
    pairs = seg_pairs(tmp_path)
    cfg = copy.deepcopy(TINY)
    cfg["train"]["epochs"] = 1
    train_unet(pairs, cfg, tmp_path / "m.pt", tmp_path / "h.csv", tmp_path / "ckpt", "cpu", progress=False)
    model, size, info = load_model(tmp_path / "m.pt")
    assert size == 32 and info["meta"]["best_epoch"] == 1 and info["meta"]["n_val"] >= 2
    assert not model.training
