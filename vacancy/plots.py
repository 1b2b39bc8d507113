"""The run's plots as PNG files in the run directory, drawn from metrics.json's contents.

matplotlib's object API with the Agg canvas: no pyplot state, no display needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .metrics import shown_labels

PLOTS = {"loss": "loss.png", "per_label_f1": "per_label_f1.png",
         "per_label_precision_recall": "per_label_precision_recall.png"}


def write_plots(run_dir: Path, metrics: dict) -> dict[str, Path]:
    """Draw every plot; returns {name: path}."""
    paths = {name: Path(run_dir) / file for name, file in PLOTS.items()}
    plot_loss(metrics["epochs"], metrics["best_epoch"]).savefig(paths["loss"], dpi=100)
    # worst F1 first; with many labels the worst and best SHOWN_LABELS only (a bar a label)
    labels = shown_labels(metrics["per_label"])
    per_label = {name: metrics["per_label"][name] for name in labels}
    of = len(metrics["per_label"])
    plot_per_label_f1(per_label, of).savefig(paths["per_label_f1"], dpi=100)
    plot_precision_recall(per_label, of).savefig(paths["per_label_precision_recall"], dpi=100)
    return paths


def plot_loss(epochs: list[dict], best_epoch: int) -> Figure:
    fig = Figure(figsize=(6.4, 4), layout="constrained")
    ax = fig.add_subplot()
    x = [e["epoch"] for e in epochs]
    ax.plot(x, [e["train_loss"] for e in epochs], "o-", label="train")
    ax.plot(x, [e["val_loss"] for e in epochs], "s-", label="val")
    frozen = [e["epoch"] for e in epochs if e["phase"] == "frozen"]
    if frozen:
        ax.axvspan(min(frozen) - 0.5, max(frozen) + 0.5, color="0.9", label="encoder frozen")
    if frozen and len(frozen) < len(epochs):
        ax.axvline(max(frozen) + 0.5, color="k", linestyle="--", label="encoder unfrozen")
    best = [e["val_loss"] for e in epochs if e["epoch"] == best_epoch]
    if best:
        ax.plot([best_epoch], best, "*", color="C3", markersize=14, label="best (saved)")
    ax.set(xlabel="epoch", ylabel="BCE loss (mean over labels)", xticks=x,
           title="Train and validation loss per epoch")
    ax.legend()
    return fig


def _label_axes(n_labels: int, title: str, of: int | None = None) -> tuple[Figure, object]:
    """Axes with a row per label; `of`: how many labels there are when only some are drawn."""
    if of is not None and of > n_labels:
        title += f"\n{n_labels // 2} worst and {n_labels - n_labels // 2} best of {of} labels by F1"
    fig = Figure(figsize=(7, 1.5 + 0.28 * n_labels), layout="constrained")
    ax = fig.add_subplot()
    ax.set(xlim=(0, 1), ylim=(-0.6, n_labels - 0.4), title=title)
    return fig, ax


def plot_per_label_f1(per_label: dict[str, dict], of: int | None = None) -> Figure:
    fig, ax = _label_axes(len(per_label), "Test F1 per label (at its threshold), with support", of)
    y = np.arange(len(per_label))
    f1 = [row["f1"] for row in per_label.values()]
    ax.barh(y, f1, color="C0")
    for i, row in enumerate(per_label.values()):
        # inside the end of a long bar, after a short one: never over the frame
        inside = row["f1"] > 0.7
        ax.text(row["f1"] + (-0.01 if inside else 0.01), i, f"{row['f1']:.2f}  n={row['support']}",
                va="center", ha="right" if inside else "left", fontsize=8,
                color="white" if inside else "black")
    ax.set(yticks=y, yticklabels=list(per_label), xlabel="F1")
    return fig


def plot_precision_recall(per_label: dict[str, dict], of: int | None = None) -> Figure:
    fig, ax = _label_axes(len(per_label), "Test precision and recall per label at its threshold",
                          of)
    y = np.arange(len(per_label))
    ax.barh(y + 0.2, [row["precision"] for row in per_label.values()], height=0.4,
            label="precision", color="C2")
    ax.barh(y - 0.2, [row["recall"] for row in per_label.values()], height=0.4,
            label="recall", color="C1")
    ax.set(yticks=y, xlabel="precision / recall",
           yticklabels=[f"{name} (t={row['threshold']:.2f})" for name, row in per_label.items()])
    fig.legend(loc="outside lower center", ncols=2)  # below the axes: never over a bar
    return fig
