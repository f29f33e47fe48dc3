"""Figures: training curves and test image | true mask | predicted mask grids (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """Write a figure atomically (format from the suffix) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def mask_style(num_classes: int) -> dict:
    """imshow arguments for a class map: black/white for water masks, tab10 colours for several classes."""
    if num_classes == 2:
        return {"cmap": "gray", "vmin": 0, "vmax": 1, "interpolation": "nearest"}
    return {"cmap": "tab10", "vmin": 0, "vmax": 9, "interpolation": "nearest"}


def bare(ax) -> None:
    """A picture panel: no ticks or labels, a thin grey frame (an all-water mask, white, stays visible on the
    white page; without the frame it looked like an empty gap in the figure)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("0.6")
        spine.set_linewidth(0.6)


def plot_curves(history: list[dict], path: Path) -> None:
    """Loss (train, validation) and validation mean IoU per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    a.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="Loss")
    a.legend()
    b.plot(epochs, [r["val_miou"] for r in history], "o-", color="tab:green")
    b.set(xlabel="epoch", ylabel="mean IoU", title="Validation mean IoU")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_figure(fig, path)


def plot_predictions(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, names: list[str],
                     notes: list[str], path: Path, num_classes: int = 2) -> None:
    """One row per chip: the image (first three channels), its true mask, the predicted mask."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    style = mask_style(num_classes)
    for i, row in enumerate(axes):
        img = images[i][..., :3] if images[i].shape[-1] >= 3 else images[i][..., 0]
        row[0].imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, interpolation="nearest")
        row[1].imshow(truth[i], **style)
        row[2].imshow(pred[i], **style)
        for ax, title in zip(row, (names[i], "true mask", f"predicted {notes[i]}")):
            ax.set_title(title, fontsize=9)
            bare(ax)
    fig.tight_layout()
    save_figure(fig, path)


def plot_slice(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, class_names: list[str], title: str,
               path: Path, multilabel: bool = False, crop: int = 384) -> None:
    """A slice's centre crop (image | truth | prediction): one row per class for multi-label maps (bit k =
    class k), one row of class maps otherwise."""
    h, w = truth.shape
    ys, xs = slice(max(0, (h - crop) // 2), (h + crop) // 2), slice(max(0, (w - crop) // 2), (w + crop) // 2)
    img = image[ys, xs, 0] if image.shape[-1] == 1 else image[ys, xs, :3]
    rows = [(n, (truth[ys, xs] >> k) & 1, (pred[ys, xs] >> k) & 1) for k, n in enumerate(class_names)] \
        if multilabel else [(" / ".join(class_names), truth[ys, xs], pred[ys, xs])]
    style = mask_style(2 if multilabel else len(class_names))
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows) + 0.4), squeeze=False)
    for (name, t, p), row in zip(rows, axes):
        row[0].imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        row[1].imshow(np.where(t == 255, 0, t), **style)
        row[2].imshow(p, **style)
        for ax, what in zip(row, ("slice", f"true {name}", f"predicted {name}")):
            ax.set_title(what, fontsize=9)
            bare(ax)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_histogram(values: np.ndarray, path: Path, xlabel: str = "per-image water IoU") -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=20, range=(0, 1), color="tab:blue", edgecolor="white")
    ax.set(xlabel=xlabel, ylabel="test images", title=f"{xlabel} (median {np.median(values):.2f})")
    save_figure(fig, path)


def plot_confusion(cm: np.ndarray, names: list[str], path: Path) -> None:
    """Confusion matrix, each row (true class) normalised to 1, with the pixel counts."""
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]:,}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title="Test confusion matrix (pixels)")
    save_figure(fig, path)


ERROR_COLOURS = {"tn": (25, 25, 25), "tp": (40, 120, 255), "fp": (230, 40, 40), "fn": (255, 170, 0),
                 "unscored": (128, 128, 128)}


def error_map(pred: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: water found (blue), land (near black), false water (red), missed water (orange),
    not scored (grey)."""
    out = np.empty(pred.shape + (3,), np.uint8)
    for key, where in (("tn", ~pred & ~truth), ("tp", pred & truth), ("fp", pred & ~truth), ("fn", ~pred & truth),
                       ("unscored", ~scored)):
        out[where] = ERROR_COLOURS[key]
    return out


def plot_scene(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, scored: np.ndarray, title: str,
               path: Path, max_side: int = 700) -> None:
    """Image | truth | prediction | errors (water found blue, false water red, missed water orange), shrunk to max_side."""
    step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
    image, truth, pred, scored = image[::step, ::step], truth[::step, ::step], pred[::step, ::step], scored[::step,
                                                                                                         ::step]
    grey = np.where(scored, 0, 0.5)
    panels = [(image[..., :3] if image.shape[-1] >= 3 else image[..., 0], "image"),
              (np.where(truth, 1.0, grey), "true water (grey: not scored)"),
              (np.where(pred, 1.0, grey), "predicted water"),
              (error_map(pred, truth, scored), "errors: blue found, red false, orange missed")]
    h, w = image.shape[:2]
    fig, axes = plt.subplots(1, 4, figsize=(4 * 3.2, 3.2 * h / w + 0.6))
    for ax, (data, name) in zip(axes, panels):
        ax.imshow(data, cmap="gray" if data.ndim == 2 else None, vmin=0, vmax=1 if data.dtype != np.uint8 else 255,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
        bare(ax)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
