"""How unlike the training data an input looks: a colour-statistics distance, and the model's own doubt.

The training images' look is summarised by each image's channel means and standard deviations (values in
0..1, as the model sees them). Their mean and covariance are kept in run.json (`input_stats`). An input's
distance is the Mahalanobis distance of its tiles' statistics from that distribution, averaged over its
tiles; above `threshold` (the 99th percentile of the training images' own distances) predict warns that the
input is unlike anything the model was trained on. Beside it, the mean binary entropy of the predicted
water probability at the model's own pixels (0: sure everywhere, 1 bit: a coin toss everywhere) says how
unsure the model was.
"""

from __future__ import annotations

import math

import numpy as np
import torch

RIDGE = 1e-4  # added to the covariance's diagonal: a channel that never varies must not divide by zero
PERCENTILE = 99.0
CHUNK = 256  # images per pass: float64 copies of 256 chips of 128 px take 100 MB


def image_features(images: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, C) uint8 images (and optional (N, H, W) bool valid masks) -> (N, 2C): channel means, stds."""
    if valid is None:
        a = np.asarray(images)
        return np.concatenate([_plain_features(a[i:i + CHUNK]) for i in range(0, len(a), CHUNK)])
    x = np.asarray(images, np.float32) / 255.0
    w = np.asarray(valid, np.float32)[..., None]
    n = np.maximum(w.sum(axis=(1, 2)), 1.0)
    mean = (x * w).sum(axis=(1, 2)) / n
    var = ((x - mean[:, None, None]) ** 2 * w).sum(axis=(1, 2)) / n
    return np.concatenate([mean, np.sqrt(var)], axis=1)


def _plain_features(a: np.ndarray) -> np.ndarray:
    """image_features of images with no no-data: sums of values and of squares as matrix products (3x a reduction
    over strided channels), in float64 (exact: integers below 2**53)."""
    x = a.reshape(a.shape[0], -1, a.shape[-1]).astype(np.float64)
    mean = np.matmul(np.ones((x.shape[0], 1, x.shape[1])), x)[:, 0] / x.shape[1]
    squares = np.matmul(x.transpose(0, 2, 1), x).diagonal(axis1=1, axis2=2)
    var = squares / x.shape[1] - mean * mean
    return np.concatenate([mean, np.sqrt(np.maximum(var, 0))], axis=1) / 255.0


def fit_stats(features: np.ndarray) -> dict:
    """The training images' feature distribution and the warning threshold, as plain lists for run.json."""
    mean = features.mean(axis=0)
    cov = np.cov(features, rowvar=False) + RIDGE * np.eye(features.shape[1])
    inv = np.linalg.inv(cov)
    d = mahalanobis(features, mean, inv)
    return {"features": "per-image channel means and standard deviations (0..1)", "mean": mean.tolist(),
            "inverse_covariance": inv.tolist(), "threshold": float(np.percentile(d, PERCENTILE)),
            "threshold_is": f"the {PERCENTILE:g}th percentile of the {len(features)} training images' distances",
            "train_median": float(np.median(d))}


def mahalanobis(features: np.ndarray, mean: np.ndarray, inverse_covariance: np.ndarray) -> np.ndarray:
    diff = np.asarray(features, np.float64) - np.asarray(mean)
    return np.sqrt(np.einsum("ij,jk,ik->i", diff, np.asarray(inverse_covariance), diff).clip(min=0))


def distance(stats: dict, features: np.ndarray) -> np.ndarray:
    """Each row's distance from the training images (see fit_stats)."""
    return mahalanobis(features, np.array(stats["mean"]), np.array(stats["inverse_covariance"]))


def unlike_note(score: float, threshold: float) -> str | None:
    """The warning for an input whose distance is above the run's threshold (predict prints it, serve replies it)."""
    if not score > threshold:
        return None
    digits = next((d for d in (1, 2, 3) if f"{score:.{d}f}" != f"{threshold:.{d}f}"), 4)  # never "4.9 > 4.9"
    return (f"looks unlike the images the model was trained on (distance {score:.{digits}f} > {threshold:.{digits}f}, "
            "docs/scenes.md): check its result")


def binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Elementwise binary entropy in bits of a water probability (0: sure, 1: a coin toss)."""
    return (torch.special.entr(p) + torch.special.entr(1 - p)) / math.log(2)
