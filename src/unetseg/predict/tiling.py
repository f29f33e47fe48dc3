"""Pure tiling math for large images: overlapping windows, taper weights, normalised blending."""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of `tile` px with at least `overlap` px shared, covering [0, length) exactly.

    The last window is aligned to the end; an image shorter than the tile gets one (clipped) window.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile (got tile {tile}, overlap {overlap})")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (y0, x0, y1, x1), row by row, covering every pixel of a height x width image."""
    return [(y, x, min(y + tile, height), min(x + tile, width))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def window_weights(height: int, width: int, overlap: int, kind: str = "cosine", floor: float = 1e-3) -> np.ndarray:
    """(height, width) blending weights: 1 inside, tapering over `overlap` px at each edge (never below `floor`).

    kind: 'cosine' (raised-cosine taper), 'linear', or 'none' (all ones: plain averaging, seams show).
    """
    def ramp(n: int) -> np.ndarray:
        w = np.ones(n, np.float32)
        k = min(overlap, n // 2)
        if k and kind != "none":
            t = (np.arange(k, dtype=np.float32) + 0.5) / k
            edge = 0.5 - 0.5 * np.cos(np.pi * t) if kind == "cosine" else t
            w[:k] = edge
            w[n - k:] = edge[::-1]
        elif kind not in ("cosine", "linear", "none"):
            raise ValueError(f"unknown blending window {kind!r} (cosine, linear, none)")
        return np.maximum(w, floor)

    if kind not in ("cosine", "linear", "none"):
        raise ValueError(f"unknown blending window {kind!r} (cosine, linear, none)")
    return np.outer(ramp(height), ramp(width))


class Blender:
    """Accumulates weighted tile predictions ((C, h, w) or (h, w)) and returns their normalised blend."""

    def __init__(self, height: int, width: int, channels: int = 1):
        self.sum = np.zeros((channels, height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)

    def add(self, pred: np.ndarray, window: tuple[int, int, int, int], weights: np.ndarray) -> None:
        y0, x0, y1, x1 = window
        pred = pred[None] if pred.ndim == 2 else pred
        w = weights[: y1 - y0, : x1 - x0]
        self.sum[:, y0:y1, x0:x1] += pred[:, : y1 - y0, : x1 - x0] * w
        self.weight[y0:y1, x0:x1] += w

    def result(self) -> np.ndarray:
        if (self.weight <= 0).any():
            y, x = map(int, np.argwhere(self.weight <= 0)[0])
            raise ValueError(f"pixel (x={x}, y={y}) was covered by no tile")
        return self.sum / self.weight
