"""Contact sheet of phantom radiographs: class (rows) x acquisition site (columns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2

from ...io import save_figure_atomic
from ...vocabulary import CLASSES
from .config import SOURCES


@dataclass
class _Samples:
    """The first images of each (label, source) cell of a split file, and how many of its
    images sit at their class's home site."""

    cells: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    n_images: int = 0
    n_home: int = 0


def _read_samples(split_file: Path, per_cell: int) -> _Samples:
    samples = _Samples()
    for line in split_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        label = parts[2]
        source = parts[3] if len(parts) > 3 else "?"
        if label in CLASSES and source in SOURCES:
            samples.n_images += 1
            samples.n_home += CLASSES.index(label) == SOURCES.index(source)
        names = samples.cells.setdefault((label, source), [])
        if len(names) < per_cell:
            names.append(parts[1])
    return samples


def _draw_cell(ax, image_dir: Path, name: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if name is None:
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=9, color="0.4",
                transform=ax.transAxes)
        return
    image = cv2.imread(str(image_dir / name), cv2.IMREAD_GRAYSCALE)
    if image is not None:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_xlabel(name, fontsize=6)


def make_contact_sheet(covidx_dir: str | Path, out_png: str | Path, per_cell: int = 2) -> None:
    """Grid class (rows) x source (columns) of sample images from covidx_dir/train.txt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    covidx_dir = Path(covidx_dir)
    per_cell = max(1, int(per_cell))
    samples = _read_samples(covidx_dir / "train.txt", per_cell)
    n_rows, n_cols = len(CLASSES), len(SOURCES) * per_cell
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.6 * n_rows), squeeze=False)
    for ri, label in enumerate(CLASSES):
        for si, source in enumerate(SOURCES):
            names = samples.cells.get((label, source), [])
            for j in range(per_cell):
                ax = axes[ri][si * per_cell + j]
                _draw_cell(ax, covidx_dir / "images", names[j] if j < len(names) else None)
                if ri == 0 and j == 0:
                    ax.set_title(source, fontsize=10, loc="left")
                if si == 0 and j == 0:
                    ax.set_ylabel(label, fontsize=10)
    title = "Phantom radiographs: class (rows) x acquisition site (columns)"
    if samples.n_images:
        title += f"; train images at their class's home site: {samples.n_home / samples.n_images:.0%}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure_atomic(fig, out_png, dpi=100)
