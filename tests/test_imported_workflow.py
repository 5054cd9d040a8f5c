"""imported_models through Snakemake on a tiny phantom: a trained model imported twice — its
model.pt (format hideseek) and its ONNX export (rule export_onnx, format onnx) — gets its
results/imported/{model}/ outputs and its row in results/audit/verdict.csv (origin imported);
each is also scored on the default's external set (its table and its row of the cross-site
table); with no imported_models the DAG has no imported job."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from test_grid_smoke import TINY, snakemake

REPS = ["data", "lungs_boxed_out"]
RUN = "results/classifiers/covidnet_cxr3a/data/seed0"
CONFIG = copy.deepcopy(TINY)
CONFIG["classification"]["representations"] = REPS
CONFIG["classification"]["models"]["covidnet_cxr3a"]["precision"] = "fp32"  # imported models run in fp32
CONFIG["audit"] = {"n_boot": 50, "source_probe": {"enabled": False}, "gradcam": {"n_images": 6}}
CONFIG["imported_models"] = {
    "own_pt": {"format": "hideseek", "path": f"{RUN}/model.pt"},
    "own_onnx": {"format": "onnx", "path": f"{RUN}/model.onnx",
                 "preprocessing": {"input_size": 32, "square": "centre_crop", "top_crop": 0.08, "channels": 3,
                                   "intensity": "unit"},
                 "labels": {"kind": "softmax", "outputs": {"normal": 0, "pneumonia": 1, "COVID-19": 2}}},
}


def test_default_run_has_no_imported_job(tmp_path):
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported_" not in result.stdout and "export_onnx" not in result.stdout


@pytest.mark.slow
def test_imported_models_get_outputs_and_verdict_rows(tmp_path):
    result = snakemake(tmp_path, "results/audit/verdict.csv",
                       "results/imported/own_pt/external/phantom_reversed/table.csv", config=CONFIG, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    verdict = pd.read_csv(tmp_path / "results" / "audit" / "verdict.csv")
    assert list(verdict["origin"]) == ["trained_here", "imported", "imported"]
    assert verdict.iloc[0]["arch"] == "covidnet_cxr3a"
    imported = verdict.iloc[1:].set_index("arch")
    assert sorted(imported.index) == ["own_onnx", "own_pt"]
    assert imported.loc["own_pt", "imported_format"] == "hideseek" and imported.loc["own_onnx", "imported_format"] == "onnx"
    # the ONNX export and the model.pt are the same model: the same numbers on every test set
    for rep in REPS:
        assert imported.loc["own_pt", f"acc_{rep}"] == pytest.approx(imported.loc["own_onnx", f"acc_{rep}"])
    pt, onnx = (pd.read_csv(tmp_path / "results" / "imported" / m / "predictions.csv") for m in ("own_pt", "own_onnx"))
    # onnxruntime's kernels round differently from torch's: on this 2-epoch model (logits up to ~400)
    # by ~3e-5 of the logits' size, up to ~1e-3 in a probability; the classes never change
    assert (pt["predicted"] == onnx["predicted"]).all() and (pt["p_covid"] - onnx["p_covid"]).abs().max() < 5e-3
    own = pd.read_csv(tmp_path / "results" / "predictions" / "covidnet_cxr3a" / "data" / "seed0.csv")
    assert (own["predicted"].to_numpy() == pt["predicted"].to_numpy()).all()
    status = json.loads((tmp_path / "results" / "imported" / "own_onnx" / "cam_status.json").read_text())
    assert status["cam"] and status["onnx_check"]["agrees"]
    summary = (tmp_path / "results" / "audit" / "summary.md").read_text()
    assert "## own_onnx" in summary and "imported, onnx" in summary
    # the default's external set: each imported model scored there, its table and its cross-site row
    ext = tmp_path / "results" / "imported" / "own_pt" / "external" / "phantom_reversed"
    table = pd.read_csv(ext / "table.csv")
    assert list(table["representation"]) == REPS and (table["external_set"] == "phantom_reversed").all()
    assert "imported model" in (ext / "table.md").read_text()
    cross = pd.read_csv(tmp_path / "results" / "tables" / "external_generalisation.csv")
    theirs = cross[cross["origin"] == "imported"].set_index("arch")
    assert sorted(theirs.index) == ["own_onnx", "own_pt"] and set(theirs["representation"]) == {"data"}
    ours = cross[(cross["arch"] == "covidnet_cxr3a") & (cross["representation"] == "data")].iloc[0]
    # own_pt is the trained data model itself: the same gap
    assert theirs.loc["own_pt", "gap"] == pytest.approx(ours["gap"])
    assert imported.loc["own_pt", "external_gap_phantom_reversed"] == pytest.approx(ours["gap"])
    assert "its accuracy on the full images goes from" in imported.loc["own_onnx", "paragraph"]
