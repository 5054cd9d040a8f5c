"""The source probe with any number of sources, the config errors raised at parse time, and
the recipe key ``normalize`` (issue 12, items 1 and 8)."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from snakemake.utils import validate
from torch import nn

from conftest import REPO
from hideseek import plan
from hideseek.audit import source_probe
from hideseek.classification import training
from hideseek.classification.inputs import Split
from hideseek.classification.performance import IMAGENET_MEAN, IMAGENET_STD, performance_settings, to_model_input
from hideseek.classification.prediction import predict_logits
from hideseek.classification.recipes import resolve_recipe
from hideseek.errors import InputError
from hideseek.vocabulary import CLASSES

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def tiny_recipe(config, arch="covidnet_cxr3a", **changes):
    recipe = resolve_recipe(config["classification"], arch)
    recipe.update(input_size=32, width=0.125, epochs=3, batch_size=8, lr=3e-3, eval_batch_size=32, precision="fp32",
                  channels_last=False, bn_recalibration_images=64, augment=dict(recipe["augment"], enabled=False),
                  train_images_per_class=None)
    recipe.update(changes)
    return recipe


# ------------------------------------------------------------------------ the source probe, N sources

def test_balanced_accuracy_averages_over_every_label():
    true = np.repeat(np.arange(5), 4)
    pred = np.where(true < 3, true, 0)  # labels 3 and 4 (beyond the three diagnosis classes) always wrong
    metrics = training.class_metrics(true, pred, 5)
    assert metrics["sensitivity"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert metrics["balanced_accuracy"] == pytest.approx(0.6) and metrics["accuracy"] == pytest.approx(0.6)
    # a label absent from `true` is NaN and left out of the mean
    assert training.class_metrics(np.array([0, 0]), np.array([0, 1]), 3)["balanced_accuracy"] == pytest.approx(0.5)


def test_label_keys_are_snake_case_and_distinct():
    assert training.label_keys(CLASSES) == ["normal", "pneumonia", "covid_19"]  # the diagnosis columns, as before
    assert training.label_keys(["Hospital A", "rsna", "fig1"]) == ["hospital_a", "rsna", "fig1"]
    with pytest.raises(InputError, match="site_a"):
        training.label_keys(["Site-A", "site a"])


SOURCES = ["Hospital A", "cohen", "fig1", "rsna", "sirm"]  # snake_case: hospital_a, cohen, ...
TRAIN_PER_SOURCE = [24, 16, 10, 8, 6]                         # unequal, as real pools are
VAL_PER_SOURCE = [6, 5, 4, 3, 3]
TEST_PER_SOURCE = [6, 6, 6, 6, 6]


def five_source_store(tmp_path, side=40):
    """A store whose images carry their source as a bright bar at a source-specific height; the
    diagnosis label cycles within each source, so every class has several sources."""
    rng = np.random.default_rng(0)
    rows, images = [], []
    for partition, counts in (("train", TRAIN_PER_SOURCE), ("val", VAL_PER_SOURCE), ("test", TEST_PER_SOURCE)):
        for code, (source, count) in enumerate(zip(SOURCES, counts)):
            for k in range(count):
                image = rng.integers(0, 60, size=(side, side), dtype=np.uint8)
                image[8 + 6 * code:12 + 6 * code, 8:32] = 220
                images.append(image)
                rows.append(dict(image_id=f"{partition}_{code}_{k}.png", patient_id=f"{partition}_{code}_{k}",
                                 label=CLASSES[k % 3], partition=partition, source=source))
    index = pd.DataFrame(rows).assign(height=side, width=side, offset=np.arange(len(rows)) * side * side)
    np.save(tmp_path / "pixels.npy", np.concatenate([im.ravel() for im in images]))
    index.to_csv(tmp_path / "images.csv", index=False)
    return {"data": (str(tmp_path / "pixels.npy"), str(tmp_path / "images.csv"))}


def test_source_probe_with_five_sources_of_unequal_size(tmp_path, monkeypatch, config):
    trained = []
    original = training.train_classifier

    def keep_result(*args, **kwargs):
        trained.append(original(*args, **kwargs))
        return trained[-1]

    monkeypatch.setattr(training, "train_classifier", keep_result)
    table = source_probe.run_source_probe("covidnet_cxr3a", tiny_recipe(config), five_source_store(tmp_path),
                                          device="cpu", n_boot=50, checkpoint_root=tmp_path / "ck")

    history = trained[0].history
    sens = [f"val_sens_{key}" for key in ("hospital_a", "cohen", "fig1", "rsna", "sirm")]
    assert [c for c in history.columns if c.startswith("val_sens_")] == sens  # one per source, none per diagnosis
    assert trained[0].labels == tuple(SOURCES) and len(history) == 3
    # every source's share counts in the selection score, however many sources there are
    np.testing.assert_allclose(history["val_balanced_accuracy"], history[sens].mean(axis=1))
    selected = history[history["selected"]].iloc[0]
    assert selected["val_balanced_accuracy"] == history["val_balanced_accuracy"].max()
    overall = table[table["true_class"] == "all"].iloc[0]
    assert overall["n_sources"] == 5 and overall["n_images"] == sum(TEST_PER_SOURCE)
    assert overall["balanced_chance"] == pytest.approx(1 / 5)


def test_diagnosis_history_keeps_its_columns(tmp_path, config):
    split = ramp_split()
    result = training.train_classifier("resnet50", tiny_recipe(config, input_size=8, epochs=1, sampler="shuffle"),
                                       split, split, 0, tmp_path, device="cpu", build=recorder_build([]),
                                       progress=False, checkpoint_every=0)
    assert result.labels == CLASSES
    assert list(result.history.columns) == [
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy",
        "val_sens_normal", "val_sens_pneumonia", "val_sens_covid_19", "train_images", "train_seconds",
        "train_images_per_s", "val_seconds", "checkpoint_seconds", "selected"]


# ------------------------------------------------------------------------ parse-time errors

def test_the_audit_needs_data_in_the_grid(config):
    plan.check_config(config)
    config["classification"]["representations"] = ["lungs_isolated", "lungs_boxed_out"]
    with pytest.raises(InputError, match=r"classification.representations: .* lacks data.*add data"):
        plan.check_config(config)


def test_store_long_side_must_hold_the_largest_input(config):
    # the default's largest input: AlexNet (the first of the two) at 80 px, which needs 80 / 0.92 = 86.96 -> 87 px
    config["store"]["long_side"] = 87
    plan.check_config(config)
    config["store"]["long_side"] = 86
    with pytest.raises(InputError, match=r"store.long_side: 86 .* 87 px .*alexnet's classifier input of 80 px"):
        plan.check_config(config)
    # the paper's COVID-Net input (480 px) needs 522 px
    config["classification"]["models"]["covidnet_cxr3a"]["input_size"] = 480
    config["store"]["long_side"] = 521
    with pytest.raises(InputError, match=r"store.long_side: 521 .* 522 px .*covidnet_cxr3a.*input_size"):
        plan.check_config(config)
    config["store"]["long_side"] = 522
    plan.check_config(config)


def test_pretrained_without_imagenet_normalisation_warns(config, caplog):
    cls = config["classification"]
    cls["pretrained"] = True
    with caplog.at_level(logging.WARNING, logger="hideseek.plan"):
        plan.check_config(config)
    # the default's AlexNet is ImageNet-normalised already (config/config.yaml's models.alexnet)
    assert "vgg11, resnet50 train with normalize: none" in caplog.text and "alexnet," not in caplog.text
    assert "ImageNet-normalised" in caplog.text and "covidnet" not in caplog.text
    caplog.clear()
    cls["recipes"]["torchvision"]["normalize"] = "imagenet"
    cls["models"]["vgg11"]["normalize"] = "none"  # a per-model override wins
    with caplog.at_level(logging.WARNING, logger="hideseek.plan"):
        plan.check_config(config)
    assert "but vgg11 train with normalize: none" in caplog.text
    caplog.clear()
    del cls["models"]["vgg11"]["normalize"]
    with caplog.at_level(logging.WARNING, logger="hideseek.plan"):
        plan.check_config(config)
    assert caplog.text == ""


def test_normalize_is_validated_and_part_of_every_recipe(config):
    assert resolve_recipe(config["classification"], "resnet50")["normalize"] == "none"  # the seed's default
    before = plan.probe_recipe(config)
    assert before["normalize"] == "imagenet"  # the default's AlexNet (the probe's architecture)
    config["classification"]["models"]["alexnet"]["normalize"] = "none"
    validate(config, SCHEMA)
    # in the recipe, so in the train/probe rules' params and every fingerprint: a change reruns the jobs
    assert resolve_recipe(config["classification"], "alexnet")["normalize"] == "none"
    assert plan.probe_recipe(config) == dict(before, normalize="none")
    config["classification"]["recipes"]["torchvision"]["normalize"] = "zscore"
    with pytest.raises(Exception, match="zscore"):
        validate(config, SCHEMA)


# ------------------------------------------------------------------------ normalize: none | imagenet

def gray_batch():
    return torch.arange(0, 256, 4, dtype=torch.uint8).reshape(1, 8, 8).repeat(2, 1, 1)


def test_none_keeps_inputs_in_unit_range(config):
    perf = performance_settings(tiny_recipe(config), torch.device("cpu"))
    x = to_model_input(gray_batch(), perf)
    assert x.shape == (2, 3, 8, 8)
    expected = gray_batch().float().div(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    assert torch.equal(x, expected)  # as before the key existed: [0, 1], the three channels equal


def test_imagenet_applies_mean_and_std_per_channel(config):
    perf = performance_settings(tiny_recipe(config, normalize="imagenet"), torch.device("cpu"))
    x = to_model_input(gray_batch(), perf)
    unit = gray_batch().float().div(255.0)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        torch.testing.assert_close(x[:, channel], (unit - mean) / std)
    black = to_model_input(torch.zeros(1, 4, 4, dtype=torch.uint8), perf)
    torch.testing.assert_close(black[0, :, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))


def ramp_split():
    """Six copies of one gray ramp (8 × 8), two per diagnosis class."""
    return Split(images=gray_batch().repeat(3, 1, 1), labels=torch.tensor([0, 1, 2, 0, 1, 2]),
                 frame=pd.DataFrame({"image_id": [f"i{k}" for k in range(6)]}))


def recorder_build(models: list):
    """A `build` for train_classifier that keeps the models it makes in `models`."""
    def build(arch, num_classes, width, pretrained_weights=None):
        models.append(InputRecorder(num_classes))
        return models[-1]
    return build


class InputRecorder(nn.Module):
    """A linear 'model' on the channel means that remembers every input it is given."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.head = nn.Linear(3, num_classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.head(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("normalize", ["none", "imagenet"])
def test_training_and_evaluation_both_see_the_normalised_input(tmp_path, config, normalize):
    recipe = tiny_recipe(config, input_size=8, epochs=1, sampler="shuffle", normalize=normalize)
    split, models = ramp_split(), []
    training.train_classifier("resnet50", recipe, split, split, 0, tmp_path, device="cpu", build=recorder_build(models),
                              progress=False, checkpoint_every=0)
    trained_on = torch.cat(models[0].seen)  # training batches and the validation pass
    models[0].seen.clear()
    predict_logits(models[0], split.images, performance_settings(recipe, torch.device("cpu")), 4)
    evaluated_on = torch.cat(models[0].seen)
    expected = to_model_input(split.images[:1], performance_settings(recipe, torch.device("cpu")))[0]
    for seen in (trained_on, evaluated_on):
        assert torch.equal(seen, expected.expand_as(seen))  # every image is the same gray ramp
    # channel means: ImageNet's statistics move them apart, none leaves them equal
    means = evaluated_on.mean(dim=(0, 2, 3))
    assert (means[0] != means[1]) == (normalize == "imagenet")
