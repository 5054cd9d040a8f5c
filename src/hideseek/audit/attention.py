"""Grad-CAM (Figure 3) and quantified lung attention.

Grad-CAM (Selvaraju et al. 2017) via ``pytorch-grad-cam``: always used as a context manager
(``with GradCAM(...) as cam:``, which removes its hooks; without it the hooks leak) and always
with explicit targets (the class the model *predicted*, ``ClassifierOutputTarget``). Target
layers come from :func:`hideseek.classification.models.gradcam_target_layers` (ResNet-50
``layer4[-1]``, the last conv of AlexNet / VGG-11, the last PEPX stage of COVID-Net). The CAM
is computed on the layer's native grid (e.g. 4 × 4 for ResNet-50 at 128 px) and upsampled
bilinearly to the classifier input; the native grid is reported with every output.

Lung attention: for a non-negative CAM ``c`` and a region ``R`` (lung mask or lung box, mapped
into the classifier input exactly like the image: top 8 % cut, centre square, resize),

    energy share   = sum(c · R) / sum(c)
    area share     = mean(R)
    attention ratio = energy share / area share      (1 = no preference for the lungs)

Summaries average energy and area shares over images and divide the means (a ratio of means,
robust to images with tiny masks), with patient-bootstrap CIs (:mod:`hideseek.stats`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..classification.inputs import classifier_input
from ..data.store import ImageStore
from ..io import read_table, write_csv_atomic
from ..segmentation.components import lung_box
from ..stats import bootstrap_weights, mean_ci, ratio_ci
from ..vocabulary import CLASSES
from .figure3 import figure3, pick_figure_images
from .source_probe import representation_stores

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# CAM energy in a region (pure numpy)
# ---------------------------------------------------------------------------------------------
def energy_share(cam: np.ndarray, region: np.ndarray) -> float:
    """Share of the (non-negative) CAM's energy inside `region` (NaN for an all-zero CAM)."""
    cam = np.clip(np.asarray(cam, dtype=float), 0, None)
    region = np.asarray(region, dtype=bool)
    if cam.shape != region.shape:
        raise ValueError(f"CAM is {cam.shape} but the region is {region.shape}")
    total = cam.sum()
    return float(cam[region].sum() / total) if total > 0 else float("nan")


def area_share(region: np.ndarray) -> float:
    return float(np.asarray(region, dtype=bool).mean())


def attention_ratio(cam: np.ndarray, region: np.ndarray) -> float:
    """Energy share / area share (1: the CAM is no denser in the region than elsewhere)."""
    area = area_share(region)
    return energy_share(cam, region) / area if area > 0 else float("nan")


def region_to_input(region: np.ndarray, size: int) -> np.ndarray:
    """A store-frame bool region mapped into the classifier input (same crop/resize as images)."""
    return classifier_input(np.asarray(region, dtype=np.uint8) * 255, size) >= 128


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------
def _no_inplace_relu(model) -> None:
    """In-place ReLUs right after a hooked layer overwrite the saved activations: disable them."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False


def compute_cams(model, arch: str, images_u8, targets, batch_size: int = 16):
    """Grad-CAMs for a uint8 (N, S, S) tensor and per-image target classes.

    Returns (cams float32 (N, S, S) in [0, 1], native grid (h, w) of the target layer).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ..classification.models import gradcam_target_layers

    model = model.float().eval()
    _no_inplace_relu(model)
    layers = gradcam_target_layers(model, arch)
    grid = {}

    def hook(module, inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        grid["shape"] = tuple(out.shape[-2:])

    handle = layers[0].register_forward_hook(hook)
    device = next(model.parameters()).device
    cams = []
    try:
        with GradCAM(model=model, target_layers=layers) as cam:
            for start in range(0, len(images_u8), batch_size):
                batch = images_u8[start:start + batch_size].to(device)
                x = batch.unsqueeze(1).float().div(255.0).expand(-1, 3, -1, -1).contiguous()
                chosen = [ClassifierOutputTarget(int(t)) for t in targets[start:start + batch_size]]
                cams.append(np.asarray(cam(input_tensor=x, targets=chosen), dtype=np.float32))
    finally:
        handle.remove()
    size = images_u8.shape[-1]
    if not cams:
        return np.zeros((0, size, size), np.float32), grid.get("shape")
    return np.concatenate(cams), grid.get("shape")


# ---------------------------------------------------------------------------------------------
# Which test images are explained
# ---------------------------------------------------------------------------------------------
def attention_sample(index: pd.DataFrame, n_images: int, seed: int = 0) -> list[str]:
    """A fixed, class-stratified sample of test image ids (about n_images / 3 per class)."""
    test = index[index["partition"] == "test"].sort_values("image_id", kind="stable")
    rng = np.random.default_rng(seed)
    per_class = int(np.ceil(n_images / max(1, test["label"].nunique())))
    ids = []
    for cls in CLASSES:
        members = test[test["label"] == cls]["image_id"].to_numpy()
        if len(members) > per_class:
            members = np.sort(rng.choice(members, size=per_class, replace=False))
        ids.extend(members.tolist())
    return ids


# ---------------------------------------------------------------------------------------------
# The per-architecture job: Figure 3 + lung attention
# ---------------------------------------------------------------------------------------------
def _load_images(pixels, index_path, image_ids, size):
    import torch

    store = ImageStore(pixels, index_path)
    position = pd.Series(np.arange(len(store.index)), index=store.index["image_id"])
    images = np.stack([classifier_input(store[int(position[i])], size) for i in image_ids]) if len(image_ids) \
        else np.zeros((0, size, size), np.uint8)
    return torch.from_numpy(np.ascontiguousarray(images)), store.index.set_index("image_id").loc[list(image_ids)]


def explain_architecture(arch: str, models: dict, stores: dict, own_predictions: dict, mask_store: tuple,
                         n_images: int, sample_seed: int = 0, device: str = "cpu", threads: int = 1):
    """Grad-CAMs of each representation's model (`models`: rep -> model.pt) on its own test
    images: Figure 3 panels and per-image lung attention.

    Returns (figure panels list, per-image attention frame, native grid, Figure 3 picks)."""
    import torch

    from ..classification.prediction import load_trained

    torch.set_num_threads(max(1, int(threads)))
    reps = list(models)
    picks = pick_figure_images(own_predictions)
    mask_pixels, mask_index = mask_store
    masks = ImageStore(mask_pixels, mask_index)
    mask_pos = pd.Series(np.arange(len(masks.index)), index=masks.index["image_id"])
    any_rep = reps[0]
    sample = attention_sample(read_table(stores[any_rep][1]), n_images, sample_seed)

    panels, records, grid = [], [], None
    for rep in reps:
        model, payload, _ = load_trained(models[rep], device)
        size = int(payload["recipe"]["input_size"])
        preds = own_predictions[rep].set_index("image_id")
        fig_ids = list(picks["image_id"])
        ids = fig_ids + [i for i in sample if i not in set(fig_ids)]
        images, meta = _load_images(*stores[rep], ids, size)
        targets = [CLASSES.index(preds.loc[i, "predicted"]) for i in ids]
        cams, grid = compute_cams(model, arch, images, targets)
        for k, image_id in enumerate(ids):
            raw_mask = masks[int(mask_pos[image_id])] > 0
            lung = region_to_input(raw_mask, size)
            box = region_to_input(lung_box(raw_mask), size)
            if image_id in fig_ids:
                panels.append(dict(rep=rep, image_id=image_id, true=meta.loc[image_id, "label"],
                                   predicted=preds.loc[image_id, "predicted"], image=images[k].numpy(), cam=cams[k]))
            if image_id in set(sample):
                records.append(dict(arch=arch, rep=rep, image_id=image_id, patient_id=meta.loc[image_id, "patient_id"],
                                    true=meta.loc[image_id, "label"], predicted=preds.loc[image_id, "predicted"],
                                    mask_energy=energy_share(cams[k], lung), mask_area=area_share(lung),
                                    box_energy=energy_share(cams[k], box), box_area=area_share(box)))
        log.info("%s / %s: %d CAMs at %d px, native grid %s", arch, rep, len(ids), size, grid)
        del model
    return panels, pd.DataFrame(records), grid, picks


def gradcam_sources(files, reps) -> tuple[dict, dict, dict, tuple]:
    """(models, stores, own predictions, mask store) from the gradcam rule's named inputs
    (``model_{rep}``, ``pixels_{rep}``, ``index_{rep}``, ``pred_{rep}``, ``mask_pixels``,
    ``mask_index``). A representation's own predictions: its model on its own test set."""
    models = {rep: files[f"model_{rep}"] for rep in reps}
    stores = representation_stores(files, reps)
    own = {}
    for rep in reps:
        frame = read_table(files[f"pred_{rep}"])
        own[rep] = frame[frame["test_rep"] == rep]
    return models, stores, own, (files["mask_pixels"], files["mask_index"])


ATTENTION_COLUMNS = ["representation", "true_class", "n_images"] + [
    f"{region}_{name}" for region in ("mask", "box") for name in (
        "energy_share", "energy_share_ci_low", "energy_share_ci_high", "area_share", "ratio", "ratio_ci_low",
        "ratio_ci_high")]


def summarize_attention(per_image: pd.DataFrame, reps, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> pd.DataFrame:
    """Representation × class (and all classes): mean energy shares, area shares, their ratio,
    with patient-bootstrap CIs. Images whose CAM is all zero (no share defined) are left out;
    with none left the table has its columns and no rows."""
    rows = []
    for rep in reps:
        sub_rep = per_image[per_image["rep"] == rep]
        for cls in [*CLASSES, "all"]:
            sub = sub_rep if cls == "all" else sub_rep[sub_rep["true"] == cls]
            sub = sub[np.isfinite(sub["mask_energy"]) & np.isfinite(sub["box_energy"])]
            if sub.empty:
                continue
            w = bootstrap_weights(sub["patient_id"], sub["true"], n_boot, seed)
            row = dict(representation=rep, true_class=cls, n_images=len(sub))
            for region in ("mask", "box"):
                share, lo, hi = mean_ci(sub[f"{region}_energy"], w, level)
                ratio, rlo, rhi = ratio_ci(sub[f"{region}_energy"], sub[f"{region}_area"], w, level)
                row.update({f"{region}_energy_share": share, f"{region}_energy_share_ci_low": lo,
                            f"{region}_energy_share_ci_high": hi, f"{region}_area_share": float(sub[f"{region}_area"].mean()),
                            f"{region}_ratio": ratio, f"{region}_ratio_ci_low": rlo, f"{region}_ratio_ci_high": rhi})
            rows.append(row)
    return pd.DataFrame(rows, columns=ATTENTION_COLUMNS)


def _grid_text(grid) -> str:
    return f"{grid[0]}x{grid[1]}" if grid else ""


def attention_table(per_image: pd.DataFrame, reps, arch: str, grid, input_size: int, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """lung_attention_{arch}.csv: :func:`summarize_attention` with the architecture, the CAM's
    native grid (``4x4``) and the classifier input size, so the table says how coarse it is."""
    summary = summarize_attention(per_image, reps, n_boot, seed, level)
    summary.insert(0, "arch", arch)
    summary["cam_grid"] = _grid_text(grid)
    summary["input_size"] = input_size
    return summary


def picks_table(picks: pd.DataFrame, arch: str, grid) -> pd.DataFrame:
    """figure3_images.csv: which image each Figure 3 row shows and why, with the CAM grid."""
    table = picks.copy()
    table.insert(0, "arch", arch)
    table["cam_grid"] = _grid_text(grid)
    return table


def write_gradcam_outputs(arch: str, files, reps, out_figure, out_attention, out_per_image, out_picks, *,
                          n_images: int, sample_seed: int = 0, device: str = "auto", threads: int = 1,
                          n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One architecture's Grad-CAM job (`files`: see :func:`gradcam_sources`): Figure 3, the
    lung attention table, its per-image values and the Figure 3 picks. Returns the table."""
    from ..devices import resolve_device

    models, stores, own, mask_store = gradcam_sources(files, reps)
    device = str(resolve_device(device, "classification.device"))
    panels, per_image, grid, picks = explain_architecture(arch, models, stores, own, mask_store, n_images,
                                                          sample_seed, device=device, threads=threads)
    input_size = int(panels[0]["image"].shape[-1]) if panels else 0
    figure3(panels, reps, out_figure, arch, grid, input_size, picks)
    summary = attention_table(per_image, reps, arch, grid, input_size, n_boot, boot_seed, level)
    write_csv_atomic(summary, out_attention)
    write_csv_atomic(per_image, out_per_image)
    write_csv_atomic(picks_table(picks, arch, grid), out_picks)
    log.info("%s: Figure 3 from %s; CAM grid %s; %d images per model for lung attention",
             arch, list(picks["image_id"]), grid, per_image.groupby("rep").size().max() if len(per_image) else 0)
    return summary
