"""Tiled, streamed inference: any image size in, blended probabilities out a band of rows at a time.

One path: windows of `tile / scale` native pixels (overlapping by `overlap / scale`) are read from the
source, resized (nearest, as the training chips were) to the model's scale, batched through the model,
and the probabilities are resized back (bilinear) and blended with normalised taper weights. Finished
rows go to the sink as soon as no later tile touches them. Memory is one row of tiles, whatever the
image's size.

Everything runs on the calling thread. On 2 cores, reading ahead and writing behind in background
threads or a process was no faster: the model's two OpenMP threads lose a core to any concurrent work
and wait at every barrier (bench/predict_scene.py; docs/predict.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.files import resize_to
from ..inference import predict_probs, to_input
from ..ood import image_features
from ..runtime import Runtime
from ..data.sources import Source
from .tiling import Axis, RowBlender, axis_windows, fill_from_nearest
from ..progress import bar as progress_bar

# on_rows(first row, (C, n, W) float32 probabilities, (n, W) bool valid)
RowSink = Callable[[int, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class Grid:
    """Native-pixel windows along each axis and the model-pixel size every window is resized to."""

    rows: Axis
    cols: Axis
    model_shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)


def make_grid(height: int, width: int, scale: tuple[float, float], tile: int, overlap: int, blend: str) -> Grid:
    """Windows of round(tile / scale) native px sharing round(overlap / scale) px, per axis."""
    axes, model = [], []
    for length, s in ((height, scale[0]), (width, scale[1])):
        ntile = max(1, round(tile / s))
        noverlap = min(round(overlap / s), ntile - 1)
        axis = axis_windows(length, ntile, noverlap, blend)
        axes.append(axis)
        model.append(max(1, round(axis.size * s)))
    return Grid(axes[0], axes[1], (model[0], model[1]))


@dataclass
class Stats:
    tiles: int = 0
    model_tiles: int = 0  # tiles with at least one valid pixel (the others skip the model)
    seconds: float = 0.0
    model_seconds: float = 0.0
    features: list = field(default_factory=list)  # each model tile's colour statistics (ood.image_features)


def _read_tiles(source: Source, grid: Grid, origin: tuple[int, int] = (0, 0)
                ) -> Iterator[tuple[int, int, int, np.ndarray | None, np.ndarray, np.ndarray | None]]:
    """(row index, x0, column index, model-size uint8 pixels or None when all no-data, native valid mask,
    model-size valid mask or None when all valid); the windows are relative to `origin` (row, column)."""
    mh, mw = grid.model_shape
    for r, y0 in enumerate(grid.rows.starts):
        for c, x0 in enumerate(grid.cols.starts):
            raw, valid = source.read(origin[0] + y0, origin[1] + x0, grid.rows.size, grid.cols.size)
            if not valid.any():
                yield r, x0, c, None, valid, None
                continue
            pixels = source.to_uint8(resize_to(raw, mh, mw))  # resize first: scaling touches fewer pixels
            model_valid = None
            if not valid.all():
                model_valid = resize_to(valid, mh, mw)
                pixels = fill_from_nearest(pixels, model_valid)
            yield r, x0, c, pixels, valid, model_valid


class Segmenter:
    """A trained model and the tiling settings; `run` streams one source through it."""

    def __init__(self, model: nn.Module, rt: Runtime, num_classes: int, tile: int = 256, overlap: int = 32,
                 batch_size: int = 8, blend: str = "cosine", tta: str = "none"):
        self.model, self.rt = model.eval(), rt
        self.channels = num_classes  # probability planes: the model's outputs (1 for a water model)
        self.tile, self.overlap, self.batch_size, self.blend, self.tta = tile, overlap, batch_size, blend, tta

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray, native: tuple[int, int]) -> torch.Tensor:
        """(B, h, w, C) uint8 model-size tiles -> (B, planes, H, W) float32 probabilities at the native size."""
        probs = predict_probs(self.model, to_input(pixels, self.rt.device), self.rt, self.tta)
        if probs.shape[-2:] != native:
            probs = F.interpolate(probs, size=native, mode="bilinear", align_corners=False)
        return probs.float().cpu()

    def run(self, source: Source, scale: tuple[float, float], sink: RowSink, progress: bool = True) -> Stats:
        """Every row of the source goes to the sink, top to bottom. The tiles cover the window of valid pixels
        only (rows and columns outside it are no-data and handed over as such)."""
        t0 = time.perf_counter()
        window = source.valid_window()
        if window is None:
            self._empty(sink, 0, source.height, source.width)
            return Stats(seconds=time.perf_counter() - t0)
        wy, wx, wh, ww = window
        grid = make_grid(wh, ww, scale, self.tile, self.overlap, self.blend)
        blender = RowBlender(grid.rows, ww, self.channels)
        stats = Stats(tiles=len(grid))
        native = (grid.rows.size, grid.cols.size)
        batch: list = []
        self._empty(sink, 0, wy, source.width)

        def flush():
            tm = time.perf_counter()
            probs = self.forward(np.stack([b[3] for b in batch]), native)
            stats.model_seconds += time.perf_counter() - tm
            stats.model_tiles += len(batch)
            # weight the probabilities in one batched (multi-threaded) torch op
            wy = torch.from_numpy(np.stack([grid.rows.weights[b[0]] for b in batch]))
            wx = torch.from_numpy(np.stack([grid.cols.weights[b[2]] for b in batch]))
            planes = (probs * (wy[:, None, :, None] * wx[:, None, None, :])).numpy()
            for (r, x0, _, _, valid, _), p in zip(batch, planes):
                while blender.row < r:  # every tile of the rows above is in: hand them over
                    emit()
                blender.add_weighted(p, x0, valid)
            batch.clear()

        def emit():
            y0, probs, valid = blender.finish_row()
            if ww < source.width:  # back to the source's full width
                pad = ((0, 0), (wx, source.width - wx - ww))
                probs, valid = np.pad(probs, ((0, 0),) + pad), np.pad(valid, pad)
            sink(wy + y0, probs, valid)

        with progress_bar(total=len(grid), enabled=progress, desc=source.path.name, unit="tile", leave=False) as bar:
            for item in _read_tiles(source, grid, (wy, wx)):
                if item[3] is not None:  # tiles that are all no-data add nothing
                    stats.features.append(image_features(item[3][None], None if item[5] is None else
                                                         item[5][None])[0])
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        flush()
                bar.update(1)
            if batch:
                flush()
            while blender.row < len(grid.rows.starts):
                emit()
        self._empty(sink, wy + wh, source.height, source.width)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _empty(self, sink: RowSink, y0: int, y1: int, width: int, rows: int = 256) -> None:
        """Rows y0..y1 as no-data, in bands of `rows`."""
        for y in range(y0, y1, rows):
            n = min(rows, y1 - y)
            sink(y, np.zeros((self.channels, n, width), np.float32), np.zeros((n, width), bool))
