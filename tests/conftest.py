"""Shared fixtures: a small synthetic dataset, the real data (when present), a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unetseg.data.synth import SynthConfig, write_synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep the tests' decoded-chip caches out of the user's ~/.cache."""
    old = os.environ.get("UNETSEG_CACHE")
    os.environ["UNETSEG_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield Path(os.environ["UNETSEG_CACHE"])
    if old is None:
        os.environ.pop("UNETSEG_CACHE", None)
    else:
        os.environ["UNETSEG_CACHE"] = old


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """60 small synthetic chips (32..96 px), made once per session."""
    out = tmp_path_factory.mktemp("synth") / "data"
    return write_synthetic(out, SynthConfig(n=60, min_size=32, max_size=96, seed=7), progress=False)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real water-bodies dataset: UNETSEG_DATA or ../shared/data/water-bodies (required in CI)."""
    from helpers import shared_dataset

    return shared_dataset("water-bodies", "UNETSEG_DATA")


def _train(data: Path, out: Path, recipe, limit: int | None = None) -> Path:
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    run_train(data, out, recipe, select_runtime("auto"), progress=False, log=lambda m: None, limit=limit)
    return out


@pytest.fixture(scope="session")
def real_run(real_data, tmp_path_factory) -> Path:
    """A small U-Net trained briefly on 800 real pairs at 64 px (shared by the real-data tests)."""
    from unetseg.config import ModelConfig, Recipe

    recipe = Recipe(name="ci-real", model=ModelConfig(name="unet-bn", base_width=8, depth=4, batch_norm=True),
                    epochs=4, batch_size=16, image_size=64, lr=3e-3, early_stopping_patience=0, monitor="val_miou")
    return _train(real_data, tmp_path_factory.mktemp("real") / "run", recipe, limit=800)


@pytest.fixture(scope="session")
def tiny_run(synth_data, tmp_path_factory) -> Path:
    """A tiny U-Net trained for one epoch on synthetic chips: fast, for checking plumbing and errors."""
    from unetseg.config import ModelConfig, Recipe

    recipe = Recipe(name="tiny", model=ModelConfig(name="unet-bn", base_width=4, depth=3, batch_norm=True),
                    epochs=1, batch_size=16, image_size=32, early_stopping_patience=0)
    return _train(synth_data, tmp_path_factory.mktemp("tiny") / "run", recipe)
