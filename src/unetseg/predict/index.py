"""A physics yardstick with no model: a normalised water index, thresholded by Otsu's method.

NDWI (McFeeters 1996) = (green - nir) / (green + nir); MNDWI (Xu 2006) = (green - swir1) / (green + swir1).
Water is bright in green and dark in the infrared, so it has high values. The threshold is Otsu's
(scikit-image) over the valid pixels of the whole input, read once at reduced resolution, but never below 0,
the indices' textbook water line: Otsu always splits a histogram in two, so on a scene with no water it would
cut the land in half (a desert's MNDWI is all below 0: with the floor, no water). Then the input is
streamed band by band at its own resolution through the same writers as the U-Net's output. The value
range's low end is subtracted first (`--value-range 1000,5000` removes Sentinel-2 L2A's +1000 offset).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .engine import RowSink, Stats
from ..data.sources import Source

INDEX_BANDS = {"ndwi": ("green", "nir"), "mndwi": ("green", "swir1")}
SHARPNESS = 20.0  # the water score is sigmoid(SHARPNESS * (index - threshold)): above 0.5 exactly when water
FLOOR = 0.0  # the lowest threshold: both indices call water above 0 in their papers


def water_index(raw: np.ndarray, offset: float) -> np.ndarray:
    """(h, w, 2) raw values (green, infrared) -> (h, w) normalised difference in [-1, 1] (0 where both are 0)."""
    a = raw.astype(np.float32) - np.float32(offset)
    g, ir = a[..., 0], a[..., 1]
    total = g + ir
    return np.divide(g - ir, total, out=np.zeros_like(total), where=np.abs(total) > 1e-6).clip(-1, 1)


def otsu_threshold(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size < 2 or values.min() == values.max():
        return 0.0
    return float(threshold_otsu(values, nbins=512))


@dataclass
class IndexSegmenter:
    """`run` has the U-Net Segmenter's interface: every row of the source goes to the sink."""

    method: str
    rows: int = 256
    sample: int = 1024  # the threshold is computed on at most about sample x sample pixels

    def __post_init__(self):
        if self.method not in INDEX_BANDS:
            raise ValueError(f"unknown index {self.method!r}; choose one of {', '.join(INDEX_BANDS)}")

    def _offset(self, source: Source) -> float:
        return float(getattr(source, "lo", 0.0))

    def fit(self, source: Source) -> float:
        """Otsu's threshold over every k-th row and column of the valid pixels (at least FLOOR)."""
        k = max(1, int(np.ceil(max(source.height, source.width) / self.sample)))
        values = []
        for y0 in range(0, source.height, self.rows * k):
            raw, valid = source.read(y0, 0, min(self.rows * k, source.height - y0), source.width)
            idx = water_index(raw[::k, ::k], self._offset(source))
            values.append(idx[valid[::k, ::k]])
        values = np.concatenate(values) if values else np.zeros(0)
        if not values.size:
            raise DataError(f"{source.path}: every pixel is no-data; nothing to segment")
        return max(otsu_threshold(values), FLOOR)

    def score(self, raw: np.ndarray, source: Source, threshold: float) -> np.ndarray:
        """(h, w, 2) raw values -> (h, w) float32 water score, above 0.5 exactly where the index is above
        `threshold`."""
        return (1 / (1 + np.exp(-SHARPNESS * (water_index(raw, self._offset(source)) - threshold)))
                ).astype(np.float32)

    def run(self, source: Source, scale: tuple[float, float], sink: RowSink, progress: bool = True) -> Stats:
        t0 = time.perf_counter()
        threshold = self.fit(source)
        stats = Stats(index_threshold=threshold)
        for y0 in range(0, source.height, self.rows):
            raw, valid = source.read(y0, 0, min(self.rows, source.height - y0), source.width)
            sink(y0, self.score(raw, source, threshold)[None], valid)
            stats.tiles += 1
        stats.seconds = time.perf_counter() - t0
        return stats

    def read_ahead(self, source: Source, scale: tuple[float, float], max_tiles: int = 16) -> None:
        """The Segmenter's read_ahead: nothing (an index reads its rows as it goes)."""

    def run_many(self, jobs, progress: bool = True, before_model=lambda: None) -> None:
        """The Segmenter's run_many: one job after another (an index has no batches to share)."""
        for job in jobs:
            job.done(self.run(job.source, job.scale, job.sink, progress))
