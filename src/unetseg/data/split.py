"""A seeded, reproducible train/validation/test split, saved as split.json in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import SplitConfig
from ..io import write_text_atomic
from .errors import DataError


def split_sizes(n: int, cfg: SplitConfig) -> tuple[int, int]:
    """(test, val) counts: the configured counts for large datasets, fractions otherwise."""
    if isinstance(cfg.test, int) and isinstance(cfg.val, int) and n >= cfg.min_size_for_counts:
        return cfg.test, cfg.val
    ft = cfg.test if isinstance(cfg.test, float) else cfg.small_test
    fv = cfg.val if isinstance(cfg.val, float) else cfg.small_val
    test, val = max(1, round(n * ft)), max(1, round(n * fv))
    if n - test - val < 1:
        raise DataError(f"only {n} image/mask pairs: too few to split into train, validation and test")
    return test, val


def make_split(stems: list[str], cfg: SplitConfig) -> dict[str, list[str]]:
    """Shuffle the sorted names with the seed; the first `test` are test, the next `val` validation."""
    order = np.random.default_rng(cfg.seed).permutation(len(stems))
    shuffled = [stems[i] for i in order]
    test, val = split_sizes(len(stems), cfg)
    return {"test": shuffled[:test], "val": shuffled[test:test + val], "train": shuffled[test + val:]}


def save_split(path: Path, split: dict[str, list[str]], cfg: SplitConfig) -> None:
    body = {"seed": cfg.seed, "counts": {k: len(v) for k, v in split.items()}, **split}
    write_text_atomic(path, json.dumps(body, indent=1))


def load_split(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        raise DataError(f"{path}: no split file (was this run folder made by `unetseg train`?)")
    d = json.loads(path.read_text())
    return {k: d[k] for k in ("train", "val", "test")}


def check_split(split: dict[str, list[str]], available: list[str], path: Path) -> None:
    """Every name in the split must be in the data (evaluation must use the same test files)."""
    have = set(available)
    missing = [s for part in ("train", "val", "test") for s in split[part] if s not in have]
    if missing:
        raise DataError(f"{path}: {len(missing)} file(s) of the saved split are not in the data, e.g. {missing[0]}")
