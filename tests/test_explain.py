"""Grad-CAM energy in a mask/box, figure image choice, and Grad-CAM on a real (tiny) model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hideseek.audit.attention import area_share, attention_ratio, compute_cams, energy_share, region_to_input, summarize_attention
from hideseek.audit.figure3 import pick_figure_images



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
    cams, grid = compute_cams(model, "resnet50", images, [0, 2])
    assert cams.shape == (2, 64, 64) and grid == (2, 2)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6

    per_image = pd.DataFrame(dict(rep="data", image_id=[f"i{k}" for k in range(6)], patient_id=[f"p{k}" for k in range(6)],
                                  true=["normal", "normal", "pneumonia", "pneumonia", "COVID-19", "COVID-19"],
                                  mask_energy=[0.6] * 6, mask_area=[0.3] * 6, box_energy=[0.7] * 6, box_area=[0.5] * 6))
    table = summarize_attention(per_image, ["data"], n_boot=50)
    assert list(table["true_class"]) == ["normal", "pneumonia", "COVID-19", "all"]
    assert table["mask_ratio"].to_numpy() == pytest.approx(2.0)
    assert table["box_ratio"].to_numpy() == pytest.approx(1.4)
