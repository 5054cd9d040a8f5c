"""Learning curves: did each model learn? One figure per architecture, one panel per
representation, training and validation accuracy per epoch (every seed), the selected epoch
marked, against the chance level of a balanced accuracy (1 / number of classes).

Training accuracy is measured on the sampled, augmented batches as the model saw them during
the epoch (class-balanced samplers make its chance level 1 / number of classes too); validation
accuracy is the balanced accuracy the epoch is selected on.
"""

from __future__ import annotations

import pandas as pd

from ..io import read_table, save_figure_atomic
from ..vocabulary import CLASSES


def read_histories(files: dict[tuple[str, int], str]) -> pd.DataFrame:
    """history.csv of each (representation, seed), stacked with those two columns."""
    frames = [read_table(path).assign(representation=rep, seed=seed) for (rep, seed), path in files.items()]
    return pd.concat(frames, ignore_index=True)


def plot_learning_curves(histories: pd.DataFrame, reps, arch: str, out_png, dpi: int = 120) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    chance = 1.0 / len(CLASSES)
    fig, axes = plt.subplots(1, len(reps), figsize=(2.6 * len(reps) + 0.6, 2.8), squeeze=False, sharey=True)
    for ax, rep in zip(axes[0], reps):
        for seed, run in histories[histories["representation"] == rep].groupby("seed"):
            run = run.sort_values("epoch")
            if "train_accuracy" in run:  # histories written before this column existed lack it
                ax.plot(run["epoch"], run["train_accuracy"], color="tab:blue", lw=1.2,
                        label="train accuracy" if seed == histories["seed"].min() else None)
            ax.plot(run["epoch"], run["val_balanced_accuracy"], color="tab:orange", lw=1.2,
                    label="val balanced accuracy" if seed == histories["seed"].min() else None)
            chosen = run[run["selected"].astype(bool)]
            ax.plot(chosen["epoch"], chosen["val_balanced_accuracy"], "o", color="tab:orange", ms=5)
        ax.axhline(chance, color="grey", ls="--", lw=1)
        ax.set_title(rep, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("accuracy", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Learning curves — {arch} (dot: selected epoch; dashed: chance {chance:.2f})", fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, out_png, dpi=dpi)


def write_learning_curves(arch: str, files: dict[tuple[str, int], str], reps, out_png) -> pd.DataFrame:
    """The learning_curves job: the figure of `arch` from its runs' history.csv files."""
    histories = read_histories(files)
    plot_learning_curves(histories, reps, arch, out_png)
    return histories
