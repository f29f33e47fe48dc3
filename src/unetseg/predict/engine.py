"""Tiled, streamed inference: any image size in, blended probabilities out a band of rows at a time.

One path: windows of `tile / scale` native pixels (overlapping by `overlap / scale`) are read from the
source, resized (nearest, as the training chips were) to the model's scale, batched through the model,
and the probabilities are resized back (bilinear) and blended with normalised taper weights. Finished
rows go to the sink as soon as no later tile touches them (a source of one tile skips the blending: its
weights are exactly 1). Memory is one row of tiles, whatever the image's size.

The engine runs on the calling thread. A caller may read a small source's tiles ahead on another thread
(`read_ahead`), and is told before each batch goes through the model (`before_model`), so that its own
helpers can stand still meanwhile: on 2 cores the model's two OpenMP threads lose a core to any
concurrent work and wait at every barrier (docs/predict.md).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.files import resize_to
from ..head import Head
from ..inference import predict_probs, to_input
from ..ood import binary_entropy_bits, image_features
from ..runtime import Runtime
from ..data.sources import Source
from .tiling import Axis, RowBlender, axis_windows, fill_from_nearest
from ..progress import bar as progress_bar

_NO_BAR = contextlib.nullcontext(SimpleNamespace(update=lambda n: None))

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
    entropy_bits: float = 0.0  # binary models: summed entropy of the water probability over the model's valid
    entropy_pixels: int = 0  # pixels, at the model's own resolution (tiles' overlaps counted in each tile)
    index_threshold: float | None = None  # --method INDEX or unet+INDEX: the index's threshold for this input

    @property
    def mean_entropy(self) -> float | None:
        return self.entropy_bits / self.entropy_pixels if self.entropy_pixels else None


class Tile(NamedTuple):
    """One window of the grid, read and resized to the model's scale."""

    row: int  # index of its row of tiles
    x0: int  # first column, in the window's native pixels
    col: int  # index of its column of tiles
    pixels: np.ndarray | None  # model-size uint8 pixels; None when all no-data
    valid: np.ndarray  # native valid mask
    model_valid: np.ndarray | None  # model-size valid mask; None when all valid
    features: np.ndarray | None  # the pixels' colour statistics (ood.image_features)


def _read_tiles(source: Source, grid: Grid, origin: tuple[int, int] = (0, 0)) -> Iterator[Tile]:
    """The grid's tiles, row by row; the windows are relative to `origin` (row, column)."""
    mh, mw = grid.model_shape
    for r, y0 in enumerate(grid.rows.starts):
        for c, x0 in enumerate(grid.cols.starts):
            raw, valid = source.read(origin[0] + y0, origin[1] + x0, grid.rows.size, grid.cols.size)
            if not valid.any():
                yield Tile(r, x0, c, None, valid, None, None)
                continue
            pixels = source.to_uint8(resize_to(raw, mh, mw))  # resize first: scaling touches fewer pixels
            model_valid = None
            if not valid.all():
                model_valid = resize_to(valid, mh, mw)
                pixels = fill_from_nearest(pixels, model_valid)
            features = image_features(pixels[None], None if model_valid is None else model_valid[None])[0]
            yield Tile(r, x0, c, pixels, valid, model_valid, features)


@dataclass
class Plan:
    """Where a source's valid pixels are (window: first row, first column, rows, columns), the grid of tiles
    over them (None: no valid rows) and, when read ahead, its tiles."""

    window: tuple[int, int, int, int]
    grid: Grid | None
    tiles: list[Tile] | None = None


@dataclass
class Job:
    """One source to segment: its scale (model pixels per input pixel), where its rows go, and what to call
    with its Stats once the last row has gone; `plan`: Segmenter.read_ahead's, if it was read ahead."""

    source: Source
    scale: tuple[float, float]
    sink: RowSink
    done: Callable[[Stats], None]
    plan: Plan | None = None


@dataclass
class _Active:
    """A job being segmented: its grid (None: no valid rows), blender (None: one tile, nothing to blend), stats
    and tiles still in a batch."""

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
    emitted: bool = False

    def emit(self, rows: tuple[int, np.ndarray, np.ndarray] | None = None) -> None:
        """Hand finished rows (the blender's next, or `rows`: first row, probabilities, valid) to the sink,
        padded back to the source's full width."""
        y0, probs, valid = rows or self.blender.finish_row()
        self.emitted = True
        width = self.job.source.width
        if self.ww < width:
            pad = ((0, 0), (self.wx, width - self.wx - self.ww))
            probs, valid = np.pad(probs, ((0, 0),) + pad), np.pad(valid, pad)
        self.job.sink(self.wy + y0, probs, valid)


def _tile_entropy(probs: torch.Tensor, valid: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(summed entropy bits, valid pixels) of each tile of a (B, 1, h, w) water probability."""
    h = binary_entropy_bits(probs[:, 0])
    if any(v is not None for v in valid):
        mask = torch.from_numpy(np.stack([np.ones(h.shape[1:], bool) if v is None else v for v in valid]))
        h = h * mask
        return h.sum((1, 2), dtype=torch.float64).numpy(), mask.sum((1, 2)).numpy()
    return h.sum((1, 2), dtype=torch.float64).numpy(), np.full(len(h), h.shape[1] * h.shape[2])


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

    def run_many(self, jobs: Iterable[Job], progress: bool = True, before_model: Callable[[], None] = lambda: None
                 ) -> None:
        """Each job's rows go to its sink, top to bottom, then its stats to `done`, jobs in order.

        Tiles of consecutive jobs share the model's batches (when their model-size shapes agree), so a folder
        of small images runs at the model's batch speed. The tiles cover each source's window of valid pixels
        only (rows and columns outside it are no-data and handed over as such). Jobs are taken from the
        iterable one at a time: at most a batch of tiles' images are open at once. `before_model` is called
        before each batch goes through the model.
        """
        batch: list[tuple[_Active, Tile]] = []
        active: deque[_Active] = deque()  # read, not yet finished, in order
        for job in jobs:
            a = self._begin(job)
            active.append(a)
            with (progress_bar(total=a.stats.tiles, desc=job.source.path.name, unit="tile", leave=False)
                  if progress and a.stats.tiles > 1 else _NO_BAR) as bar:
                if job.plan and job.plan.tiles is not None:  # read ahead
                    tiles = job.plan.tiles
                else:
                    tiles = _read_tiles(job.source, a.grid, (a.wy, a.wx)) if a.grid else ()
                for item in tiles:
                    if item.pixels is not None:  # tiles that are all no-data add nothing
                        if batch and batch[0][1].pixels.shape != item.pixels.shape:
                            self._flush(batch, before_model)
                        batch.append((a, item))
                        a.pending += 1
                        if len(batch) * item.pixels.shape[0] * item.pixels.shape[1] >= self.batch_pixels:
                            self._flush(batch, before_model)
                    bar.update(1)
            a.read = True
            self._finish_ready(active)
        if batch:
            self._flush(batch, before_model)
        self._finish_ready(active)

    def _plan(self, source: Source, scale: tuple[float, float]) -> Plan:
        window = source.valid_window() or (source.height, 0, 0, source.width)  # None: no valid row
        return Plan(window, make_grid(*window[2:], scale, self.tile, self.overlap, self.blend) if window[2] else None)

    def read_ahead(self, source: Source, scale: tuple[float, float], max_tiles: int = 16) -> Plan:
        """A job's plan and, when it has at most `max_tiles` tiles, every tile read and resized to the model's
        scale: work a helper thread can do before the job's turn (Job.plan; run_many then skips it)."""
        plan = self._plan(source, scale)
        if plan.grid and len(plan.grid) <= max_tiles:
            plan.tiles = list(_read_tiles(source, plan.grid, plan.window[:2]))
        return plan

    def _begin(self, job: Job) -> "_Active":
        t0 = time.perf_counter()
        source = job.source
        plan = job.plan or self._plan(source, job.scale)
        wy, wx, wh, ww = plan.window
        grid = plan.grid
        a = _Active(job, grid, RowBlender(grid.rows, ww, self.channels) if grid and len(grid) > 1 else None,
                    Stats(tiles=len(grid) if grid else 0), wy, wx, wh, ww, t0)
        self._empty(job.sink, 0, wy, source.width)
        return a

    def _flush(self, batch: list, before_model: Callable[[], None]) -> None:
        """The batch's tiles through the model, weighted and added to their jobs' blenders."""
        pixels = np.stack([item.pixels for _, item in batch])
        before_model()
        tm = time.perf_counter()
        probs = self.forward(pixels)
        seconds = time.perf_counter() - tm
        entropy = _tile_entropy(probs, [item.model_valid for _, item in batch]) if self.head.binary else None
        i = 0
        while i < len(batch):  # each job's run of tiles: resized back and weighted in one batched op
            a = batch[i][0]
            j = next((k for k in range(i, len(batch)) if batch[k][0] is not a), len(batch))
            group, p = [item for _, item in batch[i:j]], probs[i:j]
            native = (a.grid.rows.size, a.grid.cols.size)
            if p.shape[-2:] != native:
                p = F.interpolate(p, size=native, mode="bilinear", align_corners=False)
            a.stats.model_seconds += seconds * len(group) / len(batch)
            a.stats.features.extend(item.features for item in group)
            if entropy is not None:
                a.stats.entropy_bits += float(entropy[0][i:j].sum())
                a.stats.entropy_pixels += int(entropy[1][i:j].sum())
            a.stats.model_tiles += len(group)
            a.pending -= len(group)
            if a.blender is None:  # one tile: its weights are exactly 1 (x / x), there is nothing to blend
                a.emit((0, p[0].numpy(), group[0].valid))
            else:
                self._blend(a, group, p)
            i = j
        batch.clear()

    @staticmethod
    def _blend(a: "_Active", group: list, p: torch.Tensor) -> None:
        """A job's run of native-size tile probabilities, weighted in one batched op, into its blender."""
        wy = torch.from_numpy(np.stack([a.grid.rows.weights[item.row] for item in group]))
        wx = torch.from_numpy(np.stack([a.grid.cols.weights[item.col] for item in group]))
        planes = (p * (wy[:, None, :, None] * wx[:, None, None, :])).numpy()
        for item, plane in zip(group, planes):
            while a.blender.row < item.row:  # every tile of the rows above is in: hand them over
                a.emit()
            a.blender.add_weighted(plane, item.x0, item.valid)

    def _finish_ready(self, active: "deque[_Active]") -> None:
        """Finish the jobs at the front whose tiles are all read and through the model."""
        while active and active[0].read and not active[0].pending:
            a = active.popleft()
            source = a.job.source
            if a.blender is not None:
                while a.blender.row < len(a.grid.rows.starts):
                    a.emit()
            elif a.grid and not a.emitted:  # its one tile was all no-data
                self._empty(a.job.sink, a.wy, a.wy + a.wh, source.width)
            self._empty(a.job.sink, a.wy + a.wh, source.height, source.width)
            a.stats.seconds = time.perf_counter() - a.t0
            a.job.done(a.stats)

    def _empty(self, sink: RowSink, y0: int, y1: int, width: int, rows: int = 256) -> None:
        """Rows y0..y1 as no-data, in bands of `rows`."""
        for y in range(y0, y1, rows):
            n = min(rows, y1 - y)
            sink(y, np.zeros((self.channels, n, width), np.float32), np.zeros((n, width), bool))
