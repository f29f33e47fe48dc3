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
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.files import resize_to
from ..head import Head
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


@dataclass
class Job:
    """One source to segment: its scale (model pixels per input pixel), where its rows go, and what to call
    with its Stats once the last row has gone."""

    source: Source
    scale: tuple[float, float]
    sink: RowSink
    done: Callable[[Stats], None]


@dataclass
class _Active:
    """A job being segmented: its grid (None: no valid rows), blender, stats and tiles still in a batch."""

    job: Job
    grid: Grid | None
    blender: RowBlender | None
    stats: Stats
    wy: int
    wx: int
    wh: int
    ww: int
    t0: float
    pending: int = 0
    read: bool = False

    def emit(self) -> None:
        """Hand the blender's finished rows to the sink, padded back to the source's full width."""
        y0, probs, valid = self.blender.finish_row()
        width = self.job.source.width
        if self.ww < width:
            pad = ((0, 0), (self.wx, width - self.wx - self.ww))
            probs, valid = np.pad(probs, ((0, 0),) + pad), np.pad(valid, pad)
        self.job.sink(self.wy + y0, probs, valid)


class Segmenter:
    """A trained model and the tiling settings; `run` streams one source through it."""

    def __init__(self, model: nn.Module, rt: Runtime, num_classes: int, tile: int = 256, overlap: int = 32,
                 batch_size: int = 8, blend: str = "cosine", tta: str = "none", head: Head | None = None):
        self.model, self.rt = model.eval(), rt
        self.channels = num_classes  # probability planes: the model's outputs (1 for a water model)
        self.head = head or Head(num_classes)
        self.tile, self.overlap, self.batch_size, self.blend, self.tta = tile, overlap, batch_size, blend, tta
        self.batch_pixels = batch_size * tile * tile  # smaller model tiles (small images) batch as many pixels

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        """(B, h, w, C) uint8 model-size tiles -> (B, planes, h, w) float32 probabilities."""
        return predict_probs(self.model, to_input(pixels, self.rt.device), self.rt, self.tta,
                             self.head).float().cpu()

    def run(self, source: Source, scale: tuple[float, float], sink: RowSink, progress: bool = True) -> Stats:
        """Every row of the source goes to the sink, top to bottom (run_many with one job)."""
        done: list[Stats] = []
        self.run_many([Job(source, scale, sink, done.append)], progress)
        return done[0]

    def run_many(self, jobs: Iterable[Job], progress: bool = True) -> None:
        """Each job's rows go to its sink, top to bottom, then its stats to `done`, jobs in order.

        Tiles of consecutive jobs share the model's batches (when their model-size shapes agree), so a folder
        of small images runs at the model's batch speed. The tiles cover each source's window of valid pixels
        only (rows and columns outside it are no-data and handed over as such). Jobs are taken from the
        iterable one at a time: at most a batch of tiles' images are open at once.
        """
        batch: list[tuple[_Active, tuple]] = []
        active: deque[_Active] = deque()  # read, not yet finished, in order
        for job in jobs:
            a = self._begin(job)
            active.append(a)
            with progress_bar(total=a.stats.tiles, enabled=progress and a.stats.tiles > 1,
                              desc=job.source.path.name, unit="tile", leave=False) as bar:
                for item in _read_tiles(job.source, a.grid, (a.wy, a.wx)) if a.grid else ():
                    if item[3] is not None:  # tiles that are all no-data add nothing
                        a.stats.features.append(image_features(item[3][None], None if item[5] is None else
                                                               item[5][None])[0])
                        if batch and batch[0][1][3].shape != item[3].shape:
                            self._flush(batch)
                        batch.append((a, item))
                        a.pending += 1
                        if len(batch) * item[3].shape[0] * item[3].shape[1] >= self.batch_pixels:
                            self._flush(batch)
                    bar.update(1)
            a.read = True
            self._finish_ready(active)
        if batch:
            self._flush(batch)
        self._finish_ready(active)

    def _begin(self, job: Job) -> "_Active":
        t0 = time.perf_counter()
        source = job.source
        window = source.valid_window() or (source.height, 0, 0, source.width)  # None: every row is no-data
        wy, wx, wh, ww = window
        grid = make_grid(wh, ww, job.scale, self.tile, self.overlap, self.blend) if wh else None
        a = _Active(job, grid, RowBlender(grid.rows, ww, self.channels) if grid else None,
                    Stats(tiles=len(grid) if grid else 0), wy, wx, wh, ww, t0)
        self._empty(job.sink, 0, wy, source.width)
        return a

    def _flush(self, batch: list) -> None:
        """The batch's tiles through the model, weighted and added to their jobs' blenders."""
        tm = time.perf_counter()
        probs = self.forward(np.stack([item[3] for _, item in batch]))
        seconds = time.perf_counter() - tm
        i = 0
        while i < len(batch):  # each job's run of tiles: resized back and weighted in one batched op
            a = batch[i][0]
            j = next((k for k in range(i, len(batch)) if batch[k][0] is not a), len(batch))
            group, p = [item for _, item in batch[i:j]], probs[i:j]
            native = (a.grid.rows.size, a.grid.cols.size)
            if p.shape[-2:] != native:
                p = F.interpolate(p, size=native, mode="bilinear", align_corners=False)
            wy = torch.from_numpy(np.stack([a.grid.rows.weights[item[0]] for item in group]))
            wx = torch.from_numpy(np.stack([a.grid.cols.weights[item[2]] for item in group]))
            planes = (p * (wy[:, None, :, None] * wx[:, None, None, :])).numpy()
            a.stats.model_seconds += seconds * len(group) / len(batch)
            a.stats.model_tiles += len(group)
            a.pending -= len(group)
            for (r, x0, _, _, valid, _), plane in zip(group, planes):
                while a.blender.row < r:  # every tile of the rows above is in: hand them over
                    a.emit()
                a.blender.add_weighted(plane, x0, valid)
            i = j
        batch.clear()

    def _finish_ready(self, active: "deque[_Active]") -> None:
        """Finish the jobs at the front whose tiles are all read and through the model."""
        while active and active[0].read and not active[0].pending:
            a = active.popleft()
            if a.grid:
                while a.blender.row < len(a.grid.rows.starts):
                    a.emit()
            source = a.job.source
            self._empty(a.job.sink, a.wy + a.wh, source.height, source.width)
            a.stats.seconds = time.perf_counter() - a.t0
            a.job.done(a.stats)

    def _empty(self, sink: RowSink, y0: int, y1: int, width: int, rows: int = 256) -> None:
        """Rows y0..y1 as no-data, in bands of `rows`."""
        for y in range(y0, y1, rows):
            n = min(rows, y1 - y)
            sink(y, np.zeros((self.channels, n, width), np.float32), np.zeros((n, width), bool))
