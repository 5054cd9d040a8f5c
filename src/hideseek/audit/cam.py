"""Grad-CAM mechanics: the target layer, the CAMs, and the model-randomisation test.

Grad-CAM (Selvaraju et al. 2017) via ``pytorch-grad-cam``: always used as a context manager
(``with GradCAM(...) as cam:``, which removes its hooks; without it the hooks leak) and always
with explicit targets (``ClassifierOutputTarget`` of a given class, normally the predicted one).

**Target layer: chosen by its resolution.** A CAM is only as fine as its layer's grid: at the
default 80 px input ResNet-50's ``layer4`` is 3 × 3, and a 3 × 3 map cannot say whether a model
reads the lungs or the mediastinum beside them. So the target is the *deepest* candidate layer
(:func:`hideseek.classification.models.gradcam_candidate_layers`) whose output grid is at least
:data:`MIN_CAM_GRID` × :data:`MIN_CAM_GRID` at the model's own input size, measured by one dry
forward pass with hooks. At the paper's 224 px this is ResNet-50's ``layer4[-1]`` (7 × 7), as in
Sadre et al.; at 80 px it is ``layer2[-1]`` (10 × 10). We chose this over computing the CAM on an
upsampled input because an upsampled input is not what the model was trained or tested on: at
2.8 × the scale its filters see different structures, and the CAM would explain a computation
the audit never evaluates. The price: a shallower layer is less class-specific, which is what the
randomisation test below checks. The chosen layer and its native grid go into every table and
caption; the CAM is upsampled bilinearly to the input by pytorch-grad-cam.

**Model-randomisation test** (Adebayo et al. 2018, "Sanity checks for saliency maps"): the CAMs
of the trained model and of a copy with every parameter re-drawn from its layer's default
initialisation (seeded), for the same images and target classes; per image the Spearman rank
correlation of the two flattened CAMs. A CAM that barely changes when the weights are destroyed
shows the image, not the model, and its attention numbers are void. A constant CAM (all zero
after Grad-CAM's ReLU) has no ranking: against a non-constant one its correlation is taken as 0
(it shares none of the other's ordering), two constant CAMs give NaN (left out of summaries).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..seeding import seed_everything

log = logging.getLogger(__name__)

# The coarsest CAM grid we accept: 7 x 7 is ResNet-50's layer4 at the paper's 224 px, the grid of
# the paper's Figure 3; coarser grids put a lung and its surroundings in the same cell.
MIN_CAM_GRID = 7

# cam_depends_on_weights: the CI high of the mean trained-vs-randomised Spearman correlation must
# lie below this. Adebayo et al. find methods that fail the test keep rank correlations near 1
# after randomisation; below 0.5 the trained model's CAM shares at most a quarter of its rank
# variance with a weight-free map.
RANDOMISATION_MAX_CORRELATION = 0.5


@dataclass(frozen=True)
class CamLayer:
    """A Grad-CAM target: the module's path in the model, the module, its native (h, w) grid."""

    name: str
    module: object
    grid: tuple[int, int]

    def describe(self) -> str:
        """For captions and tables: ``10×10 from layer2.3``."""
        return f"{self.grid[0]}×{self.grid[1]} from {self.name}"


def native_grids(model, arch: str, input_size: int, layer_names=None) -> list[CamLayer]:
    """Every candidate layer, shallow to deep, with its output grid at `input_size` (one
    eval-mode forward pass of zeros: a train-mode pass would move BatchNorm statistics)."""
    import torch
    from torch import nn

    from ..classification.models import gradcam_candidate_layers

    candidates = (gradcam_candidate_layers(model, arch) if layer_names is None  # layer_names: imported models
                  else [(name, model.get_submodule(name)) for name in layer_names])
    grids = {}

    def recorder(name):
        def hook(module, inputs, output):
            grids[name] = tuple(int(d) for d in output.shape[-2:])
        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in candidates]
    weight = next(model.parameters())
    in_channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size, device=weight.device, dtype=weight.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [CamLayer(name, module, grids[name]) for name, module in candidates]


def choose_cam_layer(model, arch: str, input_size: int, min_grid: int = MIN_CAM_GRID, layer_names=None) -> CamLayer:
    """The deepest candidate layer whose grid is at least `min_grid` × `min_grid` at
    `input_size`; with none (a very small input), the finest one, with a warning."""
    layers = native_grids(model, arch, input_size, layer_names)
    fine_enough = [layer for layer in layers if min(layer.grid) >= min_grid]
    if fine_enough:
        return fine_enough[-1]
    log.warning("%s at %d px: no layer has a %dx%d grid; using %s", arch, input_size, min_grid, min_grid,
                layers[0].describe())
    return layers[0]


def _no_inplace_relu(model) -> None:
    """In-place ReLUs right after a hooked layer overwrite the saved activations: disable them."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False


def compute_cams(model, arch: str, images_u8, targets, batch_size: int = 16, normalize: str = "none",
                 layer_names=None):
    """Grad-CAMs for a uint8 (N, S, S) tensor and per-image target classes, on the layer
    :func:`choose_cam_layer` picks at S px; the input is made as in training (`normalize`: the
    recipe's, so an ImageNet-normalised model is explained on the inputs it was trained on).

    Returns (cams float32 (N, S, S) in [0, 1], the :class:`CamLayer` used)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ..classification.performance import to_model_input

    model = model.float().eval()
    _no_inplace_relu(model)
    size = int(images_u8.shape[-1])
    layer = choose_cam_layer(model, arch, size, layer_names=layer_names)
    device = next(model.parameters()).device
    cams = []
    with GradCAM(model=model, target_layers=[layer.module]) as cam:
        for start in range(0, len(images_u8), batch_size):
            batch = images_u8[start:start + batch_size].to(device)
            x = to_model_input(batch, dict(normalize=normalize, channels_last=False))
            chosen = [ClassifierOutputTarget(int(t)) for t in targets[start:start + batch_size]]
            cams.append(np.asarray(cam(input_tensor=x, targets=chosen), dtype=np.float32))
    if not cams:
        return np.zeros((0, size, size), np.float32), layer
    return np.concatenate(cams), layer


# ---------------------------------------------------------------------------------------------
# Model-randomisation test
# ---------------------------------------------------------------------------------------------
def reinitialised_copy(model, seed: int):
    """A deep copy of `model` whose every parameter (and BatchNorm statistic) is re-drawn from its
    layer's default initialisation, seeded; the trained `model` is left alone."""
    randomised = copy.deepcopy(model)
    seed_everything(seed)
    for module in randomised.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif any(True for _ in module.parameters(recurse=False)):
            raise InputError(f"cannot re-initialise {type(module).__name__}: it has parameters but no "
                             "reset_parameters(), so the randomisation test would keep its trained weights")
    return randomised


def cam_rank_correlation(cams_a, cams_b) -> np.ndarray:
    """Per-image Spearman correlation of two (N, H, W) CAM stacks, flattened (ties: average
    ranks). A constant CAM against a non-constant one gives 0, two constant CAMs NaN."""
    from scipy.stats import rankdata

    a, b = (np.asarray(c, dtype=float).reshape(len(c), -1) for c in (cams_a, cams_b))
    if a.shape != b.shape:
        raise ValueError(f"CAM stacks differ in shape: {a.shape} vs {b.shape}")
    if not len(a):
        return np.zeros(0)
    ra, rb = (rankdata(x, axis=1) for x in (a, b))
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    spread_a, spread_b = (ra ** 2).sum(axis=1), (rb ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / np.sqrt(spread_a * spread_b)
    one_constant = (spread_a == 0) != (spread_b == 0)
    rho[one_constant] = 0.0
    return rho


def cam_correlation(model_a, model_b, arch: str, images_u8, targets, normalize: str = "none",
                    layer_names=None) -> np.ndarray:
    """Per-image Spearman correlation of two models' CAMs for the same images and targets."""
    cams_a, _ = compute_cams(model_a, arch, images_u8, targets, normalize=normalize, layer_names=layer_names)
    cams_b, _ = compute_cams(model_b, arch, images_u8, targets, normalize=normalize, layer_names=layer_names)
    return cam_rank_correlation(cams_a, cams_b)


def randomisation_test(model, arch: str, images_u8, targets, seed: int = 0, normalize: str = "none",
                       layer_names=None) -> np.ndarray:
    """Per-image Spearman correlation of `model`'s CAMs with those of its re-initialised copy."""
    return cam_correlation(model, reinitialised_copy(model, seed), arch, images_u8, targets, normalize, layer_names)
