"""Figure 3: which test image per class, and the grid of Grad-CAMs (rows = true class,
columns = representation, label = the prediction of the model trained on that representation,
with the panel's lung energy share beside its chance level, the lung area share). The title
names the CAM's target layer and native grid (``10×10 from layer2.3``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import save_figure_atomic
from ..vocabulary import CLASSES

FIGURE_ROWS = ("COVID-19", "pneumonia", "normal")  # the paper's row order


def pick_figure_images(own_predictions: dict[str, pd.DataFrame], reference: str = "data") -> pd.DataFrame:
    """One test image per true class: the first (sorted id) that every representation's model
    classifies correctly (the paper's choice), else the first the `reference` model gets right,
    else the first. `own_predictions`: rep -> that rep model's predictions on its own test set."""
    merged = None
    for rep, frame in own_predictions.items():
        part = frame[["image_id", "true", "predicted"]].rename(columns={"predicted": f"pred_{rep}"})
        merged = part if merged is None else merged.merge(part, on=["image_id", "true"])
    merged = merged.sort_values("image_id", kind="stable")
    pred_cols = [c for c in merged.columns if c.startswith("pred_")]
    rows = []
    for cls in CLASSES:
        sub = merged[merged["true"] == cls]
        if sub.empty:
            continue
        agree = sub[np.logical_and.reduce([sub[c] == cls for c in pred_cols])]
        ref_right = sub[sub[f"pred_{reference}"] == cls] if f"pred_{reference}" in sub else sub.iloc[:0]
        if len(agree):
            pick, rule = agree.iloc[0], "all models correct"
        elif len(ref_right):
            pick, rule = ref_right.iloc[0], f"{reference} model correct"
        else:
            pick, rule = sub.iloc[0], "first image (no model correct)"
        rows.append(dict(true=cls, image_id=pick["image_id"], rule=rule,
                         **{c[5:]: pick[c] for c in pred_cols}))
    return pd.DataFrame(rows)


def figure3(panels: list, reps, out_png, arch: str, cam_text: str, input_size: int, picks: pd.DataFrame,
            dpi: int = 130):
    """Rows = true class, columns = representation; CAM of the predicted class over the input.
    `cam_text`: the CAM's native grid and layer (:meth:`hideseek.audit.cam.CamLayer.describe`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in FIGURE_ROWS if c in set(p["true"] for p in panels)]
    fig, axes = plt.subplots(len(classes), len(reps), figsize=(max(2.1 * len(reps), 4.2), 2.4 * len(classes) + 0.9),
                             squeeze=False)
    lookup = {(p["true"], p["rep"]): p for p in panels}
    for r, cls in enumerate(classes):
        for c, rep in enumerate(reps):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            panel = lookup.get((cls, rep))
            if panel is None:
                continue
            ax.imshow(panel["image"], cmap="gray", vmin=0, vmax=255)
            ax.imshow(panel["cam"], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ok = panel["predicted"] == cls
            shares = (f"lung energy {panel['mask_energy']:.2f} (chance {panel['mask_area']:.2f})"
                      if np.isfinite(panel["mask_energy"]) else "blank CAM: no energy")
            ax.set_xlabel(f"pred: {panel['predicted']}\n{shares}", color="black" if ok else "red", fontsize=8)
            if r == 0:
                ax.set_title(rep, fontsize=9)
            if c == 0:
                rule = picks.set_index("true").loc[cls, "rule"] if cls in set(picks["true"]) else ""
                ax.set_ylabel(f"{cls}\n{panel['image_id']}\n({rule})", fontsize=8)
    fig.suptitle(f"Figure 3 — {arch}\nGrad-CAM of the predicted class\nnative grid {cam_text}, upsampled to "
                 f"{input_size} px\nlung energy share (chance: lung area share)", fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, out_png, dpi=dpi)
