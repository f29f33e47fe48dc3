"""The U-Net paper's border weight map and the overlapping grid that cuts large slices into training chips.

Ronneberger et al. (2015), eq. 2: w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), with d1 and d2 the
distances to the nearest and second-nearest object (for membranes: cell). Here w_c = 1 (no class balancing: the
loss may add soft Dice for that), so thin gaps between touching objects weigh up to 1 + w0, as in the paper
(w0 = 10, sigma = 5 px).
"""

from __future__ import annotations

import numpy as np


def border_weights(objects: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """(H, W) float32 weights from a boolean (H, W) map of object pixels (objects: its 4-connected regions).

    Each object's distance transform is taken in its bounding box grown by 4 sigma only: beyond that
    exp(-(d1 + d2)^2 / 2 sigma^2) < exp(-8) = 3.4e-4, so the map equals the full computation to w0 times that."""
    from scipy import ndimage

    labels, n = ndimage.label(np.asarray(objects, bool))
    h, w = labels.shape
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = np.full((h, w), np.inf, np.float32)
    pad = int(np.ceil(4 * sigma))
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        ys = slice(max(box[0].start - pad, 0), min(box[0].stop + pad, h))
        xs = slice(max(box[1].start - pad, 0), min(box[1].stop + pad, w))
        dist = ndimage.distance_transform_edt(labels[ys, xs] != i).astype(np.float32)
        a, b = d1[ys, xs], d2[ys, xs]
        b[...] = np.minimum(b, np.maximum(a, dist))
        a[...] = np.minimum(a, dist)
    if n < 2:
        return np.ones((h, w), np.float32)
    return (1.0 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma * sigma))).astype(np.float32)


def grid_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of windows of `size` every `stride` covering 0..length, the last one flush with the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    return starts if starts[-1] == length - size else starts + [length - size]


def grid_cut(a: np.ndarray, size: int, stride: int, fill: float = 0) -> list[np.ndarray]:
    """(H, W, ...) -> windows of size x size on the grid_starts of both axes, row by row (padded with `fill`
    to size when a side is shorter)."""
    h, w = a.shape[:2]
    if h < size or w < size:
        pad = [(0, max(size - h, 0)), (0, max(size - w, 0))] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, constant_values=fill)
        h, w = a.shape[:2]
    return [np.ascontiguousarray(a[y:y + size, x:x + size])
            for y in grid_starts(h, size, stride) for x in grid_starts(w, size, stride)]
