"""hideseek.plan: what the rule files derive from the config (standard library only)."""

import pytest

from hideseek import plan
from hideseek.errors import InputError


def test_ground_truth_masks_need_the_phantom(config):
    plan.check_config(config)
    config["classification_data"].update(kind="covidx", image_dir="x", train_split="t.txt")
    config["segmentation"]["masks"] = "ground_truth"
    with pytest.raises(InputError, match="segmentation.masks: ground_truth .* kind: covidx"):
        plan.check_config(config)


def test_descriptions_name_the_data(config):
    assert plan.dataset_description(config) == "built-in phantom, seed 0, shortcut 0.9, disease_contrast 6.0"
    config["classification_data"].update(kind="covidx", train_split="train.txt", test_split="test.txt")
    assert plan.dataset_description(config) == "COVIDx-format data from train.txt and test.txt"
    assert plan.segmentation_dataset_description(config).startswith("built-in phantom segmentation sets")


def test_source_probe_uses_the_cheapest_configured_architecture(config):
    assert plan.probe_arch(config) == "alexnet"
    config["classification"]["architectures"] = ["vgg11", "resnet50"]
    assert plan.probe_arch(config) == "resnet50"
    config["audit"]["source_probe"]["arch"] = "vgg11"
    assert plan.probe_arch(config) == "vgg11"
    config["audit"]["source_probe"]["epochs"] = 7
    assert plan.probe_recipe(config)["epochs"] == 7 and plan.probe_recipe(config)["family"] == "torchvision"


def test_source_probe_runs_only_on_representations_of_the_grid(config):
    assert plan.runs_source_probe(config)
    config["classification"]["representations"] = ["lungs_isolated"]
    assert plan.probe_representations(config) == [] and not plan.runs_source_probe(config)
    assert plan.verdict_notes(config)[-1] == ("Source probe: not run (none of audit.source_probe.representations "
                                              "is in classification.representations).")
    config["audit"]["source_probe"]["enabled"] = False
    assert plan.verdict_notes(config)[-1] == "Source probe: disabled (audit.source_probe.enabled: false)."


def test_only_torchvision_models_start_from_imagenet(config):
    config["classification"]["pretrained"] = True
    assert plan.uses_pretrained(config["classification"], "resnet50")
    assert not plan.uses_pretrained(config["classification"], "covidnet_cxr3a")
    config["classification"]["pretrained"] = False
    assert not plan.uses_pretrained(config["classification"], "resnet50")


def test_run_note_states_the_scale(config):
    note = plan.classifier_run_note(config["classification"], "covidnet_cxr3a")
    assert note.startswith("Run: 64 px, 15 epochs, batch 16, Adam 0.001, from scratch, width 0.5")
    assert "at most 80 training images per class, seeds 0" in note
    config["classification"]["models"]["resnet50"]["scheduler"] = "cosine"
    assert "Adam 0.001 (cosine), from scratch" in plan.classifier_run_note(config["classification"], "resnet50")
