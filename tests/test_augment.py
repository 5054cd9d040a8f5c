"""Batched augmentation: per-image parameters, the paper's ranges, no flip for torchvision recipes."""

import copy

import pytest
import torch
import yaml
from snakemake.utils import validate

from conftest import REPO
from hideseek.classification.augment import affine_matrices, augment_batch, AugmentConfig, draw_params
from hideseek.classification.recipes import resolve_recipe

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
TORCHVISION = ("alexnet", "vgg11", "resnet50")
COVIDNET = ("covidnet_cxr3a", "covidnet_cxr4a")


def _image(size=32):
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = ((x * 3 + y * 7) % 17).float() / 16.0  # asymmetric texture: every transform shows
    img[4:10, 3:8] = 1.0
    return img[None, None]


def _configs():
    empty = {}
    validate(empty, SCHEMA)
    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(shipped, SCHEMA)
    return {"schema defaults": empty, "config/config.yaml": shipped}


def test_two_images_of_one_batch_get_different_transforms():
    batch = _image().repeat(2, 1, 1, 1)
    out = augment_batch(batch, AugmentConfig(), torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    assert not torch.allclose(out[0], out[1], atol=1e-3)
    params = draw_params(8, AugmentConfig(), torch.Generator().manual_seed(0))
    for name in ("angle", "tx", "ty", "zoom", "brightness"):
        assert params[name].unique().numel() == 8, name


def test_parameter_ranges_follow_the_recipe():
    cfg = AugmentConfig()
    p = draw_params(4000, cfg, torch.Generator().manual_seed(1))
    assert p["angle"].abs().max() <= 10 and p["angle"].abs().max() > 9.5
    assert p["tx"].abs().max() <= 0.1 and p["ty"].abs().max() <= 0.1
    assert 0.85 <= p["zoom"].min() and p["zoom"].max() <= 1.15
    assert 0.9 <= p["brightness"].min() and p["brightness"].max() <= 1.1
    resized = (p["ratio"] != 1).double().mean()
    assert 0.25 < resized < 0.35  # probability 0.3
    assert ((p["ratio"] - 1).abs() <= 0.1).all()
    assert not p["flip"].any()  # hflip off by default


def test_same_generator_state_gives_same_batch():
    batch = _image().repeat(3, 1, 1, 1)
    a = augment_batch(batch, AugmentConfig(hflip=True), torch.Generator().manual_seed(5))
    b = augment_batch(batch, AugmentConfig(hflip=True), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_identity_and_flip_are_exact():
    img = _image()
    zero = dict(ratio=torch.ones(1, dtype=torch.float64), angle=torch.zeros(1, dtype=torch.float64),
                tx=torch.zeros(1, dtype=torch.float64), ty=torch.zeros(1, dtype=torch.float64),
                zoom=torch.ones(1, dtype=torch.float64), brightness=torch.ones(1, dtype=torch.float64),
                flip=torch.zeros(1, dtype=torch.bool))
    same = augment_batch(img, AugmentConfig(), None, params=zero)
    assert torch.allclose(same, img, atol=1e-5)
    flipped = augment_batch(img, AugmentConfig(), None, params=dict(zero, flip=torch.ones(1, dtype=torch.bool)))
    assert torch.allclose(flipped, torch.flip(img, dims=[-1]), atol=1e-5)
    shifted = dict(zero, tx=torch.full((1,), 0.25, dtype=torch.float64))
    out = augment_batch(img, AugmentConfig(), None, params=shifted)
    assert torch.allclose(out[..., 8:], img[..., :-8], atol=1e-5)  # content moves right by 25 %
    assert torch.all(out[..., :8] == 0)  # filled with 0, like the representations
    theta = affine_matrices(zero)
    assert torch.allclose(theta, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64))


@pytest.mark.parametrize("source", ["schema defaults", "config/config.yaml"])
def test_torchvision_recipes_never_flip_and_covidnet_does(source):
    config = _configs()[source]["classification"]
    for arch in TORCHVISION:
        recipe = resolve_recipe(config, arch)
        assert recipe["augment"]["hflip"] is False, arch
        cfg = AugmentConfig.from_config(recipe["augment"])
        flips = draw_params(2000, cfg, torch.Generator().manual_seed(2))["flip"]
        assert not flips.any(), arch
        out = augment_batch(_image().repeat(64, 1, 1, 1), AugmentConfig.from_config(
            dict(recipe["augment"], ratio_resize_prob=0, brightness=0, rotation_deg=0, translate=0, zoom=0)),
            torch.Generator().manual_seed(3))
        assert torch.allclose(out, _image().expand_as(out), atol=1e-5), arch
    for arch in COVIDNET:
        recipe = resolve_recipe(config, arch)
        assert recipe["augment"]["hflip"] is True, arch
        flips = draw_params(2000, AugmentConfig.from_config(recipe["augment"]), torch.Generator().manual_seed(2))["flip"]
        assert 0.45 < flips.double().mean() < 0.55


def test_a_config_cannot_switch_flip_on_silently_for_the_schema_defaults():
    config = {}
    validate(config, SCHEMA)
    tv = copy.deepcopy(config["classification"]["recipes"]["torchvision"]["augment"])
    assert tv == dict(enabled=True, ratio_resize_prob=0.3, ratio_resize_delta=0.1, brightness=0.1,
                      rotation_deg=10, translate=0.1, zoom=0.15, hflip=False)


def test_augmentation_runs_on_the_batch_device_and_keeps_range():
    batch = torch.rand(5, 1, 24, 24)
    out = augment_batch(batch, AugmentConfig(hflip=True), torch.Generator().manual_seed(0))
    assert out.device == batch.device and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
