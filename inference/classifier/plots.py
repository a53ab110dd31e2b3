"""PNG plots of a training run: loss and accuracy per epoch, and the validation confusion matrix.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: no display is needed, and no
global figure state is shared with anything else running in the process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_confusion_matrix", "plot_history"]


def plot_history(history: Mapping[str, Sequence[float]], path: Path, *, fine_tune_from: int | None) -> None:
    """Loss and accuracy per epoch (training and validation). ``fine_tune_from``: first epoch of phase 2."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            values = list(history.get(key, []))
            if values:
                axes.plot(range(1, len(values) + 1), values, marker="o", label=label)
        if fine_tune_from is not None:
            axes.axvline(fine_tune_from - 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        axes.set_title(metric)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend()
        if metric == "accuracy":
            axes.set_ylim(0.0, 1.02)
    figure.tight_layout()
    figure.savefig(path, format="png")


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = max(4.0, 1.0 + 0.8 * len(classes))
    figure = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    ticks = list(range(len(classes)))
    axes.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("validation confusion matrix")
    peak = max((max(row) for row in matrix), default=0)
    for row_index, row in enumerate(matrix):
        for column_index, value in enumerate(row):
            colour = "white" if peak and value > peak / 2 else "black"
            axes.text(column_index, row_index, str(value), ha="center", va="center", color=colour)
    figure.tight_layout()
    figure.savefig(path, format="png")
