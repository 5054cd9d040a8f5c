"""Quantified lung attention and the per-architecture Grad-CAM job (Figure 3).

The CAMs come from :mod:`hideseek.audit.cam`: the target layer is the deepest whose native grid
is at least 7 × 7 at the model's input size (e.g. ``10×10 from layer2.3`` for ResNet-50 at 80 px;
at 224 px ``layer4.2``, Sadre et al.'s ``layer4[-1]``), upsampled bilinearly to the input. The
layer and its grid are written into every table (``cam_layer``, ``cam_grid``) and Figure 3.

Lung attention: for a non-negative CAM ``c`` and a region ``R`` (lung mask or lung box, mapped
into the classifier input exactly like the image: top 8 % cut, centre square, resize),

    energy share    = sum(c · R) / sum(c)
    area share      = mean(R)          (the energy share's chance level: a CAM blind to R)
    attention ratio = energy share / area share      (1 = no preference for the lungs)

Summaries average energy and area shares over images and divide the means (a ratio of means,
robust to images with tiny masks), with patient-bootstrap CIs (:mod:`hideseek.stats`). Tables
put each energy share beside its chance level. :func:`region_shares` and
:func:`summarize_attention` need only CAMs, masks and labels, so a control experiment can use
them on its own models.

CAM sanity (:func:`hideseek.audit.cam.randomisation_test`): the ``data`` model's CAMs on the
attention sample against a re-initialised copy's. The mean per-image Spearman correlation and its
CI (``randomisation_spearman[_ci_low|_ci_high]``) and ``cam_depends_on_weights`` (CI high <
``audit.gradcam.randomisation_max_correlation``) are filled on the ``data`` / ``all`` row only and
NaN on every other row: the test is of one model, and a per-class or per-representation copy of
its value would read as a measurement it is not. NaN there too: no image had a rankable CAM.
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
from .cam import RANDOMISATION_MAX_CORRELATION, CamLayer, compute_cams, randomisation_test
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


def region_shares(cam: np.ndarray, lung_mask: np.ndarray, to_input=None) -> dict:
    """Energy and area shares of the lung mask and the lung box for one CAM (classifier input
    frame) and its store-frame lung mask: the per-image values every attention summary uses.
    `to_input(region, size)` maps a store-frame region into the CAM's frame (default
    :func:`region_to_input`; an imported model passes its own geometry)."""
    size = cam.shape[-1]
    to_input = to_input or region_to_input
    lung = to_input(lung_mask, size)
    box = to_input(lung_box(lung_mask), size)
    return dict(mask_energy=energy_share(cam, lung), mask_area=area_share(lung),
                box_energy=energy_share(cam, box), box_area=area_share(box))


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


def _cam_frame(arch: str, rep: str, ids, meta: pd.DataFrame, predicted: pd.Series, cams, masks, mask_pos):
    """Per-image rows (ids order) with the region shares of each CAM."""
    shares = [region_shares(cam, masks[int(mask_pos[image_id])] > 0) for cam, image_id in zip(cams, ids)]
    return pd.DataFrame([dict(arch=arch, rep=rep, image_id=image_id, patient_id=meta.loc[image_id, "patient_id"],
                              true=meta.loc[image_id, "label"], predicted=predicted.loc[image_id], **share)
                         for image_id, share in zip(ids, shares)])


def explain_architecture(arch: str, models: dict, stores: dict, own_predictions: dict, mask_store: tuple,
                         n_images: int, sample_seed: int = 0, device: str = "cpu", threads: int = 1):
    """Grad-CAMs of each representation's model (`models`: rep -> model.pt) on its own test
    images: Figure 3 panels and per-image lung attention. The ``data`` model also gets the
    randomisation test on the attention sample (its copy re-initialised with `sample_seed`):
    per-image column ``randomisation_spearman``, NaN for the other representations.

    Returns (figure panels list, per-image attention frame, the CamLayer used, Figure 3 picks)."""
    import torch

    from ..classification.prediction import load_trained

    torch.set_num_threads(max(1, int(threads)))
    picks = pick_figure_images(own_predictions)
    masks = ImageStore(*mask_store)
    mask_pos = pd.Series(np.arange(len(masks.index)), index=masks.index["image_id"])
    sample = attention_sample(read_table(stores[next(iter(models))][1]), n_images, sample_seed)
    fig_ids = list(picks["image_id"])
    ids = fig_ids + [i for i in sample if i not in set(fig_ids)]
    in_sample = np.isin(ids, sample)

    panels, frames, layer = [], [], None
    for rep, model_path in models.items():
        model, payload, perf = load_trained(model_path, device)
        images, meta = _load_images(*stores[rep], ids, int(payload["recipe"]["input_size"]))
        predicted = own_predictions[rep].set_index("image_id")["predicted"]
        targets = [CLASSES.index(predicted.loc[i]) for i in ids]
        cams, layer = compute_cams(model, arch, images, targets, normalize=perf["normalize"])
        frame = _cam_frame(arch, rep, ids, meta, predicted, cams, masks, mask_pos)
        panels += [dict(rep=rep, image_id=row.image_id, true=row.true, predicted=row.predicted, image=images[k].numpy(),
                        cam=cams[k], mask_energy=row.mask_energy, mask_area=row.mask_area)
                   for k, row in enumerate(frame.iloc[:len(fig_ids)].itertuples())]
        frame["randomisation_spearman"] = np.nan
        if rep == "data":
            chosen = np.flatnonzero(in_sample)
            frame.loc[chosen, "randomisation_spearman"] = randomisation_test(
                model, arch, images[torch.as_tensor(chosen)], [targets[k] for k in chosen], seed=sample_seed,
                normalize=perf["normalize"])
        frames.append(frame[in_sample])
        log.info("%s / %s: %d CAMs at %d px, native grid %s", arch, rep, len(ids), images.shape[-1], layer.describe())
        del model
    return panels, pd.concat(frames, ignore_index=True), layer, picks


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


# Each energy share beside its chance level (the region's area share), then its CI and the ratio.
ATTENTION_COLUMNS = ["representation", "true_class", "n_images"] + [
    f"{region}_{name}" for region in ("mask", "box") for name in (
        "energy_share", "area_share", "energy_share_ci_low", "energy_share_ci_high", "ratio", "ratio_ci_low",
        "ratio_ci_high")]
# The data model's randomisation test: on the data / all row, NaN elsewhere (module docs).
RANDOMISATION_COLUMNS = ["randomisation_spearman", "randomisation_spearman_ci_low", "randomisation_spearman_ci_high",
                         "cam_depends_on_weights"]


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
                area = float(sub[f"{region}_area"].mean())
                row.update({f"{region}_energy_share": share, f"{region}_area_share": area,
                            f"{region}_energy_share_ci_low": lo, f"{region}_energy_share_ci_high": hi,
                            f"{region}_ratio": ratio, f"{region}_ratio_ci_low": rlo, f"{region}_ratio_ci_high": rhi})
            rows.append(row)
    return pd.DataFrame(rows, columns=ATTENTION_COLUMNS)


def summarize_randomisation(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                            max_correlation: float = RANDOMISATION_MAX_CORRELATION) -> dict:
    """The ``data`` model's mean trained-vs-randomised CAM correlation with its patient-bootstrap
    CI, and ``cam_depends_on_weights`` (CI high < `max_correlation`); all NaN without a value."""
    sub = per_image[per_image["rep"] == "data"]
    sub = sub[np.isfinite(sub["randomisation_spearman"])] if "randomisation_spearman" in sub else sub.iloc[:0]
    if sub.empty:
        return dict.fromkeys(RANDOMISATION_COLUMNS, np.nan)
    w = bootstrap_weights(sub["patient_id"], sub["true"], n_boot, seed)
    rho, lo, hi = mean_ci(sub["randomisation_spearman"], w, level)
    return dict(zip(RANDOMISATION_COLUMNS, (rho, lo, hi, bool(hi < max_correlation) if np.isfinite(hi) else np.nan)))


def attention_table(per_image: pd.DataFrame, reps, arch: str, cam_layer: CamLayer | None, input_size: int,
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                    max_correlation: float = RANDOMISATION_MAX_CORRELATION) -> pd.DataFrame:
    """lung_attention_{arch}.csv: :func:`summarize_attention` with the architecture, the
    randomisation test (:data:`RANDOMISATION_COLUMNS`, on the data / all row), the CAM's layer
    and native grid (``cam_layer`` ``layer2.3``, ``cam_grid`` ``10x10``) and the classifier input
    size, so the table says how coarse its CAMs are and whether they depend on the model."""
    summary = summarize_attention(per_image, reps, n_boot, seed, level)
    summary.insert(0, "arch", arch)
    sanity = summarize_randomisation(per_image, n_boot, seed, level, max_correlation)
    on_data_all = (summary["representation"] == "data") & (summary["true_class"] == "all")
    for column in RANDOMISATION_COLUMNS:  # object dtype keeps the flag a bool beside NaN
        summary[column] = pd.Series(np.nan, index=summary.index, dtype=object if column == "cam_depends_on_weights"
                                    else float)
        summary.loc[on_data_all, column] = sanity[column]
    summary["cam_layer"], summary["cam_grid"] = _cam_text(cam_layer)
    summary["input_size"] = input_size
    return summary


def _cam_text(cam_layer: CamLayer | None) -> tuple[str, str]:
    """(layer path, ``HxW``) for the tables; empty strings when no CAM was computed."""
    return (cam_layer.name, f"{cam_layer.grid[0]}x{cam_layer.grid[1]}") if cam_layer else ("", "")


def picks_table(picks: pd.DataFrame, arch: str, cam_layer: CamLayer | None) -> pd.DataFrame:
    """figure3_images.csv: which image each Figure 3 row shows and why, with the CAM layer and grid."""
    table = picks.copy()
    table.insert(0, "arch", arch)
    table["cam_layer"], table["cam_grid"] = _cam_text(cam_layer)
    return table


def write_gradcam_outputs(arch: str, files, reps, out_figure, out_attention, out_per_image, out_picks, *,
                          n_images: int, sample_seed: int = 0, device: str = "auto", threads: int = 1,
                          n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95,
                          randomisation_max_correlation: float = RANDOMISATION_MAX_CORRELATION) -> pd.DataFrame:
    """One architecture's Grad-CAM job (`files`: see :func:`gradcam_sources`): Figure 3, the
    lung attention table, its per-image values and the Figure 3 picks. Returns the table."""
    from ..devices import resolve_device

    models, stores, own, mask_store = gradcam_sources(files, reps)
    device = str(resolve_device(device, "classification.device"))
    panels, per_image, cam_layer, picks = explain_architecture(arch, models, stores, own, mask_store, n_images,
                                                               sample_seed, device=device, threads=threads)
    input_size = int(panels[0]["image"].shape[-1]) if panels else 0
    figure3(panels, reps, out_figure, arch, cam_layer.describe() if cam_layer else "?", input_size, picks)
    summary = attention_table(per_image, reps, arch, cam_layer, input_size, n_boot, boot_seed, level,
                              randomisation_max_correlation)
    write_csv_atomic(summary, out_attention)
    write_csv_atomic(per_image, out_per_image)
    write_csv_atomic(picks_table(picks, arch, cam_layer), out_picks)
    on_data_all = (summary["representation"] == "data") & (summary["true_class"] == "all")
    sanity = summary.loc[on_data_all, RANDOMISATION_COLUMNS]
    log.info("%s: Figure 3 from %s; CAM %s; %d images per model for lung attention; randomisation test %s", arch,
             list(picks["image_id"]), cam_layer.describe() if cam_layer else "none",
             per_image.groupby("rep").size().max() if len(per_image) else 0, sanity.to_dict("records"))
    return summary
