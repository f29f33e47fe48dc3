"""Segmentation metrics from one confusion matrix accumulated over every pixel (the seed's Keras MeanIoU)."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MultilabelConfusionMatrix

from .head import IGNORE


class ConfusionAccumulator:
    """Accumulates a K x K confusion matrix (rows: truth, columns: prediction) with torchmetrics; truth pixels
    labelled IGNORE are left out."""

    def __init__(self, num_classes: int = 2):
        self.num_classes = num_classes
        # local counts only: under torchrun rank 0 validates alone, and a sync would wait for the others
        self.metric = MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=IGNORE, sync_on_compute=False)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer class maps of the same shape."""
        self.metric.update(pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu())

    def matrix(self) -> np.ndarray:
        return self.metric.compute().numpy().astype(np.int64)

    def scores(self, class_names: list[str] | None = None) -> dict:
        return {**scores_from_confusion(self.matrix(), class_names), "confusion_matrix": self.matrix().tolist()}


class MultilabelAccumulator:
    """Multi-label class maps (bit k = class k): a 2 x 2 confusion matrix per class (absent, present), with
    torchmetrics; truth pixels labelled IGNORE are left out."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.metric = MultilabelConfusionMatrix(num_labels=num_classes, sync_on_compute=False)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        known = target.reshape(-1) != IGNORE
        bits = torch.arange(self.num_classes)
        p = (pred.reshape(-1)[known].long().cpu()[:, None] >> bits) & 1
        t = (target.reshape(-1)[known].long().cpu()[:, None] >> bits) & 1
        self.metric.update(p, t)

    def matrices(self) -> np.ndarray:
        """(K, 2, 2): rows truth (absent, present), columns prediction."""
        return self.metric.compute().numpy().astype(np.int64)

    def scores(self, class_names: list[str] | None = None) -> dict:
        """Per-class IoU and Dice of each class's presence, their means, and each class's pixel accuracy."""
        names = class_names or [f"class_{i}" for i in range(self.num_classes)]
        per = [scores_from_confusion(m, ["absent", n]) for m, n in zip(self.matrices(), names)]
        iou = [p["water_iou"] for p in per]
        return {"mean_iou": float(np.nanmean(iou)), "per_class_iou": dict(zip(names, iou)),
                "per_class_dice": {n: p["dice"] for n, p in zip(names, per)},
                "mean_dice": float(np.nanmean([p["dice"] for p in per])),
                "pixel_accuracy": float(np.mean([p["pixel_accuracy"] for p in per])),
                "pixels": per[0]["pixels"] if per else 0, "multilabel": True,
                "confusion_matrices": self.matrices().tolist()}


def accumulator(head) -> "ConfusionAccumulator | MultilabelAccumulator":
    """The right scorer for a head: one confusion matrix over exclusive classes, or one per class."""
    return MultilabelAccumulator(head.outputs) if head.multilabel else ConfusionAccumulator(head.num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.full_like(a, np.nan), where=b > 0)


def scores_from_confusion(cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Per-class IoU and their mean; for two classes also water IoU, Dice, precision, recall, accuracy."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    iou = _safe_div(tp, tp + fp + fn)
    k = cm.shape[0]
    names = class_names or (["background", "water"] if k == 2 else [f"class_{i}" for i in range(k)])
    dice = _safe_div(2 * tp, 2 * tp + fp + fn)
    out = {
        "mean_iou": float(np.nanmean(iou)) if not np.all(np.isnan(iou)) else float("nan"),
        "per_class_iou": {n: float(v) for n, v in zip(names, iou)},
        "per_class_dice": {n: float(v) for n, v in zip(names, dice)},
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "pixels": int(cm.sum()),
    }
    if k == 2:
        t, p, n = tp[1], fp[1], fn[1]
        out |= {
            "water_iou": float(iou[1]),
            "dice": float(_safe_div(2 * t, 2 * t + p + n)),
            "precision": float(_safe_div(t, t + p)),
            "recall": float(_safe_div(t, t + n)),
        }
    return out


def per_image_iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Water IoU of each image in (N, H, W) binary maps; 1.0 where both are empty."""
    pred, target = pred.astype(bool), target.astype(bool)
    inter = (pred & target).sum(axis=(1, 2))
    union = (pred | target).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def distribution(values: np.ndarray) -> dict:
    """Summary of a per-image metric: mean, quantiles and a 10-bin histogram over [0, 1]."""
    v = np.asarray(values, dtype=np.float64)
    hist, edges = np.histogram(v, bins=10, range=(0.0, 1.0))
    return {
        "n": int(v.size), "mean": float(v.mean()), "std": float(v.std()),
        "quantiles": {q: float(np.quantile(v, float(q))) for q in ("0.05", "0.25", "0.5", "0.75", "0.95")},
        "histogram": {"edges": [round(float(e), 2) for e in edges], "counts": hist.tolist()},
    }


def membrane_scores(pred_interior: np.ndarray, true_interior: np.ndarray) -> dict:
    """The ISBI 2012 figures of a membrane map, from boolean (H, W) cell-interior maps (membrane False).

    pixel_error: share of pixels labelled differently. rand_error: foreground-restricted adapted Rand error
    (1 - F-score of Rand precision and recall, scikit-image's adapted_rand_error) between the cells, i.e.
    the 4-connected regions of interior, scored on the true cells' pixels only (true membranes are left
    out, as the challenge did; predicted membrane pixels join their nearest predicted cell, scikit-image's
    expand_labels, in place of the challenge's thinning of predicted borders). vi_split / vi_merge:
    variation of information (bits) on the same regions: over-segmentation and merged cells."""
    from skimage.measure import label
    from skimage.metrics import adapted_rand_error, variation_of_information
    from skimage.segmentation import expand_labels

    pred_interior, true_interior = np.asarray(pred_interior, bool), np.asarray(true_interior, bool)
    if pred_interior.shape != true_interior.shape:
        raise ValueError(f"prediction {pred_interior.shape} and truth {true_interior.shape} differ in shape")
    truth = label(true_interior, connectivity=1)
    pred = label(pred_interior, connectivity=1)
    if pred.max():
        pred = expand_labels(pred, distance=sum(pred.shape))
    keep = truth > 0
    error, precision, recall = adapted_rand_error(truth[keep], pred[keep], ignore_labels=())
    split, merge = variation_of_information(truth[keep], pred[keep], ignore_labels=())
    return {"pixel_error": float(np.mean(pred_interior != true_interior)), "rand_error": float(error),
            "rand_precision": float(precision), "rand_recall": float(recall),
            "vi_split": float(split), "vi_merge": float(merge), "true_cells": int(truth.max()),
            "predicted_cells": int(pred.max())}
