"""Lung attention that can tell: the CAM's native grid is at least 7 x 7 for every architecture
at the default input sizes, and the CAM sanity check (Adebayo et al. 2018 model randomisation)
separates a model from itself and from a re-initialised copy; its columns reach the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from hideseek.audit.attention import (RANDOMISATION_COLUMNS, attention_table, region_shares,  # noqa: E402
                                      summarize_randomisation)
from hideseek.audit.cam import (MIN_CAM_GRID, RANDOMISATION_MAX_CORRELATION, cam_correlation,  # noqa: E402
                                cam_rank_correlation, choose_cam_layer, compute_cams, native_grids,
                                randomisation_test, reinitialised_copy)
from hideseek.classification.models import build_model  # noqa: E402
from hideseek.errors import InputError  # noqa: E402
from hideseek.io import read_table, write_csv_atomic  # noqa: E402
from hideseek.vocabulary import ARCHITECTURES, CLASSES  # noqa: E402

# The layer each architecture's CAM comes from at 80 px (the default's AlexNet and VGG-11; the
# COVID-Nets and ResNet-50 run at 64: stages.1 / layer2.3, 8 x 8; config/README.md).
AT_80_PX = {"covidnet_cxr3a": ("stages.1", (10, 10)), "covidnet_cxr4a": ("stages.1", (10, 10)),
            "alexnet": ("features.4", (9, 9)), "vgg11": ("features.20", (10, 10)), "resnet50": ("layer2.3", (10, 10))}
AT_64_PX = {"covidnet_cxr3a": ("stages.1", (8, 8)), "covidnet_cxr4a": ("stages.1", (8, 8)),
            "resnet50": ("layer2.3", (8, 8))}


def _model(arch, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, num_classes=3, width=0.125).eval()  # width: COVID-Nets only


@pytest.mark.parametrize("size", [64, 80])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_cam_grid_is_at_least_7x7_and_is_the_layers_real_output(arch, size):
    torch.set_num_threads(1)
    model = _model(arch)
    layer = choose_cam_layer(model, arch, size)
    assert min(layer.grid) >= MIN_CAM_GRID
    # the deepest such layer: every deeper candidate is coarser
    names = [candidate.name for candidate in native_grids(model, arch, size)]
    deeper = native_grids(model, arch, size)[names.index(layer.name) + 1:]
    assert all(min(candidate.grid) < MIN_CAM_GRID for candidate in deeper)
    # the grid is what the module really outputs in the forward pass the CAM explains
    seen = {}

    def record(_module, _inputs, output):
        seen["grid"] = tuple(output.shape[-2:])

    handle = layer.module.register_forward_hook(record)
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    handle.remove()
    assert seen["grid"] == layer.grid
    if size == 80:
        assert (layer.name, layer.grid) == AT_80_PX[arch]
    if size == 64 and arch in AT_64_PX:
        assert (layer.name, layer.grid) == AT_64_PX[arch]
    cams, used = compute_cams(model, arch, torch.randint(0, 255, (1, size, size), dtype=torch.uint8), [1])
    assert used.name == layer.name and cams.shape == (1, size, size)


def test_at_the_papers_224_px_resnet50_uses_layer4_as_sadre_et_al():
    layer = choose_cam_layer(_model("resnet50"), "resnet50", 224)
    assert (layer.name, layer.grid) == ("layer4.2", (7, 7)) and layer.describe() == "7×7 from layer4.2"


def test_the_dry_pass_leaves_batchnorm_statistics_and_the_training_mode_alone():
    model = _model("resnet50").train()
    before = model.bn1.running_mean.clone()
    choose_cam_layer(model, "resnet50", 80)
    assert model.training and torch.equal(model.bn1.running_mean, before)


def test_cam_rank_correlation_on_constructed_cams():
    ramp = np.arange(16, dtype=float).reshape(1, 4, 4)
    flat = np.zeros((1, 4, 4))
    a = np.concatenate([ramp, ramp, ramp, flat, flat])
    b = np.concatenate([ramp, ramp ** 2, ramp[:, ::-1, ::-1], ramp, flat])
    rho = cam_rank_correlation(a, b)
    assert rho[:4] == pytest.approx([1.0, 1.0, -1.0, 0.0])  # same, monotone, reversed, constant vs ramp
    assert np.isnan(rho[4])  # two constant CAMs: no ranking at all
    with pytest.raises(ValueError):
        cam_rank_correlation(a, b[:, :2])


def test_reinitialised_copy_is_seeded_new_weights_and_leaves_the_model_alone():
    model = _model("covidnet_cxr3a")
    original = {k: v.clone() for k, v in model.state_dict().items()}
    one, again = reinitialised_copy(model, seed=3), reinitialised_copy(model, seed=3)
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])
        assert torch.equal(one.state_dict()[key], again.state_dict()[key])
    convs = [k for k, v in original.items() if k.endswith("weight") and v.dim() == 4]
    assert all(not torch.equal(one.state_dict()[k], original[k]) for k in convs)
    with pytest.raises(InputError, match="reset_parameters"):
        reinitialised_copy(torch.nn.Sequential(_Scale()), seed=0)


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))


def _noise(n, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 255, (n, size, size), dtype=torch.uint8, generator=generator)


def _per_image(rho):
    n = len(rho)
    return pd.DataFrame(dict(rep="data", image_id=[f"i{k}" for k in range(n)], patient_id=[f"p{k}" for k in range(n)],
                             true=[CLASSES[k % 3] for k in range(n)], mask_energy=0.5, mask_area=0.4,
                             box_energy=0.6, box_area=0.5, randomisation_spearman=rho))


def test_randomisation_test_tells_a_model_from_itself_and_from_its_reinitialised_copy():
    torch.set_num_threads(1)
    model, images = _model("covidnet_cxr3a"), _noise(6)
    with torch.no_grad():  # the CAM of the predicted class, as the gradcam job explains it
        targets = model(images.unsqueeze(1).float().div(255).expand(-1, 3, -1, -1)).argmax(1).tolist()
    itself = cam_correlation(model, model, "covidnet_cxr3a", images, targets)
    assert itself == pytest.approx(np.ones(6))
    # On noise images the CAM holds no image structure: it is made by the weights alone, so a
    # re-initialised copy's CAM differs and the correlation is low.
    randomised = randomisation_test(model, "covidnet_cxr3a", images, targets, seed=1)
    assert np.isfinite(randomised).all() and abs(randomised.mean()) < 0.3
    assert summarize_randomisation(_per_image(randomised), n_boot=200)["cam_depends_on_weights"] is True
    kept = summarize_randomisation(_per_image(itself), n_boot=200)
    assert kept["randomisation_spearman"] == pytest.approx(1.0) and kept["cam_depends_on_weights"] is False


def test_the_flag_uses_the_ci_high_and_the_configured_threshold():
    rho = np.array([0.3, 0.35, 0.4, 0.45, 0.3, 0.4, 0.35, 0.45, np.nan])  # a NaN (two blank CAMs) is left out
    summary = summarize_randomisation(_per_image(rho), n_boot=300)
    assert summary["randomisation_spearman"] == pytest.approx(np.nanmean(rho))
    assert summary["randomisation_spearman_ci_high"] < RANDOMISATION_MAX_CORRELATION
    assert summary["cam_depends_on_weights"] is True
    assert summarize_randomisation(_per_image(rho), n_boot=300, max_correlation=0.4)["cam_depends_on_weights"] is False
    assert np.isnan(summarize_randomisation(_per_image(np.full(3, np.nan)))["cam_depends_on_weights"])


def test_the_lung_attention_csv_has_the_sanity_columns_on_every_row(tmp_path):
    rho = np.linspace(0.0, 0.2, 6)
    other = _per_image(np.full(6, np.nan)).assign(rep="lungs_removed")
    per_image = pd.concat([_per_image(rho), other], ignore_index=True)
    layer = choose_cam_layer(_model("alexnet"), "alexnet", 80)
    write_csv_atomic(attention_table(per_image, ["data", "lungs_removed"], "alexnet", layer, 80, n_boot=100),
                     tmp_path / "lung_attention_alexnet.csv")
    table = read_table(tmp_path / "lung_attention_alexnet.csv")
    assert set(RANDOMISATION_COLUMNS + ["cam_layer", "cam_grid"]) <= set(table.columns)
    on_data_all = (table["representation"] == "data") & (table["true_class"] == "all")
    row = table[on_data_all].iloc[0]
    assert row["randomisation_spearman"] == pytest.approx(rho.mean())
    assert (row["randomisation_spearman_ci_low"] <= row["randomisation_spearman"]
            <= row["randomisation_spearman_ci_high"])
    assert row["cam_depends_on_weights"] is True or row["cam_depends_on_weights"] == "True"
    assert table.loc[~on_data_all, RANDOMISATION_COLUMNS].isna().all().all()
    assert (table["cam_grid"] == "9x9").all() and (table["cam_layer"] == "features.4").all()
    # energy share and its chance level, side by side
    assert list(table.columns).index("mask_area_share") == list(table.columns).index("mask_energy_share") + 1


def test_region_shares_give_a_lung_ratio_above_one_for_a_cam_on_the_lungs():
    """The per-image function the attention controls build on (CAM in the classifier frame,
    mask in the store frame)."""
    mask = np.zeros((100, 100), bool)
    mask[30:90, 10:45] = mask[30:90, 55:90] = True
    from hideseek.audit.attention import region_to_input

    cam = region_to_input(mask, 64).astype(float)  # all energy on the lungs
    shares = region_shares(cam, mask)
    assert shares["mask_energy"] == pytest.approx(1.0) and 0.2 < shares["mask_area"] < 0.6
    assert shares["box_energy"] == pytest.approx(1.0) and shares["box_area"] >= shares["mask_area"]


def test_cams_are_made_on_the_inputs_the_model_was_trained_on():
    """normalize: imagenet models are explained on ImageNet-normalised inputs (as trained), not on [0, 1]."""
    torch.set_num_threads(1)
    model, images = _model("resnet50"), _noise(2)
    seen = []
    handle = model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    try:
        compute_cams(model, "resnet50", images, [0, 1], normalize="imagenet")
        normalised = seen[-1]
        compute_cams(model, "resnet50", images, [0, 1], normalize="none")
        plain = seen[-1]
    finally:
        handle.remove()
    assert float(plain.min()) >= 0.0 and float(plain.max()) <= 1.0
    assert float(normalised.min()) < 0.0  # (0 - mean) / std on black pixels
    expected = (plain[:, 0] - 0.485) / 0.229
    assert torch.allclose(normalised[:, 0], expected, atol=1e-5)
