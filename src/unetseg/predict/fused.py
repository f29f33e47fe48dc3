"""The U-Net and a water index on the same raster: water where either of them finds it.

The shipped water model sees colour only (it was trained on RGB), so it misses water that does not look like
water in colour: flooded fields and vegetation, dark or turbid rivers. A water index sees that water in the
infrared; the model sees what the index gets wrong (dark shadows, mixed shore pixels, scenes the index cannot
threshold). Where an input has the index's bands, the fused method keeps the model's water probability where
it is higher and the index's score (sigmoid around its threshold, index.py) where that is higher: a pixel is
water when either says so. It inherits the index's failure modes: snow and ice are bright in green and dark
in the infrared, like water (docs/scenes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..data.sources import Source
from .engine import Job, Plan, Segmenter, Stats
from .index import IndexSegmenter


@dataclass
class FusedSegmenter:
    """The Segmenter's interface (run, run_many, read_ahead, model) over a model and an index.

    `open_index` opens a job's input again as the index's two bands (green and the infrared); the index's
    threshold is fitted per input, its rows read as the model's rows come out, at the input's own pixels."""

    unet: Segmenter
    index: IndexSegmenter
    open_index: Callable[[Source], Source]

    @property
    def model(self):
        return self.unet.model

    def _fused(self, job: Job) -> Job:
        """The job, with a sink that takes the higher of the model's and the index's water score."""
        bands = self.open_index(job.source)
        try:
            threshold = self.index.fit(bands)
        except BaseException:
            bands.close()
            raise

        def sink(y0: int, probs: np.ndarray, valid: np.ndarray) -> None:
            raw, _ = bands.read(y0, 0, probs.shape[1], bands.width)
            job.sink(y0, np.maximum(probs, self.index.score(raw, bands, threshold)[None]), valid)

        def done(stats: Stats) -> None:
            bands.close()
            stats.index_threshold = threshold
            job.done(stats)

        return Job(job.source, job.scale, sink, done, job.plan)

    run = Segmenter.run  # run_many with one job

    def run_many(self, jobs: Iterable[Job], progress: bool = True, before_model: Callable[[], None] = lambda: None
                 ) -> None:
        self.unet.run_many((self._fused(job) for job in jobs), progress, before_model)

    def read_ahead(self, source: Source, scale: tuple[float, float], max_tiles: int = 16) -> Plan:
        return self.unet.read_ahead(source, scale, max_tiles)
