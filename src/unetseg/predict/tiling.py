"""Pure tiling math for large images: overlapping windows, normalised taper weights, row-streamed blending.

The weights are separable (a 1-D taper per axis) and every row of tiles has the same height, so the sum
of the weights at a pixel is the product of two 1-D sums. Each tile's weights are divided by that sum
up front; the blend is then a plain running sum that never needs a full-size weight image, and a band
of rows is final as soon as the last row of tiles touching it has been added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLENDS = ("cosine", "linear", "average", "none")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of `tile` px with at least `overlap` px shared, covering [0, length) exactly.

    The last window is aligned to the end; a line shorter than the tile gets one (clipped) window.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile (got tile {tile}, overlap {overlap})")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def taper(n: int, overlap: int, kind: str = "cosine", floor: float = 1e-3) -> np.ndarray:
    """1-D weights of one window of n px: 1 inside, rising over `overlap` px at each end (never below `floor`).

    cosine: raised-cosine ramps; linear: straight ramps; average: all ones (plain mean of the overlaps).
    """
    if kind not in BLENDS:
        raise ValueError(f"unknown blending window {kind!r} ({', '.join(BLENDS)})")
    w = np.ones(n, np.float32)
    k = min(overlap, n // 2)
    if k and kind in ("cosine", "linear"):
        t = (np.arange(k, dtype=np.float32) + 0.5) / k
        edge = 0.5 - 0.5 * np.cos(np.pi * t) if kind == "cosine" else t
        w[:k] = edge
        w[n - k:] = edge[::-1]
    return np.maximum(w, floor)


@dataclass(frozen=True)
class Axis:
    """The windows along one axis: start offsets, their common size, and each window's normalised weights."""

    starts: list[int]
    size: int
    weights: list[np.ndarray]

    @property
    def length(self) -> int:
        return self.starts[-1] + self.size


def axis_windows(length: int, tile: int, overlap: int, kind: str = "cosine") -> Axis:
    """Windows covering [0, length), with weights that sum to exactly one at every position.

    kind 'none' switches blending off: each position takes the window whose centre is nearest (a hard cut).
    """
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    if len(starts) == 1:  # one window: its weights are x / x, exactly 1 (the common case of a folder of images)
        return Axis(starts, size, [np.ones(size, np.float32)])
    pos = np.arange(length)
    if kind == "none":
        centres = np.array(starts) + (size - 1) / 2
        owner = np.argmin(np.abs(pos[:, None] - centres[None, :]), axis=1)
        return Axis(starts, size, [(owner[s:s + size] == i).astype(np.float32) for i, s in enumerate(starts)])
    ramp = taper(size, overlap, kind)
    total = np.zeros(length, np.float64)
    for s in starts:
        total[s:s + size] += ramp
    return Axis(starts, size, [(ramp / total[s:s + size]).astype(np.float32) for s in starts])


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (y0, x0, y1, x1), row by row, covering every pixel of a height x width image."""
    return [(y, x, min(y + tile, height), min(x + tile, width))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


class RowBlender:
    """Sums normalised tile predictions one row of tiles at a time; `finish_row` returns the rows that are final.

    Alongside, a boolean plane records which pixels some tile marked valid (validity is a property of the
    pixel, so it needs no blending). Memory is two rows of tiles (the current one and the next one's
    buffer), whatever the image height.
    """

    def __init__(self, rows: Axis, width: int, channels: int = 1):
        self.rows, self.width = rows, width
        self.buf = np.zeros((channels, rows.size, width), np.float32)
        self.valid = np.zeros((rows.size, width), bool)
        self.spare, self.spare_valid = np.zeros_like(self.buf), np.zeros_like(self.valid)  # swapped every row
        self.row = 0

    def add(self, pred: np.ndarray, x0: int, wy: np.ndarray, wx: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a (C, h, w) or (h, w) prediction of the current row of tiles whose window starts at column x0.

        `pred` is scaled in place by the weights.
        """
        pred = pred[None] if pred.ndim == 2 else pred
        h, w = pred.shape[1:]
        np.multiply(pred, wy[:h, None] * wx[None, :w], out=pred)
        self.add_weighted(pred, x0, valid)

    def add_weighted(self, pred: np.ndarray, x0: int, valid: np.ndarray | None = None) -> None:
        """Add a (C, h, w) prediction already multiplied by its normalised weights, and its (h, w) valid mask
        (None: all valid)."""
        h, w = pred.shape[1:]
        self.buf[:, :h, x0:x0 + w] += pred
        if valid is None:
            self.valid[:h, x0:x0 + w] = True
        else:
            self.valid[:h, x0:x0 + w] |= valid

    def finish_row(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(first row, (C, n, width) blended values, (n, width) valid) for the rows no later tile touches;
        moves to the next row. The arrays are views that stay valid until the next call."""
        starts, r = self.rows.starts, self.row
        y0 = starts[r]
        y1 = starts[r + 1] if r + 1 < len(starts) else self.rows.length
        n, keep = y1 - y0, self.rows.size - (y1 - y0)
        old, old_valid = self.buf, self.valid
        self.buf, self.valid = self.spare, self.spare_valid
        self.buf[:, :keep], self.valid[:keep] = old[:, n:], old_valid[n:]
        self.buf[:, keep:], self.valid[keep:] = 0, False
        self.spare, self.spare_valid = old, old_valid
        self.row += 1
        return y0, old[:, :n], old_valid[:n]


def fill_from_nearest(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w, C) pixels with every invalid pixel replaced by its nearest valid one (all invalid: unchanged).

    No-data fed to the model as black would be read as dark water or shadow and change the prediction of
    the valid pixels next to it; the nearest valid colour continues the scene instead.
    """
    if valid.all() or not valid.any():
        return pixels
    from scipy.ndimage import distance_transform_edt

    rows, cols = distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return pixels[rows, cols]
