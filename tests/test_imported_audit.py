"""The audit of imported models beyond predictions: Grad-CAM, lung attention and the
randomisation test for torch formats, ONNX export and the forward-only fallback when onnx2torch
fails, wrong specs that fail at load naming the key, and the verdict that says out of
distribution, not lung-reading, when the model collapses with the lungs hidden."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from test_imported_fixtures import REPS, phantom_stores
from test_imported_models import FORMATS, SIZE, SOFTMAX, build, entry, pre, saved

torch = pytest.importorskip("torch")

from hideseek.errors import InputError  # noqa: E402
from hideseek.imported.model import load_imported  # noqa: E402
from hideseek.imported.predict import predict_stores  # noqa: E402
from hideseek.vocabulary import CLASSES  # noqa: E402


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    stores, mask_store, _ = phantom_stores(tmp_path_factory.mktemp("stores"), {"test": 2})
    return dict(stores=stores, mask_store=mask_store, tmp=tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("name, layer", [("torchvision_resnet18", "layer1.1"), ("xrv_densenet121", "features.denseblock1"),
                                         ("timm_mobilenetv3", "blocks.0")])
def test_gradcam_lung_attention_and_randomisation_for_torch_formats(phantom, tmp_path, name, layer):
    from hideseek.imported.explain import write_imported_gradcam

    spec = entry(path=saved(phantom["tmp"], f"cam_{name}", build(name)), **FORMATS[name])
    predict_stores(load_imported(name, spec), phantom["stores"], progress=False).to_csv(tmp_path / "p.csv", index=False)
    out = {k: tmp_path / f for k, f in dict(figure="g.png", attention="a.csv", per_image="i.csv",
                                            status="s.json").items()}
    status = write_imported_gradcam(name, spec, phantom["stores"], tmp_path / "p.csv", phantom["mask_store"], out,
                                    n_images=3, device="cpu", n_boot=20)
    assert status["cam"] and status["cam_layer"] == layer and status["cam_grid"] == "8x8"
    per_image = pd.read_csv(out["per_image"])
    assert sorted(per_image["rep"].unique()) == sorted(REPS) and per_image["mask_area"].between(0.05, 0.8).all()
    assert per_image.loc[per_image["rep"] == "data", "randomisation_spearman"].notna().any()
    attention = pd.read_csv(out["attention"])
    assert (attention["cam_layer"] == layer).all() and (attention["input_size"] == SIZE).all()

def test_onnx_export_of_a_torchvision_model_and_forward_only_fallback(phantom, tmp_path, monkeypatch):
    import onnx2torch

    from hideseek.imported.explain import write_imported_gradcam

    net = build("torchvision_resnet18").eval()
    path = tmp_path / "r18.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["x"], opset_version=17,
                      do_constant_folding=False, dynamo=False, dynamic_axes={"x": {0: "n"}})
    spec = entry(format="onnx", path=str(path), preprocessing=pre(intensity="imagenet"), labels=SOFTMAX)
    onnx_pred = predict_stores(load_imported("o", spec), phantom["stores"], progress=False)
    torch_spec = entry(format="torchvision", architecture="resnet18", path=saved(tmp_path, "r18", net),
                       preprocessing=pre(intensity="imagenet"), labels=SOFTMAX)
    torch_pred = predict_stores(load_imported("t", torch_spec), phantom["stores"], progress=False)
    assert (onnx_pred["predicted"] == torch_pred["predicted"]).all()
    assert np.abs(onnx_pred["p_covid"] - torch_pred["p_covid"]).max() < 1e-5
    onnx_pred.to_csv(tmp_path / "p.csv", index=False)

    def refuse(*args, **kwargs):
        raise NotImplementedError("Converter is not implemented (Identity-19)")

    monkeypatch.setattr(onnx2torch, "convert", refuse)
    out = {k: tmp_path / f for k, f in dict(figure="g.png", attention="a.csv", per_image="i.csv",
                                            status="s.json").items()}
    status = write_imported_gradcam("o", spec, phantom["stores"], tmp_path / "p.csv", phantom["mask_store"], out,
                                    n_images=3, device="cpu", n_boot=20)
    assert not status["cam"] and "forward passes only" in status["reason"] and "Identity-19" in status["reason"]
    assert json.loads(out["status"].read_text())["cam"] is False
    assert out["figure"].read_bytes().startswith(b"\x89PNG") and pd.read_csv(out["attention"]).empty

def test_wrong_specs_fail_at_load_naming_the_key(phantom, tmp_path):
    import torchvision

    r18 = saved(tmp_path, "r18", torchvision.models.resnet18(weights=None, num_classes=3))
    base = dict(format="torchvision", architecture="resnet18", path=r18, labels=SOFTMAX)
    with pytest.raises(InputError, match=r"imported_models\.m\.preprocessing\.channels: 1.*takes 3"):
        load_imported("m", entry(**base, preprocessing=pre(channels=1)))
    with pytest.raises(InputError, match=r"imported_models\.m\.path: the weights do not fit torchvision resnet34"):
        load_imported("m", entry(**dict(base, architecture="resnet34"), preprocessing=pre()))
    with pytest.raises(InputError, match=r"imported_models\.m\.architecture: 'resnet-18' is not a torchvision"):
        load_imported("m", entry(**dict(base, architecture="resnet-18"), preprocessing=pre()))
    with pytest.raises(InputError, match=r"imported_models\.m\.cam_layer: 'layer9' is not a module"):
        load_imported("m", entry(**base, preprocessing=pre(), cam_layer="layer9"))
    with pytest.raises(InputError, match=r"labels\.outputs\.COVID-19: output 5 does not exist"):
        load_imported("m", entry(**dict(base, labels=dict(kind="softmax", outputs={"normal": 0, "COVID-19": 5})),
                                 preprocessing=pre()))
    pickled = tmp_path / "whole.pt"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=3), pickled)
    with pytest.raises(InputError, match=r"(?s)weights_only=True.*state_dict\(\)"):
        load_imported("m", entry(**dict(base, path=str(pickled)), preprocessing=pre()))
    fixed = tmp_path / "fixed.onnx"
    torch.onnx.export(torchvision.models.resnet18(weights=None, num_classes=3).eval(), (torch.zeros(1, 3, 48, 48),),
                      str(fixed), opset_version=17, dynamo=False)
    with pytest.raises(InputError, match=r"imported_models\.m\.preprocessing\.input_size: 32, .* 48 x 48"):
        load_imported("m", entry(format="onnx", path=str(fixed), preprocessing=pre(), labels=SOFTMAX))

def _synthetic_predictions(collapse: bool, n_per_class: int = 20) -> pd.DataFrame:
    """A model right on 90 % of the full images; with the lungs boxed out at chance, either
    answering normal for everything (collapse) or guessing across classes."""
    rng = np.random.default_rng(0)
    true = np.repeat(CLASSES, n_per_class)
    rows = []
    for rep in ("data", "lungs_removed", "lungs_boxed_out"):
        if rep == "data":
            predicted = np.where(rng.random(len(true)) < 0.9, true, "normal")
        elif collapse:
            predicted = np.full(len(true), "normal")
        else:
            predicted = rng.permutation(true)
        probs = np.array([[0.8 if c == p else 0.1 for c in CLASSES] for p in predicted])
        rows.append(pd.DataFrame(dict(arch="ext", train_rep="imported", seed=0, test_rep=rep,
                                      image_id=[f"i{k:03d}" for k in range(len(true))],
                                      patient_id=[f"p{k:03d}" for k in range(len(true))], source="s", true=true,
                                      predicted=predicted, p_normal=probs[:, 0], p_pneumonia=probs[:, 1],
                                      p_covid=probs[:, 2])))
    return pd.concat(rows, ignore_index=True)

@pytest.mark.parametrize("collapse, verdict", [(True, "out_of_distribution"), (False, "no_evidence")])
def test_collapse_with_the_lungs_hidden_is_out_of_distribution_not_lung_reading(tmp_path, collapse, verdict):
    from hideseek.imported.tables import write_imported_tables
    from hideseek.imported.verdict import write_imported_verdict_row

    predictions = _synthetic_predictions(collapse)
    predictions.to_csv(tmp_path / "p.csv", index=False)
    reps = ["data", "lungs_removed", "lungs_boxed_out"]
    tables = {k: tmp_path / f"{k}.csv" for k in ("hiding", "metrics", "per_source", "auroc", "distribution")}
    out = write_imported_tables(tmp_path / "p.csv", reps, tables, n_boot=200)
    dist = out["distribution"].set_index("test_rep")
    assert dist.loc["lungs_boxed_out", "collapsed"] == collapse and not dist.loc["data", "collapsed"]
    assert dist.loc["lungs_boxed_out", "out_of_distribution"] == collapse
    index = predictions[predictions["test_rep"] == "data"].rename(columns={"true": "label"}).assign(partition="test")
    index.to_csv(tmp_path / "index.csv", index=False)
    pd.DataFrame(columns=["arch", "representation", "true_class"]).to_csv(tmp_path / "att.csv", index=False)
    (tmp_path / "s.json").write_text(json.dumps(dict(cam=False, reason="forward-only for this test")))
    row = write_imported_verdict_row(tmp_path / "row.csv", tmp_path / "row.md", "ext", "onnx", tmp_path / "index.csv",
                                     tables["hiding"], tables["distribution"], tmp_path / "att.csv",
                                     tables["per_source"], tmp_path / "s.json", margin=0.1, learned_margin=0.2)
    assert row["learned"] and row["verdict"] == verdict and row["origin"] == "imported"
    if collapse:
        assert "out of distribution" in row["verdict_reason"] and "normal for 100%" in row["verdict_reason"]
        assert row["ood_representations"] == "lungs_removed;lungs_boxed_out"
        assert "consistent with a model that reads the lungs" not in row["paragraph"]
    else:
        assert "consistent with a model that reads the lungs" in row["verdict_reason"]
    assert "forward-only for this test" in (tmp_path / "row.md").read_text()
