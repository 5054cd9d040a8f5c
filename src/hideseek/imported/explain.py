"""Grad-CAM of an imported model wherever it is differentiable in torch: the figure (rows =
true class, columns = test representation, label = the model's prediction there), lung
attention with its chance level and the weight-randomisation test, through the audit's own
functions (:mod:`hideseek.audit.cam`, :mod:`hideseek.audit.attention`, :mod:`hideseek.audit.figure3`).

The lung mask goes through the model's own geometry (:func:`.preprocess.mask_to_input`). The
target layer is the deepest of the family's candidates (:func:`.model.default_cam_layers`, or
the entry's ``cam_layer``) whose grid is at least 7 x 7 at the model's input size.

ONNX: the graph is converted with onnx2torch and its outputs checked against onnxruntime's on
the test images of every representation before any CAM is drawn: the largest raw-output
difference must be at most :data:`ONNX_ATOL` + :data:`ONNX_RTOL` × the largest |output| on those
images (:func:`.model.outputs_agree`), and no predicted class may change. If the conversion fails or disagrees, the job writes forward-only outputs
that say why (``cam_status.json``, an empty attention table, a figure with the reason).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from ..audit.attention import attention_sample, attention_table, region_shares
from ..audit.cam import RANDOMISATION_MAX_CORRELATION, CamLayer, compute_cams, randomisation_test
from ..audit.figure3 import figure3, pick_figure_images
from ..data.store import ImageStore
from ..errors import InputError
from ..io import read_table, save_figure_atomic, write_csv_atomic, write_text_atomic
from ..vocabulary import CLASSES
from .model import ImportedModel, class_scores, decide, onnx_forward, outputs_agree
from .preprocess import load_images, load_partition, mask_to_input, to_input

log = logging.getLogger(__name__)

ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-4


def check_onnx_conversion(model: ImportedModel, stores: dict, batch_size: int = 32) -> dict:
    """onnx2torch's outputs vs onnxruntime's on the test images of every store: the largest
    absolute difference, whether it is within tolerance (:func:`.model.outputs_agree`) and how
    many predicted classes differ."""
    import torch

    session, converted, reference = model.extra["session"], [], []
    for pixels, index in stores.values():
        images, _ = load_partition(pixels, index, model.pre)
        for start in range(0, len(images), batch_size):
            x01 = images[start:start + batch_size].unsqueeze(1).float().div_(255.0).expand(-1, 3, -1, -1)
            x = to_input(x01, model.pre)
            reference.append(onnx_forward(session, x.numpy()))
            with torch.inference_mode():
                converted.append(model.torch_model.net(x.to(model.device)).float().cpu().numpy())
    converted, reference = np.concatenate(converted), np.concatenate(reference)
    flips = int((decide(class_scores(torch.from_numpy(reference), model.labels), model.labels)[1]
                 != decide(class_scores(torch.from_numpy(converted), model.labels), model.labels)[1]).sum())
    worst = float(np.abs(converted - reference).max()) if reference.size else 0.0
    return dict(n_images=len(reference), max_abs_difference=worst, output_scale=float(np.abs(reference).max()),
                rtol=ONNX_RTOL, atol=ONNX_ATOL, predicted_class_changes=flips,
                agrees=outputs_agree(converted, reference, ONNX_RTOL, ONNX_ATOL) and flips == 0)


def torch_model_for_cams(name: str, entry: dict, stores: dict, device: str) -> tuple[ImportedModel | None, dict]:
    """(the model as a torch module, status) — for ONNX the onnx2torch conversion, checked; None
    with the reason in the status when there is no trustworthy torch module."""
    from .model import load_imported

    if entry["format"] != "onnx":
        return load_imported(name, entry, device), dict(cam=True, reason="torch model")
    try:
        model = load_imported(name, entry, device, onnx_as_torch=True)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - onnx2torch raises NotImplementedError, KeyError, ...
        return None, dict(cam=False, reason=f"onnx2torch could not convert the graph ({type(error).__name__}: "
                                            f"{str(error)[:300]}); forward passes only (onnxruntime)")
    check = check_onnx_conversion(model, stores, entry.get("batch_size", 32))
    if not check["agrees"]:
        return None, dict(cam=False, onnx_check=check, reason=(
            f"onnx2torch's conversion disagrees with onnxruntime (largest difference {check['max_abs_difference']:.2e}, "
            f"tolerance {ONNX_ATOL:g} + {ONNX_RTOL:g} x the largest |output|, {check['predicted_class_changes']} predicted classes "
            "differ); forward passes only (onnxruntime)"))
    return model, dict(cam=True, onnx_check=check, reason=(
        f"onnx2torch conversion checked against onnxruntime on {check['n_images']} test images: largest output "
        f"difference {check['max_abs_difference']:.2e} (tolerance {ONNX_ATOL:g} + {ONNX_RTOL:g} x the largest |output|), no "
        "predicted class differs"))


def explain_imported(model: ImportedModel, stores: dict, predictions: pd.DataFrame, mask_store: tuple,
                     n_images: int, sample_seed: int = 0):
    """(figure panels, per-image attention frame, the CamLayer used, figure picks, randomisation
    note): CAMs of the predicted class on each representation's version of the same images."""
    reps = list(stores)
    own = {rep: predictions[predictions["test_rep"] == rep] for rep in reps}
    picks = pick_figure_images(own)
    masks = ImageStore(*mask_store)
    mask_pos = pd.Series(np.arange(len(masks.index)), index=masks.index["image_id"])
    sample = attention_sample(read_table(stores[reps[0]][1]), n_images, sample_seed)
    fig_ids = list(picks["image_id"])
    ids = fig_ids + [i for i in sample if i not in set(fig_ids)]
    in_sample = np.isin(ids, sample)
    to_frame = lambda region, size: mask_to_input(region, model.pre)  # noqa: E731 - the model's geometry
    import torch

    panels, frames, layer, note = [], [], None, ""
    for rep in reps:
        images, meta = load_images(*stores[rep], ids, model.pre)
        predicted = own[rep].set_index("image_id")["predicted"]
        targets = [CLASSES.index(predicted.loc[i]) for i in ids]
        cams, layer = compute_cams(model.torch_model, model.name, images, targets, layer_names=model.cam_layers)
        frame = pd.DataFrame([dict(arch=model.name, rep=rep, image_id=i, patient_id=meta.loc[i, "patient_id"],
                                   true=meta.loc[i, "label"], predicted=predicted.loc[i],
                                   **region_shares(cam, masks[int(mask_pos[i])] > 0, to_input=to_frame))
                              for cam, i in zip(cams, ids)])
        panels += [dict(rep=rep, image_id=row.image_id, true=row.true, predicted=row.predicted,
                        image=images[k].numpy(), cam=cams[k], mask_energy=row.mask_energy, mask_area=row.mask_area)
                   for k, row in enumerate(frame.iloc[:len(fig_ids)].itertuples())]
        frame["randomisation_spearman"] = np.nan
        if rep == "data":
            chosen = np.flatnonzero(in_sample)
            try:
                frame.loc[chosen, "randomisation_spearman"] = randomisation_test(
                    model.torch_model, model.name, images[torch.as_tensor(chosen)], [targets[k] for k in chosen], seed=sample_seed,
                    layer_names=model.cam_layers)
                note = "randomisation test: every parameterised module re-initialised"
            except InputError as error:
                note = f"randomisation test not run: {error}"
                log.warning("%s: %s", model.name, note)
        frames.append(frame[in_sample])
        log.info("%s / %s: %d CAMs at %d px, %s", model.name, rep, len(ids), images.shape[-1], layer.describe())
    layer = CamLayer(layer.name.removeprefix("net."), layer.module, layer.grid) if layer else None
    return panels, pd.concat(frames, ignore_index=True), layer, picks, note


def _forward_only_figure(out_png, name: str, reason: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.01, 0.5, f"{name}: no Grad-CAM (forward-only audit)\n{reason}", wrap=True, fontsize=8, va="center")
    save_figure_atomic(fig, out_png)


def write_imported_gradcam(name: str, entry: dict, stores: dict, predictions_csv, mask_store: tuple, out: dict, *,
                           n_images: int, sample_seed: int = 0, device: str = "auto", threads: int = 1,
                           n_boot: int = 1000, boot_seed: int = 0, level: float = 0.95,
                           randomisation_max_correlation: float = RANDOMISATION_MAX_CORRELATION) -> dict:
    """The imported_gradcam job: `out` maps figure, attention, per_image, status to paths.
    Returns the status (also written as JSON: whether CAMs were drawn and why, the ONNX check)."""
    from ..audit.attention import ATTENTION_COLUMNS
    from ..devices import resolve_device, set_threads

    set_threads(threads)
    device = str(resolve_device(device, "classification.device"))
    model, status = torch_model_for_cams(name, entry, stores, device)
    status.update(model=name, format=entry["format"], path=str(entry["path"]))
    if model is None:
        log.warning("%s: %s", name, status["reason"])
        _forward_only_figure(out["figure"], name, status["reason"])
        write_csv_atomic(pd.DataFrame(columns=["arch", *ATTENTION_COLUMNS]), out["attention"])
        write_csv_atomic(pd.DataFrame(columns=["arch", "rep", "image_id"]), out["per_image"])
    else:
        predictions = read_table(predictions_csv)
        panels, per_image, layer, picks, note = explain_imported(model, stores, predictions, mask_store, n_images,
                                                                 sample_seed)
        size = model.pre["input_size"]
        figure3(panels, list(stores), out["figure"], name, layer.describe(), size, picks)
        table = attention_table(per_image, list(stores), name, layer, size, n_boot, boot_seed, level,
                                randomisation_max_correlation)
        write_csv_atomic(table, out["attention"])
        write_csv_atomic(per_image, out["per_image"])
        status.update(cam_layer=layer.name, cam_grid=f"{layer.grid[0]}x{layer.grid[1]}", input_size=size,
                      randomisation=note, figure_images=list(picks["image_id"]))
    write_text_atomic(out["status"], json.dumps(status, indent=2) + "\n")
    return status
