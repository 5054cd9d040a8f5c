"""The five classifiers: output shapes, the PEPX design, paper-scale counts, Grad-CAM layers, weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from hideseek.errors import InputError
from hideseek.vocabulary import ARCHITECTURES, COVIDNET_ARCHS
from hideseek.classification.models import build_model, count_macs, count_parameters, COVIDNET_CONFIGS, gradcam_candidate_layers, PEPX, PEPXStage, PUBLISHED_COUNTS

torch.set_num_threads(1)


def _on_meta(arch: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, **kwargs)


def _feature_sizes(model: nn.Module, input_size: int) -> list[tuple[int, ...]]:
    """Output shapes (C, H, W) of the stem and each stage, from a meta-device forward."""
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
             for m in (model.stem, *model.stages)]
    model(torch.empty(1, 3, input_size, input_size, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_three_class_output_at_small_size(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()  # default width (paper scale for COVID-Net)
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["covidnet_cxr4a", "resnet50"])
def test_gray_input_and_other_class_count(arch):
    model = build_model(arch, num_classes=2, in_channels=1, width=0.125).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 2)


def test_importing_hideseek_does_not_import_torch():
    code = "import sys, hideseek; assert 'torch' not in sys.modules, 'hideseek imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pepx_block_shapes_and_inner_widths():
    block = PEPX(64, 256, (0.5, 0.75, 0.5))
    widths = [(seq[0].in_channels, seq[0].out_channels, seq[0].kernel_size, seq[0].groups)
              for seq in (block.project, block.expand, block.depthwise, block.project2, block.extend)]
    assert widths == [(64, 32, (1, 1), 1), (32, 48, (1, 1), 1), (48, 48, (3, 3), 48),
                      (48, 32, (1, 1), 1), (32, 256, (1, 1), 1)]
    for seq in (block.project, block.expand, block.depthwise, block.project2, block.extend):
        assert isinstance(seq[1], nn.BatchNorm2d) and isinstance(seq[2], nn.ReLU)
    assert block(torch.rand(2, 64, 9, 9)).shape == (2, 256, 9, 9)


def test_stage_is_densely_connected_beside_the_1x1_shortcut():
    torch.manual_seed(0)
    stage = PEPXStage(16, 32, depth=3, ratios=(0.5, 0.75, 0.5), downsample=True).eval()
    x = torch.rand(2, 16, 12, 12)
    with torch.no_grad():
        pooled = nn.functional.max_pool2d(x, 2)
        s = stage.shortcut(pooled)
        p1 = stage.blocks[0](pooled)
        p2 = stage.blocks[1](s + p1)
        p3 = stage.blocks[2](s + p1 + p2)
        out = stage(x)
    assert out.shape == (2, 32, 6, 6)
    torch.testing.assert_close(out, s + p1 + p2 + p3)


@pytest.mark.parametrize("arch", COVIDNET_ARCHS)
def test_covidnet_stage_resolutions_and_depths(arch):
    config = COVIDNET_CONFIGS[arch]
    model = _on_meta(arch)
    assert [len(stage.blocks) for stage in model.stages] == [3, 4, 6, 3] == list(config.depths)
    sizes = _feature_sizes(model, 224)
    assert [s[1:] for s in sizes] == [(56, 56), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert [s[0] for s in sizes[1:]] == list(config.stage_widths)
    assert [s[1:] for s in _feature_sizes(model, 480)[1:]] == [(120, 120), (60, 60), (30, 30), (15, 15)]
    head = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [
        (config.stage_widths[-1], 1024), (1024, 1024), (1024, 3)]
    assert isinstance(model.head[0], nn.AdaptiveAvgPool2d)  # pooled, not flattened


@pytest.mark.parametrize("arch", COVIDNET_ARCHS)
def test_covidnet_paper_scale_counts_within_20_percent_of_published(arch):
    published = PUBLISHED_COUNTS[arch]
    model = _on_meta(arch)
    params = count_parameters(model)
    macs = count_macs(model, published["input_size"])
    assert abs(params / published["params"] - 1) < 0.20, params
    assert abs(macs / published["macs"] - 1) < 0.20, macs


def test_width_scales_covidnet_and_is_ignored_for_torchvision():
    full, narrow = _on_meta("covidnet_cxr4a"), _on_meta("covidnet_cxr4a", width=0.25)
    assert [s[0] for s in _feature_sizes(narrow, 64)[1:]] == [64, 128, 256, 576]
    assert count_macs(narrow, 224) < count_macs(full, 224) / 8
    assert count_parameters(_on_meta("resnet50", width=0.25)) == count_parameters(_on_meta("resnet50"))


def test_count_macs_matches_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    expected = 16 * 16 * 8 * 3 * 9 + 16 * 16 * 8 * 9 + 8 * 5
    assert count_macs(model, 16) == expected
    assert count_parameters(model) == (8 * 27 + 8) + (8 * 9 + 8) + (8 * 5 + 5)
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is untouched
    # torchvision's published ResNet-50 figure is 4.09 GMACs at 224 px
    assert abs(count_macs(_on_meta("resnet50"), 224) / 4.09e9 - 1) < 0.01


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gradcam_candidate_layers_are_feature_maps_shallow_to_deep(arch):
    torch.manual_seed(0)
    model = build_model(arch, width=0.125).eval()
    candidates = gradcam_candidate_layers(model, arch)
    modules = dict(model.named_modules())
    assert candidates and all(modules[name] is layer for name, layer in candidates)
    if arch == "resnet50":
        deepest = model.layer4[-1]  # Sadre et al.'s target layer
    elif arch in COVIDNET_ARCHS:
        deepest = model.stages[-1]
    else:
        deepest = [m for m in model.features if isinstance(m, nn.ReLU)][-1]
    assert candidates[-1][1] is deepest
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["out"] = output

    for module in model.modules():  # an in-place ReLU would overwrite the kept output
        if isinstance(module, nn.ReLU):
            module.inplace = False
    hook = candidates[-1][1].register_forward_hook(keep)
    model(torch.rand(1, 3, 64, 64))[0, 2].backward()
    hook.remove()
    assert captured["out"].dim() == 4 and captured["out"].grad.abs().sum() > 0


def test_gradcam_runs_on_a_candidate_layer():
    cam_module = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build_model("covidnet_cxr3a", width=0.125).eval()
    layers = [layer for _, layer in gradcam_candidate_layers(model, "covidnet_cxr3a")[-1:]]
    with cam_module.GradCAM(model=model, target_layers=layers) as cam:
        heat = cam(input_tensor=torch.rand(2, 3, 64, 64), targets=[ClassifierOutputTarget(0)] * 2)
    assert heat.shape == (2, 64, 64)


def test_pretrained_weights_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    imagenet_like = torchvision.models.resnet50(weights=None)  # 1000-class head
    path = tmp_path / "resnet50_imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = build_model("resnet50", pretrained_weights=str(path))
    torch.testing.assert_close(model.conv1.weight, imagenet_like.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.layer4[-1].conv3.weight, imagenet_like.layer4[-1].conv3.weight, rtol=0, atol=0)
    assert model.fc.out_features == 3 and model.fc.in_features == 2048
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3)

    gray = build_model("resnet50", pretrained_weights=path, in_channels=1)
    torch.testing.assert_close(gray.conv1.weight, imagenet_like.conv1.weight.mean(1, keepdim=True))

    with pytest.raises(InputError, match="does not match torchvision alexnet"):
        build_model("alexnet", pretrained_weights=path)


def test_pretrained_weights_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_model("vgg11", pretrained_weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        build_model("alexnet", pretrained_weights=tmp_path / "junk.pth")
    for arch in COVIDNET_ARCHS:
        with pytest.raises(InputError, match="only available for alexnet, vgg11, resnet50"):
            build_model(arch, pretrained_weights=tmp_path / "junk.pth")
    with pytest.raises(InputError, match="unknown architecture"):
        build_model("densenet121")


# The counts stated in README "Models" and the hideseek.classification.models docstring (M params, GMACs).
DOCUMENTED = {
    "covidnet_cxr4a": (39.25, {480: 24.91, 224: 5.43}),
    "covidnet_cxr3a": (37.92, {480: 23.35, 224: 5.09}),
    "alexnet": (57.02, {224: 0.71}),
    "vgg11": (128.78, {224: 7.61}),
    "resnet50": (23.51, {224: 4.09}),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_documented_counts_are_current(arch):
    params, macs = DOCUMENTED[arch]
    model = _on_meta(arch)
    assert round(count_parameters(model) / 1e6, 2) == params
    for size, gmacs in macs.items():
        assert round(count_macs(model, size) / 1e9, 2) == gmacs


def test_fetch_pretrained_weights_reuses_the_cache_without_network(tmp_path):
    from hideseek.classification.models import fetch_pretrained_weights

    cached = tmp_path / "resnet50_imagenet1k_v1.pth"
    cached.write_bytes(b"already downloaded")
    assert fetch_pretrained_weights("resnet50", tmp_path) == str(cached)
    with pytest.raises(InputError, match="no ImageNet weights"):
        fetch_pretrained_weights("covidnet_cxr4a", tmp_path)
