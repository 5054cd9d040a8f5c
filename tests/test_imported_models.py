"""Imported models of every format, built with real model code and nothing downloaded
(torchvision ResNet-18 / DenseNet-121 state_dicts, a timm MobileNetV3, a torchxrayvision DenseNet
built with weights=None): the geometry, the label mapping and decision rules, and predictions on
every representation exactly as each model's own preprocessing says (tests/test_imported_audit.py:
CAMs, ONNX, wrong specs, the verdict)."""

from __future__ import annotations


import numpy as np
import pytest
from snakemake.utils import validate

from conftest import REPO
from test_imported_fixtures import REPS, phantom_stores

torch = pytest.importorskip("torch")

from hideseek.classification.inputs import classifier_input  # noqa: E402
from hideseek.errors import InputError  # noqa: E402
from hideseek.imported.model import class_scores, decide, load_imported, resolve_labels  # noqa: E402
from hideseek.imported.predict import predict_stores  # noqa: E402
from hideseek.imported.preprocess import geometry, load_partition, mask_to_input  # noqa: E402
from hideseek.vocabulary import CLASSES  # noqa: E402

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
SOFTMAX = dict(kind="softmax", outputs={"normal": 0, "pneumonia": 1, "COVID-19": 2})
SIZE = 32


def entry(**fields) -> dict:
    config = {"imported_models": {"m": fields}}
    validate(config, SCHEMA)
    return config["imported_models"]["m"]


def pre(**changes) -> dict:
    return dict(dict(input_size=SIZE, square="centre_crop", top_crop=0.0, channels=3, intensity="unit"), **changes)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    stores, mask_store, index = phantom_stores(tmp_path_factory.mktemp("stores"), {"test": 2})
    return dict(stores=stores, mask_store=mask_store, index=index, tmp=tmp_path_factory.mktemp("models"))


def saved(tmp, name, net) -> str:
    torch.manual_seed(0)
    path = tmp / f"{name}.pt"
    torch.save(net.state_dict(), path)
    return str(path)


def test_geometry_is_the_workflows_input_and_moves_the_mask_with_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (72, 64), dtype=np.uint8)
    ours = pre(top_crop=0.08)
    assert np.array_equal(geometry(image, ours), classifier_input(image, SIZE))
    wide = np.zeros((40, 80), bool)
    wide[:, :8] = True  # a mask only at the left periphery
    assert not mask_to_input(wide, pre()).any()  # a centre crop drops it from the mask too
    padded = mask_to_input(wide, pre(square="pad"))
    # padding keeps it: 40 of the 80 rows (centred), 8 of the 80 columns
    assert padded[SIZE // 4 + 1:3 * SIZE // 4 - 1, :2].all() and not padded[:SIZE // 4 - 1].any()
    assert padded.mean() == pytest.approx(0.5 * 8 / 80, abs=0.01)
    assert geometry(np.full((40, 80), 200, np.uint8), pre(square="pad"))[0, 0] == 0  # zero padding, top band


def test_label_mapping_and_decision_rules():
    raw = torch.tensor([[0.0, 5.0, 1.0, 9.0], [3.0, 0.0, 0.0, -9.0]])
    permuted = resolve_labels("m", dict(kind="softmax", outputs={"COVID-19": 1, "normal": 3}), 4, None)
    probs, predicted = decide(class_scores(raw, permuted), permuted)
    assert list(predicted) == [0, 2] and probs[:, 1].max() < 1e-6  # pneumonia unmapped: never predicted
    assert np.allclose(probs.sum(1), 1)
    names = ["A", "Pneumonia", "Opacity", "B"]
    multi = resolve_labels("m", dict(kind="multilabel", outputs={"pneumonia": ["Pneumonia"], "COVID-19": ["Opacity"]},
                                     threshold=0.9, activation="sigmoid"), 4, names)
    scores = class_scores(raw, multi)
    assert scores[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(5.0)))
    assert scores[0, 0] == pytest.approx(1 - scores[0, 1])  # normal = 1 - the largest disease score
    _, predicted = decide(scores, multi)
    assert list(predicted) == [1, 0]  # sigmoid(5) >= 0.9: pneumonia; sigmoid(0) < 0.9: normal
    with pytest.raises(InputError, match=r"labels\.outputs\.COVID-19: output 7 does not exist"):
        resolve_labels("m", dict(kind="softmax", outputs={"normal": 0, "COVID-19": 7}), 3, None)
    with pytest.raises(InputError, match=r"labels\.output_names: 3 names but the model has 4"):
        resolve_labels("m", dict(multi, output_names=names[:3]), 4, names[:3])


def test_outputs_agree_scales_the_tolerance_by_the_models_output_scale():
    from hideseek.imported.model import outputs_agree

    reference = np.array([[400.0, -0.15, 9.8], [1.5, 0.5, -0.2]])
    close = reference + np.array([[0.01, 0.001, -0.01], [0.014, 0.0, 0.0]])
    assert outputs_agree(close, reference, rtol=1e-3, atol=1e-4)  # 0.014 <= 1e-4 + 1e-3 * 400
    assert not np.allclose(close, reference, rtol=1e-3, atol=1e-4)  # elementwise, the 1.5 logit fails
    wrong = reference + np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # an operator converted wrongly
    assert not outputs_agree(wrong, reference, rtol=1e-3, atol=1e-4)
    assert not outputs_agree(reference[:, :2], reference, rtol=1e-3, atol=1e-4)


def _expected_scores(net, images_u8, to_input, labels):
    with torch.inference_mode():
        return class_scores(net.eval()(to_input(images_u8.float() / 255)), labels)


FORMATS = {
    "torchvision_resnet18": dict(format="torchvision", architecture="resnet18", preprocessing=pre(intensity="imagenet"),
                                 labels=SOFTMAX),
    "torchvision_densenet121": dict(format="torchvision", architecture="densenet121",
                                    preprocessing=pre(square="pad", top_crop=0.08), labels=SOFTMAX),
    "timm_mobilenetv3": dict(format="timm", architecture="mobilenetv3_small_050",
                             preprocessing=pre(intensity={"mean": 0.5, "std": 0.25}), labels=SOFTMAX),
    "xrv_densenet121": dict(format="torchxrayvision", architecture="densenet121",
                            preprocessing=pre(channels=1, intensity="xrv"),
                            labels=dict(kind="multilabel", outputs={"pneumonia": ["Pneumonia", "Consolidation"],
                                                                    "COVID-19": ["Lung Opacity"]})),
}


def build(name):
    import timm
    import torchvision
    import torchxrayvision as xrv

    torch.manual_seed(0)
    return {"torchvision_resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=3),
            "torchvision_densenet121": lambda: torchvision.models.densenet121(weights=None, num_classes=3),
            "timm_mobilenetv3": lambda: timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=3),
            "xrv_densenet121": lambda: xrv.models.DenseNet(weights=None)}[name]()


def manual_input(name, x01):
    """The input each model expects, written out by hand from its preprocessing."""
    from hideseek.classification.performance import IMAGENET_MEAN, IMAGENET_STD

    x = x01.unsqueeze(1)
    if name == "torchvision_resnet18":
        return (x.expand(-1, 3, -1, -1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
            IMAGENET_STD).view(1, 3, 1, 1)
    if name == "timm_mobilenetv3":
        return (x.expand(-1, 3, -1, -1) - 0.5) / 0.25
    if name == "xrv_densenet121":
        return x * 2048 - 1024
    return x.expand(-1, 3, -1, -1)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_predicts_every_representation_as_its_own_preprocessing_says(phantom, name):
    net = build(name)
    spec = entry(path=saved(phantom["tmp"], name, net), **FORMATS[name])
    model = load_imported(name, spec)
    predictions = predict_stores(model, phantom["stores"], progress=False)
    assert list(predictions["test_rep"].unique()) == list(REPS) and len(predictions) == 5 * 6
    probs = predictions[["p_normal", "p_pneumonia", "p_covid"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and (probs >= 0).all()
    assert set(predictions["predicted"]) <= set(CLASSES) and (predictions["train_rep"] == "imported").all()
    images, frame = load_partition(*phantom["stores"]["lungs_removed"], spec["preprocessing"])
    assert list(frame["image_id"]) == list(predictions.loc[predictions["test_rep"] == "lungs_removed", "image_id"])
    expected = _expected_scores(net, images, lambda x01: manual_input(name, x01), model.labels)
    assert torch.allclose(model.scores(images), expected, atol=1e-5)
