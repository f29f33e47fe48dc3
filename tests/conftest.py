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
    path = Path(os.environ.get("UNETSEG_DATA") or REPO.parent / "shared" / "data" / "water-bodies")
    if not (path / "Images").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data not found at {path}: set UNETSEG_DATA (CI must run the real-data tests)")
        pytest.skip(f"real data not found at {path} (set UNETSEG_DATA)")
    return path
