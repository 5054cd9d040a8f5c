"""imported_models: the schema, the parse-time checks (errors name the key), the mapping note."""

from __future__ import annotations

import copy

import pytest
from snakemake.utils import validate

from conftest import REPO
from hideseek.errors import InputError
from hideseek.imported.spec import XRV_PATHOLOGIES, check_imported_models, mapping_note
from hideseek.plan import check_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
ONNX = dict(format="onnx", path="m.onnx",
            preprocessing=dict(input_size=64, channels=3, intensity="unit"),
            labels=dict(kind="softmax", outputs={"normal": 0, "pneumonia": 1, "COVID-19": 2}))
XRV = dict(format="torchxrayvision", path="xrv.pt",
           preprocessing=dict(input_size=64, channels=1, intensity="xrv"),
           labels=dict(kind="multilabel", outputs={"pneumonia": ["Pneumonia"], "COVID-19": ["Lung Opacity"]}))


def configured(**models) -> dict:
    config = {"imported_models": copy.deepcopy(models)}
    validate(config, SCHEMA)
    return config


def error_of(**models) -> str:
    with pytest.raises(InputError) as caught:
        check_imported_models(configured(**models))
    return str(caught.value)


def test_default_is_empty_and_entries_get_defaults(config):
    assert config["imported_models"] == {}
    check_config(config)
    entry = configured(m=ONNX)["imported_models"]["m"]
    assert entry["preprocessing"]["square"] == "centre_crop" and entry["preprocessing"]["top_crop"] == 0.0
    assert entry["cam_layer"] is None and entry["collapse_share"] == 0.9 and entry["labels"]["threshold"] == 0.5
    check_imported_models(configured(m=ONNX, x=XRV))


def test_check_config_runs_the_imported_checks(config):
    config["imported_models"] = configured(m=dict(ONNX, labels=dict(kind="softmax", outputs={"covid": 0})))[
        "imported_models"]
    with pytest.raises(InputError, match=r"imported_models\.m\.labels\.outputs"):
        check_config(config)


def test_schema_rejects_unknown_keys_and_values():
    from snakemake.exceptions import WorkflowError

    for bad in (dict(ONNX, formatt="onnx"), dict(ONNX, format="tensorflow"),
                dict(ONNX, preprocessing=dict(ONNX["preprocessing"], channels=2)),
                dict(ONNX, preprocessing=dict(ONNX["preprocessing"], square="stretch"))):
        with pytest.raises(WorkflowError):
            configured(m=bad)


def test_wrong_channels_and_intensity_name_the_key():
    message = error_of(x=dict(XRV, preprocessing=dict(XRV["preprocessing"], channels=3)))
    assert "imported_models.x.preprocessing.channels" in message and "channels: 1" in message
    message = error_of(m=dict(ONNX, preprocessing=dict(ONNX["preprocessing"], channels=1, intensity="imagenet")))
    assert "imported_models.m.preprocessing.intensity" in message
    message = error_of(m=dict(ONNX, preprocessing=dict(ONNX["preprocessing"],
                                                       intensity={"mean": [0.5, 0.5], "std": 0.2})))
    assert "imported_models.m.preprocessing.intensity.mean" in message and "2 values for 3 channel" in message


def test_label_names_that_do_not_exist_name_the_key():
    message = error_of(m=dict(ONNX, labels=dict(kind="softmax", outputs={"normal": 0, "covid": 1})))
    assert "imported_models.m.labels.outputs" in message and "'covid' is not a class" in message
    assert "COVID-19" in message
    message = error_of(x=dict(XRV, labels=dict(kind="multilabel", outputs={"COVID-19": ["Covid"]})))
    assert "imported_models.x.labels.outputs.COVID-19" in message and "'Covid' is not an output" in message
    message = error_of(m=dict(ONNX, labels=dict(kind="multilabel", outputs={"COVID-19": ["covid"]})))
    assert "imported_models.m.labels.output_names" in message
    message = error_of(m=dict(ONNX, labels=dict(kind="softmax", outputs={"normal": 0, "COVID-19": 0})))
    assert "share an output index" in message
    message = error_of(x=dict(XRV, labels=dict(kind="multilabel", outputs={"normal": ["Hernia"]})))
    assert "neither pneumonia nor COVID-19" in message


def test_format_specific_keys():
    message = error_of(h=dict(format="hideseek", path="model.pt", preprocessing=ONNX["preprocessing"]))
    assert "imported_models.h.preprocessing" in message and "carries its own" in message
    check_imported_models(configured(h=dict(format="hideseek", path="model.pt")))
    message = error_of(t=dict(ONNX, format="torchvision"))
    assert "imported_models.t.architecture: missing" in message
    assert "imported_models.t.labels: missing" in error_of(t=dict(format="timm", path="a.pt", architecture="x",
                                                                  preprocessing=ONNX["preprocessing"]))
    assert "imported_models.x.architecture" in error_of(x=dict(XRV, architecture="vit"))
    assert "imported_models.m.architecture" in error_of(m=dict(ONNX, architecture="resnet18"))


def test_large_input_warns_about_upsampling(caplog):
    config = configured(m=dict(ONNX, preprocessing=dict(ONNX["preprocessing"], input_size=224)))
    config["store"] = {"long_side": 140}
    check_imported_models(config)
    assert "imported_models.m.preprocessing.input_size" in caplog.text and "upsampled" in caplog.text


def test_xrv_pathologies_match_the_installed_package_and_mapping_note():
    xrv = pytest.importorskip("torchxrayvision")
    assert list(XRV_PATHOLOGIES) == list(xrv.datasets.default_pathologies)
    entry = configured(x=XRV)["imported_models"]["x"]
    note = mapping_note(entry)
    assert "COVID-19 = max of Lung Opacity" in note and "normal when no disease score reaches 0.5" in note
    assert "output 2" in mapping_note(configured(m=ONNX)["imported_models"]["m"])
