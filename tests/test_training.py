"""Training: input preprocessing, samplers, recipes, determinism, resume after a kill, predictions."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from snakemake.utils import validate
from torch import nn

from conftest import REPO
from hideseek.vocabulary import CLASSES
from hideseek.data.store import write_store
from hideseek.classification.training import CHECKPOINT_NAME, learning_rate, train_classifier, write_training_outputs
from hideseek.classification.samplers import BalancedSampler, CovidRebalanceSampler
from hideseek.classification.inputs import classifier_input, load_split, Split
from hideseek.classification import prediction
from hideseek.classification.prediction import evaluate_classifier, write_predictions
from hideseek.classification.recipes import resolve_recipe

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def default_classification():
    config = {}
    validate(config, SCHEMA)
    return config["classification"]


def tiny_build(arch, num_classes=3, width=1.0, pretrained_weights=None):
    """A stand-in model: BatchNorm (running stats) and Dropout (global RNG) like the real ones."""
    channels = max(2, int(4 * width))
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(channels * 4, num_classes),
    )


def tiny_recipe(**changes):
    recipe = resolve_recipe(default_classification(), "resnet50")
    recipe.update(input_size=16, epochs=3, batch_size=8, lr=1e-2, eval_batch_size=16, precision="fp32",
                  channels_last=False)
    recipe.update(changes)
    return recipe


def tiny_split(n_per_class=(12, 10, 6), size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    images = rng.integers(0, 60, size=(len(labels), size, size), dtype=np.uint8)
    for i, label in enumerate(labels):  # a learnable signal: a bright patch whose place is the class
        images[i, 2 + 4 * label:5 + 4 * label, 4:12] += 150
    frame = pd.DataFrame({"image_id": [f"im{i:03d}.png" for i in range(len(labels))],
                          "patient_id": [f"p{i:03d}" for i in range(len(labels))],
                          "label": [CLASSES[c] for c in labels], "source": "s"})
    return Split(images=torch.from_numpy(images), labels=torch.from_numpy(labels.astype(np.int64)), frame=frame)


def test_recipe_defaults_are_the_papers():
    cfg = default_classification()
    tv = resolve_recipe(cfg, "resnet50")
    assert (tv["lr"], tv["batch_size"], tv["epochs"], tv["input_size"]) == (1e-4, 32, 20, 224)
    assert tv["class_weights"] == [1, 1, 4] and tv["sampler"] == "balanced" and tv["pretrained"] is False
    cn = resolve_recipe(cfg, "covidnet_cxr3a")
    assert (cn["lr"], cn["batch_size"], cn["epochs"], cn["input_size"]) == (2e-4, 8, 10, 480)
    assert cn["sampler"] == "covidnet" and cn["covid_percent"] == 0.3 and cn["augment"]["hflip"] is True
    cfg["models"] = {"alexnet": {"epochs": 3, "augment": {"zoom": 0.0}}}
    cfg["pretrained"] = True
    alex = resolve_recipe(cfg, "alexnet")
    assert alex["epochs"] == 3 and alex["augment"]["zoom"] == 0.0 and alex["augment"]["rotation_deg"] == 10
    assert alex["pretrained"] is True and resolve_recipe(cfg, "covidnet_cxr4a")["pretrained"] is False


def test_classifier_input_crops_top_and_centre():
    gray = np.zeros((100, 60), dtype=np.uint8)
    gray[:8] = 255  # the top 8 % is cut off
    gray[8:, 29:31] = 200  # a centre line survives
    out = classifier_input(gray, 30)
    assert out.shape == (30, 30) and out.dtype == np.uint8
    assert out[0].max() < 255 and out[:, 14:16].max() > 50
    wide = np.zeros((50, 100), dtype=np.uint8)
    wide[:, 48:52] = 255  # centre square of a landscape image
    assert classifier_input(wide, 46)[:, 21:25].min() > 100


def test_balanced_sampler_gives_equal_class_proportions():
    labels = torch.tensor([0] * 300 + [1] * 100 + [2] * 20)
    sampler = BalancedSampler(labels, 32, torch.Generator().manual_seed(0))
    drawn = torch.cat([torch.cat(sampler.epoch()) for _ in range(20)])
    assert len(drawn) > 8000
    share = torch.bincount(labels[drawn], minlength=3).double() / len(drawn)
    assert torch.allclose(share, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)
    assert all(len(b) <= 32 for b in sampler.epoch())


def test_covidnet_rebalancing_puts_two_covid_images_in_every_batch_of_eight():
    labels = torch.tensor([0] * 40 + [1] * 30 + [2] * 9)
    sampler = CovidRebalanceSampler(labels, 8, 0.3, torch.Generator().manual_seed(0))
    for _ in range(5):
        batches = sampler.epoch()
        assert len(batches) == 9  # a pass over the 70 non-COVID images, batches of 8
        for batch in batches:
            covid = int((labels[batch] == 2).sum())
            assert covid == max(int(0.3 * len(batch)), 1)
            assert len(set(batch.tolist())) == len(batch)  # no image twice in a batch
        assert sum(len(b) for b in batches) == 70
    assert sampler.covid_count(8) == 2


def _run(tmp_path, name, **kwargs):
    train, val = tiny_split(), tiny_split((4, 4, 4), seed=1)
    return train_classifier("resnet50", kwargs.pop("recipe", tiny_recipe()), train, val, 7, tmp_path / name,
                            threads=1, build=tiny_build, progress=False, **kwargs)


def _same_result(a, b):
    assert a.best_epoch == b.best_epoch
    assert a.best_state.keys() == b.best_state.keys()
    for key in a.best_state:
        assert torch.equal(a.best_state[key], b.best_state[key]), key
    numbers = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_sens_covid_19"]
    pd.testing.assert_frame_equal(a.history[numbers], b.history[numbers])


def test_training_is_deterministic_for_a_seed_and_learns(tmp_path):
    a = _run(tmp_path, "a", checkpoint_every=0)
    b = _run(tmp_path, "b", checkpoint_every=0)
    _same_result(a, b)
    assert a.history["train_loss"].iloc[-1] < a.history["train_loss"].iloc[0]
    assert a.info["precision"] == "fp32" and a.info["fused_adam"] in (True, False) and a.info["threads"] == 1
    assert not (tmp_path / "a").exists()  # checkpoint_every: 0 writes none


def test_resume_after_a_kill_reaches_the_same_final_numbers(tmp_path):
    uninterrupted = _run(tmp_path, "full")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "killed", stop_after_epoch=1)
    checkpoint_path = tmp_path / "killed" / CHECKPOINT_NAME
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1 and set(checkpoint["rng"]) >= {"torch", "numpy", "python", "generators"}
    assert set(checkpoint["rng"]["generators"]) == {"sampler", "augment"}
    assert {"model", "optimizer", "best", "config", "history"} <= set(checkpoint)
    resumed = _run(tmp_path, "killed")
    _same_result(uninterrupted, resumed)
    # A checkpoint from a different recipe is ignored, not resumed.
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "other", stop_after_epoch=1)
    other = _run(tmp_path, "other", recipe=tiny_recipe(lr=5e-3))
    fresh = _run(tmp_path, "fresh", recipe=tiny_recipe(lr=5e-3), checkpoint_every=0)
    _same_result(other, fresh)


def test_cosine_schedule_decays_the_rate_per_step_and_resumes_on_the_same_curve(tmp_path):
    recipe = tiny_recipe(scheduler="cosine", lr=1e-2, epochs=4)
    assert learning_rate(recipe, 0.0) == pytest.approx(1e-2)
    assert learning_rate(recipe, 0.5) == pytest.approx(5e-3)
    assert learning_rate(recipe, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(tiny_recipe(lr=1e-2), 0.9) == 1e-2  # none: the paper's constant rate
    uninterrupted = _run(tmp_path, "full", recipe=recipe)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "killed", recipe=recipe, stop_after_epoch=2)
    _same_result(uninterrupted, _run(tmp_path, "killed", recipe=recipe))
    constant = _run(tmp_path, "constant", recipe=tiny_recipe(lr=1e-2, epochs=4), checkpoint_every=0)
    assert not np.allclose(uninterrupted.history["val_loss"], constant.history["val_loss"])


def test_covidnet_recipe_trains_with_rebalancing(tmp_path):
    recipe = tiny_recipe(sampler="covidnet", covid_percent=0.3, batch_size=8,
                         augment=dict(tiny_recipe()["augment"], hflip=True), epochs=2)
    result = _run(tmp_path, "cn", recipe=recipe)
    assert result.history["train_images"].iloc[0] == 22  # one pass over the non-COVID images


def _tiny_store(tmp_path, name, seed=0):
    import cv2

    image_dir = tmp_path / name / "images"
    image_dir.mkdir(parents=True)
    split = tiny_split((6, 6, 6), size=20, seed=seed)
    rows = []
    for i, (image, label) in enumerate(zip(split.images.numpy(), split.frame["label"])):
        name_i = f"im{i:03d}.png"
        cv2.imwrite(str(image_dir / name_i), image)
        rows.append(dict(image_id=name_i, patient_id=f"p{i}", filename=name_i, label=label, source="s",
                         partition=("train", "val", "test")[i % 3], split_file="x", line=i))
    frame, problems = write_store(pd.DataFrame(rows), image_dir, 20, tmp_path / name / "pixels.npy", progress=False)
    assert not problems
    frame.to_csv(tmp_path / name / "images.csv", index=False)
    return tmp_path / name / "pixels.npy", tmp_path / name / "images.csv"


def test_store_to_predictions_on_every_representation(tmp_path):
    train_and_predict(tmp_path)


def train_and_predict(tmp_path):
    """A tiny model trained on a tiny store and its predictions on two representations."""
    stores = {"data": _tiny_store(tmp_path, "data"), "lungs_removed": _tiny_store(tmp_path, "removed", seed=3)}
    recipe = tiny_recipe(input_size=12, epochs=1, train_images_per_class=3)
    train = load_split(*stores["data"], "train", 12, per_class=3)
    assert len(train) == 6 and train.images.shape == (6, 12, 12) and train.images.dtype == torch.uint8
    val = load_split(*stores["data"], "val", 12)
    result = train_classifier("resnet50", recipe, train, val, 0, tmp_path / "ck", build=tiny_build, progress=False)
    paths = [tmp_path / "out" / n for n in ("model.pt", "history.csv", "info.json")]
    write_training_outputs(result, *paths, extra=dict(representation="data"))
    assert json.loads(paths[2].read_text())["representation"] == "data"
    assert torch.load(paths[0], weights_only=True)["arch"] == "resnet50"
    predictions = evaluate_classifier(paths[0], stores, "data", 0, build=tiny_build)
    assert list(predictions["test_rep"].unique()) == ["data", "lungs_removed"]
    assert len(predictions) == 12 and set(predictions["predicted"]) <= set(CLASSES)
    probs = predictions[["p_normal", "p_pneumonia", "p_covid"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert {"image_id", "patient_id", "source", "true", "predicted", "train_rep", "seed"} <= set(predictions)
    return paths[0], stores, predictions


def test_one_evaluation_job_predicts_every_model_and_loads_each_test_split_once(tmp_path, monkeypatch):
    model, stores, expected = train_and_predict(tmp_path)
    loads = []
    real = prediction.load_split
    monkeypatch.setattr(prediction, "load_split", lambda *a, **k: loads.append(str(a[0])) or real(*a, **k))
    runs = {("data", 0): model, ("lungs_removed", 0): model}  # one file standing for two models
    outputs = {key: tmp_path / f"{key[0]}.csv" for key in runs}
    write_predictions(runs, stores, outputs, build=tiny_build)
    assert sorted(loads) == sorted(str(p) for p, _ in stores.values())  # once per store, not per model
    data = pd.read_csv(outputs[("data", 0)])
    removed = pd.read_csv(outputs[("lungs_removed", 0)])
    assert data["predicted"].tolist() == expected["predicted"].tolist()
    # only the data model is tested on every representation (test-time hiding)
    assert set(data["test_rep"]) == set(stores) and len(stores) > 1
    assert set(removed["train_rep"]) == {"lungs_removed"} and set(removed["test_rep"]) == {"lungs_removed"}
    assert len(removed) == len(data) // len(stores)


def test_parallel_load_gives_the_same_pixels(tmp_path, monkeypatch):
    from hideseek.classification import inputs

    pixels, index = _tiny_store(tmp_path, "data")
    serial = load_split(pixels, index, "train", 12)
    monkeypatch.setattr(inputs, "PARALLEL_LOAD_MIN", 1)  # a thread pool even for a few images
    parallel = load_split(pixels, index, "train", 12)
    assert torch.equal(serial.images, parallel.images) and serial.frame.equals(parallel.frame)
