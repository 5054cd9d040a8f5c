"""Round trip: a model this workflow trains, exported to ONNX and audited as an imported model,
reproduces evaluate_classifier's predictions; then the whole imported-model audit runs on it
(tables, Grad-CAM through onnx2torch checked against onnxruntime, the verdict row)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from snakemake.utils import validate

from conftest import REPO
from test_imported_fixtures import REPS, phantom_stores

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from hideseek.classification.inputs import load_split  # noqa: E402
from hideseek.classification.prediction import evaluate_classifier  # noqa: E402
from hideseek.classification.recipes import resolve_recipe  # noqa: E402
from hideseek.classification.training import train_classifier, write_training_outputs  # noqa: E402
from hideseek.imported.export import export_onnx, read_entry  # noqa: E402
from hideseek.imported.model import load_imported  # noqa: E402
from hideseek.imported.predict import predict_stores  # noqa: E402

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
# Probabilities of the ONNX path (onnxruntime, fp32) against evaluate_classifier's (torch, fp32).
PROB_ATOL = 1e-5


def entry(**fields) -> dict:
    """An imported_models entry with the schema's defaults filled in."""
    config = {"imported_models": {"m": fields}}
    validate(config, SCHEMA)
    return config["imported_models"]["m"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny COVID-Net trained for one epoch on the phantom's data representation."""
    tmp = tmp_path_factory.mktemp("roundtrip")
    stores, mask_store, index = phantom_stores(tmp / "stores")
    config = {}
    validate(config, SCHEMA)
    recipe = resolve_recipe(config["classification"], "covidnet_cxr3a")
    recipe.update(input_size=32, width=0.125, epochs=1, batch_size=8, precision="fp32", channels_last=False,
                  eval_batch_size=16, augment=dict(recipe["augment"], enabled=False))
    train = load_split(*stores["data"], "train", 32)
    val = load_split(*stores["data"], "val", 32)
    result = train_classifier("covidnet_cxr3a", recipe, train, val, 0, tmp / "ck", device="cpu", progress=False)
    run = tmp / "run"
    write_training_outputs(result, run / "model.pt", run / "history.csv", run / "train_info.json",
                           extra=dict(representation="data"))
    return dict(tmp=tmp, stores=stores, mask_store=mask_store, index=index, model_pt=run / "model.pt")


def test_onnx_export_audited_as_imported_reproduces_evaluate_classifier(trained):
    expected = evaluate_classifier(trained["model_pt"], trained["stores"], "data", 0, device="cpu")
    onnx_path = trained["tmp"] / "run" / "model.onnx"
    written = export_onnx(trained["model_pt"], onnx_path)
    assert read_entry(onnx_path) == written
    spec = entry(**written)
    assert spec["preprocessing"] == dict(input_size=32, square="centre_crop", top_crop=0.08, channels=3,
                                         intensity="unit")
    model = load_imported("roundtrip", spec)
    assert model.session is not None and model.torch_model is None  # forward passes through onnxruntime
    got = predict_stores(model, trained["stores"], progress=False)
    assert list(got["test_rep"].unique()) == list(REPS) and len(got) == len(expected) == 5 * 12
    pd.testing.assert_frame_equal(got[["test_rep", "image_id", "true"]], expected[["test_rep", "image_id", "true"]])
    assert (got["predicted"].to_numpy() == expected["predicted"].to_numpy()).all()
    columns = ["p_normal", "p_pneumonia", "p_covid"]
    assert np.abs(got[columns].to_numpy() - expected[columns].to_numpy()).max() <= PROB_ATOL
    # the model.pt itself, imported as format hideseek, gives the same numbers through torch
    own = predict_stores(load_imported("own", entry(format="hideseek", path=str(trained["model_pt"]))),
                         trained["stores"], progress=False)
    assert (own["predicted"] == expected["predicted"]).all()
    assert np.abs(own[columns].to_numpy() - expected[columns].to_numpy()).max() <= 1e-6


def test_imported_audit_end_to_end_with_onnx_cams(trained, tmp_path):
    from hideseek.audit.verdict import VERDICT_COLUMNS
    from hideseek.imported.explain import write_imported_gradcam
    from hideseek.imported.tables import write_imported_tables
    from hideseek.imported.verdict import EXTRA_COLUMNS, with_imported_rows, write_imported_verdict_row

    onnx_path = trained["tmp"] / "run" / "model.onnx"
    if not onnx_path.exists():
        export_onnx(trained["model_pt"], onnx_path)
    spec = entry(**read_entry(onnx_path))
    model = load_imported("exported", spec)
    predictions = predict_stores(model, trained["stores"], progress=False)
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    tables = {k: tmp_path / f"{k}.csv" for k in ("hiding", "metrics", "per_source", "auroc", "distribution")}
    out = write_imported_tables(tmp_path / "predictions.csv", list(REPS), tables, n_boot=50)
    hiding = out["hiding"].set_index("test_rep")
    assert list(hiding.index) == list(REPS) and (hiding["n_test"] == 12).all()
    on_data = predictions[predictions["test_rep"] == "data"]
    assert hiding.loc["data", "accuracy"] == pytest.approx((on_data["true"] == on_data["predicted"]).mean())
    assert np.isnan(hiding.loc["data", "mcnemar_p"]) and hiding.loc["lungs_removed", "mcnemar_p"] <= 1
    metrics = out["metrics"].set_index("test_rep")
    assert metrics.loc["data", "accuracy"] == pytest.approx(hiding.loc["data", "accuracy"])
    assert {"sens_covid_19", "ppv_normal", "sens_normal_ci_low", "mcnemar_p_vs_data"} <= set(metrics.columns)
    dist = out["distribution"].set_index("test_rep")
    shares = dist[["predicted_share_normal", "predicted_share_pneumonia", "predicted_share_covid_19"]]
    assert np.allclose(shares.sum(axis=1), 1)
    assert set(out["auroc"]["representation"]) == set(REPS)

    files = dict(figure=tmp_path / "gradcam.png", attention=tmp_path / "attention.csv",
                 per_image=tmp_path / "per_image.csv", status=tmp_path / "status.json")
    status = write_imported_gradcam("exported", spec, trained["stores"], tmp_path / "predictions.csv",
                                    trained["mask_store"], files, n_images=6, device="cpu", n_boot=50)
    assert status["cam"] and status["onnx_check"]["agrees"] and status["onnx_check"]["n_images"] == 60
    assert json.loads(files["status"].read_text())["cam_layer"] == status["cam_layer"]
    assert files["figure"].read_bytes().startswith(b"\x89PNG")
    attention = pd.read_csv(files["attention"])
    assert set(attention["representation"]) == set(REPS)
    on_data_all = attention[(attention["representation"] == "data") & (attention["true_class"] == "all")].iloc[0]
    assert 0 < on_data_all["mask_area_share"] < 1 and np.isfinite(on_data_all["randomisation_spearman"])
    # the converted graph's CAMs are the CAMs of the model.pt itself (same layer, same numbers)
    own_files = {k: tmp_path / f"own_{path.name}" for k, path in files.items()}
    own_status = write_imported_gradcam("own", entry(format="hideseek", path=str(trained["model_pt"])),
                                        trained["stores"], tmp_path / "predictions.csv", trained["mask_store"],
                                        own_files, n_images=6, device="cpu", n_boot=50)
    assert own_status["cam_grid"] == status["cam_grid"] and own_status["cam_layer"] == "stages.0"
    per_image, own_per_image = (pd.read_csv(f["per_image"]) for f in (files, own_files))
    assert np.allclose(per_image["mask_energy"], own_per_image["mask_energy"], atol=1e-4, equal_nan=True)

    row = write_imported_verdict_row(tmp_path / "row.csv", tmp_path / "row.md", "exported", "onnx",
                                     trained["stores"]["data"][1], tables["hiding"], tables["distribution"],
                                     files["attention"], tables["per_source"], files["status"], margin=0.1,
                                     learned_margin=0.2, min_test_images=30)
    assert row["verdict"] == "inconclusive" and "12 images" in row["verdict_reason"]  # 12 < min_test_images
    assert row["acc_lungs_boxed_out"] == pytest.approx(hiding.loc["lungs_boxed_out", "accuracy"])
    trained_here = pd.DataFrame([{c: np.nan for c in VERDICT_COLUMNS} | {"arch": "covidnet_cxr3a",
                                                                          "source_only_accuracy": 0.9}])
    merged = with_imported_rows(trained_here, [tmp_path / "row.csv"])
    assert list(merged["origin"]) == ["trained_here", "imported"]
    assert list(merged.columns) == VERDICT_COLUMNS + EXTRA_COLUMNS
    assert merged.iloc[1]["source_only_accuracy"] == 0.9  # data-set evidence is the trained-here rows'
    assert list(with_imported_rows(trained_here, [])["origin"]) == ["trained_here"]
