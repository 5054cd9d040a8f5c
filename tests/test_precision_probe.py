"""The precision probe: bf16 / channels_last chosen by timing the job's own training steps,
cached per machine outside results/, recorded in train_info, and without effect on the numbers
a seeded run produces (the probe leaves the RNG as it found it)."""

import json

import pytest
import torch

from hideseek.classification import performance
from hideseek.classification.performance import choose_candidate, performance_settings, probed_settings
from hideseek.classification.training import train_classifier, write_training_outputs
from test_training import tiny_build, tiny_recipe, tiny_split

ALL = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def seconds(fp32, fp32_cl, bf16, bf16_cl):
    return {"fp32": fp32, "fp32+channels_last": fp32_cl, "bf16": bf16, "bf16+channels_last": bf16_cl}


def test_bf16_only_when_clearly_faster():
    assert choose_candidate(seconds(1.0, 1.1, 0.95, 0.97), ALL) == ("fp32", False)  # 5 %: noise, keep fp32
    assert choose_candidate(seconds(1.0, 1.1, 0.80, 0.85), ALL) == ("bf16", False)
    assert choose_candidate(seconds(1.0, 0.7, 0.80, 0.66), ALL) == ("fp32", True)  # 6 % over fp32+cl: not enough
    assert choose_candidate(seconds(1.0, 0.7, 0.80, 0.5), ALL) == ("bf16", True)
    assert choose_candidate({"bf16": 2.0, "bf16+channels_last": 1.0}, ALL[2:]) == ("bf16", True)


def test_forced_settings_are_not_probed():
    def fail(candidates):
        raise AssertionError("probed although both settings were forced")

    perf = performance_settings(tiny_recipe(precision="bf16", channels_last=True), torch.device("cpu"), probe=fail)
    assert (perf["precision"], perf["channels_last"], perf["precision_choice"]["source"]) == ("bf16", True, "forced")


def test_auto_on_the_cpu_probes_the_remaining_choices():
    asked = []

    def probe(candidates):
        asked.append(candidates)
        return dict(precision="bf16", channels_last=False, source="measured", step_seconds={"bf16": 1.0})

    perf = performance_settings(tiny_recipe(precision="auto", channels_last=False), torch.device("cpu"), probe=probe)
    assert asked == [[("fp32", False), ("bf16", False)]]
    assert perf["precision"] == "bf16" and perf["precision_choice"]["source"] == "measured"
    # without a probe (nothing is trained) the CPU runs exact fp32
    assert performance_settings(tiny_recipe(precision="auto"), torch.device("cpu"))["precision"] == "fp32"


def test_probe_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HIDESEEK_CACHE", str(tmp_path))
    calls = []
    real = performance.measure_step_seconds

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(performance, "measure_step_seconds", counting)
    recipe = tiny_recipe(precision="auto", channels_last="auto")
    model = tiny_build("resnet50")
    first = probed_settings("resnet50", model, recipe, 3, torch.device("cpu"), ALL)
    second = probed_settings("resnet50", model, recipe, 3, torch.device("cpu"), ALL)
    assert len(calls) == 1 and (first["source"], second["source"]) == ("measured", "cached")
    assert set(first["step_seconds"]) == {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert all(v > 0 for v in first["step_seconds"].values())
    assert (first["precision"], first["channels_last"]) == (second["precision"], second["channels_last"])
    cached = json.loads((tmp_path / "precision_probe").glob("*.json").__next__().read_text())
    assert cached["key"]["cpu"] == performance.cpu_model() and cached["key"]["input_size"] == 16
    # another input size is another job: measured again
    probed_settings("resnet50", model, dict(recipe, input_size=24), 3, torch.device("cpu"), ALL)
    assert len(calls) == 2
    # capping oneDNN's ISA (AMX off) is another machine as far as speed goes: measured again
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    probed_settings("resnet50", model, recipe, 3, torch.device("cpu"), ALL)
    assert len(calls) == 3


def test_probed_run_trains_like_a_cached_one_and_records_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("HIDESEEK_CACHE", str(tmp_path / "cache"))
    recipe = tiny_recipe(precision="auto", channels_last="auto", epochs=2)
    train, val = tiny_split(), tiny_split(seed=1)
    runs = [train_classifier("resnet50", recipe, train, val, seed=0, checkpoint_dir=tmp_path / f"ck{i}",
                             build=tiny_build, progress=False) for i in range(2)]
    assert runs[0].info["precision_choice"]["source"] == "measured"
    assert runs[1].info["precision_choice"]["source"] == "cached"
    assert runs[0].history.drop(columns=[c for c in runs[0].history if "seconds" in c or "per_s" in c]).equals(
        runs[1].history.drop(columns=[c for c in runs[1].history if "seconds" in c or "per_s" in c]))
    info = runs[0].info
    assert info["precision"] in ("fp32", "bf16") and set(info["precision_choice"]["step_seconds"]) == {
        "fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    # the model is evaluated with the precision it was trained with
    paths = {k: tmp_path / f"out.{k}" for k in ("model", "history", "info")}
    write_training_outputs(runs[0], paths["model"], paths["history"], paths["info"])
    assert json.loads(paths["info"].read_text())["precision_choice"]["source"] == "measured"
    from hideseek.classification.prediction import load_trained
    _, _, perf = load_trained(paths["model"], "cpu", build=tiny_build)
    assert (perf["precision"], perf["channels_last"]) == (info["precision"], info["channels_last"])
    assert perf["precision_choice"]["source"] == "as trained"
