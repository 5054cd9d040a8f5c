"""Grad-CAM energy in a mask/box, figure image choice, Grad-CAM on a real (tiny) model, and the
per-architecture Grad-CAM job on small stores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hideseek.audit.attention import (RANDOMISATION_COLUMNS, area_share, attention_ratio, attention_sample,
                                      attention_table, energy_share, gradcam_sources, picks_table, region_to_input,
                                      summarize_attention, write_gradcam_outputs)
from hideseek.audit.cam import CamLayer, compute_cams
from hideseek.audit.figure3 import pick_figure_images
from hideseek.vocabulary import CLASSES


def test_energy_share_on_constructed_cam_and_mask():
    cam = np.zeros((10, 10))
    cam[2:4, 2:4] = 1.0  # 4 units of energy in the mask
    cam[8, 8] = 4.0      # 4 units outside
    mask = np.zeros((10, 10), bool)
    mask[0:5, 0:5] = True  # 25 % of the area
    assert energy_share(cam, mask) == pytest.approx(0.5)
    assert area_share(mask) == pytest.approx(0.25)
    assert attention_ratio(cam, mask) == pytest.approx(2.0)
    # a uniform CAM has no preference: ratio 1
    assert attention_ratio(np.ones((10, 10)), mask) == pytest.approx(1.0)
    # all energy inside
    assert energy_share(cam * mask, mask) == pytest.approx(1.0)
    assert np.isnan(energy_share(np.zeros((10, 10)), mask))
    with pytest.raises(ValueError):
        energy_share(np.ones((4, 4)), mask)


def test_region_to_input_follows_the_image_crop():
    region = np.zeros((100, 80), bool)
    region[50:, :] = True  # bottom half
    mapped = region_to_input(region, 40)
    assert mapped.shape == (40, 40)
    # after cutting the top 8 % and centre-cropping 80 rows of the remaining 92, the bottom half
    # of the store frame covers rows 50-100 -> centre crop starts at 8 + 6 = 14 -> 36/80 of it
    assert mapped.mean() == pytest.approx(1 - 36 / 80, abs=0.03)


def test_pick_figure_images():
    def frame(preds):
        return pd.DataFrame(dict(image_id=["a1", "a2", "b1", "b2"], true=["normal", "normal", "COVID-19", "COVID-19"],
                                 predicted=preds))

    own = {"data": frame(["normal", "normal", "normal", "COVID-19"]),
           "lungs_removed": frame(["pneumonia", "normal", "normal", "normal"])}
    picks = pick_figure_images(own).set_index("true")
    assert picks.loc["normal", "image_id"] == "a2" and picks.loc["normal", "rule"] == "all models correct"
    assert picks.loc["COVID-19", "image_id"] == "b2" and picks.loc["COVID-19", "rule"] == "data model correct"


def test_gradcam_on_a_small_model_and_summary():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    from hideseek.classification.models import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("resnet50", num_classes=3)
    images = torch.randint(0, 255, (2, 64, 64), dtype=torch.uint8)
    cams, layer = compute_cams(model, "resnet50", images, [0, 2])
    assert cams.shape == (2, 64, 64) and layer.grid == (8, 8) and layer.name == "layer2.3"  # layer4 is 2x2 at 64 px
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6

    per_image = pd.DataFrame(dict(rep="data", image_id=[f"i{k}" for k in range(6)], patient_id=[f"p{k}" for k in range(6)],
                                  true=["normal", "normal", "pneumonia", "pneumonia", "COVID-19", "COVID-19"],
                                  mask_energy=[0.6] * 6, mask_area=[0.3] * 6, box_energy=[0.7] * 6, box_area=[0.5] * 6))
    table = summarize_attention(per_image, ["data"], n_boot=50)
    assert list(table["true_class"]) == ["normal", "pneumonia", "COVID-19", "all"]
    assert table["mask_ratio"].to_numpy() == pytest.approx(2.0)
    assert table["box_ratio"].to_numpy() == pytest.approx(1.4)


def _per_image(rep="data"):
    return pd.DataFrame(dict(rep=rep, image_id=[f"i{k}" for k in range(6)], patient_id=[f"p{k}" for k in range(6)],
                             true=["normal", "normal", "pneumonia", "pneumonia", "COVID-19", "COVID-19"],
                             mask_energy=[0.6, 0.6, 0.3, 0.3, np.nan, 0.9], mask_area=[0.3] * 6,
                             box_energy=[0.7] * 6, box_area=[0.5] * 6))


def test_attention_and_picks_tables_carry_the_cam_grid():
    per_image = pd.concat([_per_image("data"), _per_image("lungs_removed")], ignore_index=True)
    table = attention_table(per_image, ["data", "lungs_removed"], "alexnet", CamLayer("features.4", None, (9, 9)), 80,
                            n_boot=50)
    assert list(table.columns[:3]) == ["arch", "representation", "true_class"]
    assert list(table.columns[-3:]) == ["cam_layer", "cam_grid", "input_size"]
    assert (table["cam_layer"] == "features.4").all() and (table["cam_grid"] == "9x9").all()
    assert (table["arch"] == "alexnet").all() and (table["input_size"] == 80).all()
    # each energy share sits beside its chance level
    columns = list(table.columns)
    assert columns.index("mask_area_share") == columns.index("mask_energy_share") + 1
    added = ["arch", "cam_layer", "cam_grid", "input_size", *RANDOMISATION_COLUMNS]
    pd.testing.assert_frame_equal(table.drop(columns=added),
                                  summarize_attention(per_image, ["data", "lungs_removed"], n_boot=50))
    assert table[RANDOMISATION_COLUMNS].isna().all().all()  # no randomisation values in this per-image frame
    everything = table[(table["representation"] == "data") & (table["true_class"] == "all")].iloc[0]
    assert everything["n_images"] == 5  # the image with an all-zero CAM (NaN energy) is left out
    assert everything["mask_ratio"] == pytest.approx((0.6 + 0.6 + 0.3 + 0.3 + 0.9) / 5 / 0.3)
    assert (attention_table(per_image, ["data"], "alexnet", None, 0, n_boot=10)["cam_grid"] == "").all()

    picks = pd.DataFrame(dict(true=["normal"], image_id=["a1"], rule=["all models correct"], data=["normal"]))
    out = picks_table(picks, "vgg11", CamLayer("features.20", None, (10, 10)))
    assert list(out.columns) == ["arch", "true", "image_id", "rule", "data", "cam_layer", "cam_grid"]
    assert out.iloc[0]["arch"] == "vgg11" and out.iloc[0]["cam_grid"] == "10x10"
    assert list(picks.columns) == ["true", "image_id", "rule", "data"]  # the caller's frame is left alone


def _tiny_store(tmp_path, name, images, index):
    np.save(tmp_path / f"{name}.npy", np.ascontiguousarray(images).ravel())
    index.to_csv(tmp_path / f"{name}.csv", index=False)
    return str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}.csv")


def _gradcam_files(tmp_path, reps, size=64):
    """Stores, lung masks, untrained tiny COVID-Net model.pt files and predictions per representation."""
    import torch

    from hideseek.classification.models import build_model

    n, height, width = 12, 80, 72
    index = pd.DataFrame(dict(image_id=[f"im{i:02d}" for i in range(n)], patient_id=[f"p{i // 2}" for i in range(n)],
                              label=[CLASSES[i % 3] for i in range(n)], source="s", partition="test",
                              offset=np.arange(n) * height * width, height=height, width=width))
    masks = np.zeros((n, height, width), np.uint8)
    masks[:, 20:70, 8:30] = masks[:, 20:70, 40:64] = 255
    files = dict(zip(("mask_pixels", "mask_index"), _tiny_store(tmp_path, "masks", masks, index)))
    recipe = dict(width=0.125, input_size=size, precision="fp32", channels_last=False)
    rng = np.random.default_rng(0)
    for k, rep in enumerate(reps):
        files[f"pixels_{rep}"], files[f"index_{rep}"] = _tiny_store(
            tmp_path, rep, rng.integers(0, 255, (n, height, width), dtype=np.uint8), index)
        torch.manual_seed(k)
        model = build_model("covidnet_cxr3a", num_classes=3, width=recipe["width"])
        files[f"model_{rep}"] = str(tmp_path / f"model_{rep}.pt")
        torch.save(dict(format=1, arch="covidnet_cxr3a", classes=list(CLASSES), state_dict=model.state_dict(),
                        recipe=recipe), files[f"model_{rep}"])
        own = pd.DataFrame(dict(train_rep=rep, test_rep=rep, image_id=index["image_id"], true=index["label"],
                                predicted=np.roll(index["label"], k)))
        other = own.assign(test_rep="elsewhere", predicted="normal")  # another test set: never explained
        files[f"pred_{rep}"] = str(tmp_path / f"pred_{rep}.csv")
        pd.concat([other, own]).to_csv(files[f"pred_{rep}"], index=False)
    return files, index


def test_gradcam_job_writes_figure_attention_and_picks(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_grad_cam")
    reps = ["data", "lungs_removed"]
    files, index = _gradcam_files(tmp_path, reps)
    models, stores, own, mask_store = gradcam_sources(files, reps)
    assert set(own["lungs_removed"]["test_rep"]) == {"lungs_removed"} and len(own["lungs_removed"]) == len(index)
    assert stores["data"] == (files["pixels_data"], files["index_data"]) and mask_store[0] == files["mask_pixels"]

    out = {name: tmp_path / "out" / name for name in ("figure3.png", "attention.csv", "per_image.csv", "picks.csv")}
    summary = write_gradcam_outputs("covidnet_cxr3a", files, reps, *out.values(), n_images=6, sample_seed=1,
                                    device="cpu", n_boot=50)
    assert out["figure3.png"].read_bytes().startswith(b"\x89PNG")
    per_image = pd.read_csv(out["per_image.csv"])
    sample = attention_sample(index, 6, seed=1)
    for rep in reps:  # every sampled test image once per model, with its region shares
        assert sorted(per_image.loc[per_image["rep"] == rep, "image_id"]) == sorted(sample)
    finite = per_image["mask_energy"].dropna()
    assert ((finite >= 0) & (finite <= 1)).all()
    assert per_image["mask_area"].between(0.2, 0.8).all()
    written = pd.read_csv(out["attention.csv"])
    assert set(summary["representation"]) == set(reps)
    pd.testing.assert_frame_equal(written, summary, check_dtype=False)
    expected = attention_table(per_image, reps, "covidnet_cxr3a", CamLayer("stages.1", None, (8, 8)), 64, n_boot=50)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    # the randomisation test: the data model on its attention sample, on the data / all row only
    rho = per_image.loc[per_image["rep"] == "data", "randomisation_spearman"].dropna()  # NaN: both CAMs blank
    assert len(rho) and rho.between(-1, 1).all()
    assert per_image.loc[per_image["rep"] != "data", "randomisation_spearman"].isna().all()
    on_data_all = (written["representation"] == "data") & (written["true_class"] == "all")
    assert written.loc[on_data_all, RANDOMISATION_COLUMNS].notna().all().all()
    assert written.loc[~on_data_all, RANDOMISATION_COLUMNS].isna().all().all()
    picks = pd.read_csv(out["picks.csv"])
    assert list(picks["true"]) == list(CLASSES) and (picks["cam_grid"] == "8x8").all()
    assert (picks["cam_layer"] == "stages.1").all()
    assert (picks["arch"] == "covidnet_cxr3a").all() and set(reps) <= set(picks.columns)


def test_all_zero_cams_give_an_empty_attention_table_the_verdict_can_read(tmp_path):
    """A CAM grid of 1x1 can be all zero: no share is defined, the table keeps its columns."""
    from hideseek.audit.attention import ATTENTION_COLUMNS
    from hideseek.audit.verdict import attention_evidence

    per_image = _per_image().assign(mask_energy=np.nan, box_energy=np.nan)
    table = summarize_attention(per_image, ["data"], n_boot=20)
    assert table.empty and list(table.columns) == ATTENTION_COLUMNS
    table.to_csv(tmp_path / "a.csv", index=False)
    assert attention_evidence(pd.read_csv(tmp_path / "a.csv")) == {}
