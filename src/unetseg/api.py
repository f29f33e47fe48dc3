"""The Python API: load a run (or a shipped model), segment arrays and files; the CLI runs the same path.

    import unetseg
    model = unetseg.load("water")                      # the shipped model, or a run folder
    probs, mask = model.predict(array)                 # (H, W, C) uint8/uint16/float, any size, or a file
    row = model.predict_file("scene.tif", out="out")   # the CLI's outputs for one file
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import PredictConfig
from .data.sources import ArraySource


class Model:
    """A loaded run or shipped model, ready to segment arrays and files."""

    def __init__(self, run: str | Path, device: str = "auto", precision: str = "auto", **settings: Any):
        from .predict.pipeline import Predictor
        from .runtime import select_runtime

        self.name = str(run)
        self.settings = PredictConfig(**settings)
        self.runtime = select_runtime(precision, device, reuse_memory=False)  # may live in a server: glibc defaults
        self._predictor = Predictor(Path(run), self.settings, self.runtime, progress=False, log=lambda m: None)

    @property
    def classes(self) -> list[str]:
        return list(self._predictor.class_names)

    @property
    def info(self) -> dict:
        """The run's recipe, data description, training resolution and more (its run.json)."""
        return dict(self._predictor.run_info)

    def predict(self, image: np.ndarray | str | Path, value_range: str | tuple[float, float] | None = None,
                gsd: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (H, W) float32 for a binary model or (K, H, W), class map (H, W) uint8) of an image
        array of any size, or of an image or raster file (read as predict reads it: bands by name, no-data, its
        ground resolution), tiled, scaled (`gsd`: metres per pixel, for --scale auto) and blended as the CLI
        does. No-data pixels (NaN, masked, the `nodata` setting's value in every channel) get class 255."""
        if isinstance(image, (str, Path)):
            source = self._predictor.open(Path(image), value_range=value_range)
        else:
            source = ArraySource(image, self._predictor.model_cfg.in_channels,
                                 value_range or self._predictor.value_range, nodata=self.settings.nodata)
        try:
            keep = self._predictor.segment(source, gsd=gsd).keep
        finally:
            source.close()
        classes = np.where(keep.valid, keep.classes, 255).astype(np.uint8)
        probs = keep.probs[0] if self._predictor.head.binary else keep.probs
        return probs, classes

    def __repr__(self) -> str:
        return (f"<unetseg.Model {self.name!r}: {self._predictor.model_cfg.name}, classes {self.classes}, from "
                f"{self._predictor.run_dir}; {self.runtime.describe()}>")

    def predict_file(self, path: str | Path, out: str | Path, overwrite: bool = False) -> dict:
        """The CLI's outputs for one image or raster into OUT (mask, polygons, summary); its summary row."""
        from .predict.pipeline import predict

        rows = predict(None, [Path(path)], Path(out), self.settings, self.runtime, overwrite, progress=False,
                       log=lambda m: None, predictor=self._predictor)
        return rows[0]


def load(run: str | Path, device: str = "auto", precision: str = "auto", **settings: Any) -> Model:
    """A run folder made by `unetseg train`, or a shipped model's name ("water"). `settings` are predict's
    options (tile, overlap, threshold, tta, scale, bands, value_range, vectors, ...)."""
    return Model(run, device, precision, **settings)
