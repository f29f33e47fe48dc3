"""unetseg: U-Net semantic segmentation for water bodies.

    import unetseg
    model = unetseg.load("water")            # the shipped model, or a run folder made by `unetseg train`
    probs, mask = model.predict(array)       # any (H, W, C) image array
    model.predict_file("scene.tif", out="out")

Reference: docs/api.md. Heavy libraries are imported when first used, so `import unetseg` is quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__
__all__ = ["__version__", "load", "build_model", "train", "evaluate"]

if TYPE_CHECKING:
    from .api import Model


def load(run: Any, device: str = "auto", precision: str = "auto", **settings: Any) -> "Model":
    """A run folder or a shipped model's name ("water"), ready to segment: see unetseg.api.Model."""
    from .api import load as _load

    return _load(run, device, precision, **settings)


def build_model(name: str = "unet", **config: Any):
    """A model from the registry by name (unet, unet-bn, ternausnet) with ModelConfig's fields, untrained."""
    from .config import ModelConfig
    from .models import build_model as _build

    return _build(ModelConfig(name=name, **config))


def train(data: Any, out: Any, recipe: str = "seed", precision: str = "auto", device: str = "auto",
          progress: bool = False, **overrides: Any) -> dict:
    """Train a recipe (with Recipe fields overridden by `overrides`) into the run folder OUT, as
    `unetseg train` does; returns the training history and timing."""
    import dataclasses
    from pathlib import Path

    from .config import get_recipe
    from .runtime import select_runtime
    from .workflow import run_train

    r = dataclasses.replace(get_recipe(recipe), **overrides)
    r.check()
    return run_train(Path(data), Path(out), r, select_runtime(precision, device), progress=progress,
                     log=lambda m: None)


def evaluate(run: Any, scenes: Any = None, precision: str = "auto", device: str = "auto", out: Any = None) -> dict:
    """A run's test-chip metrics (`unetseg evaluate RUN`), or its scores on scenes (`--scenes`, written to
    RUN/scenes-NAME or `out`; a shipped model needs `out`)."""
    from pathlib import Path

    from .config import PredictConfig
    from .runtime import select_runtime
    from .workflow import run_evaluate, run_evaluate_scenes

    rt = select_runtime(precision, device)
    if scenes is not None:
        return run_evaluate_scenes(Path(run), Path(scenes), rt, PredictConfig(), Path(out) if out else None,
                                   log=lambda m: None)
    return run_evaluate(Path(run), rt, progress=False)
