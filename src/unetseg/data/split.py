"""A seeded, stable train/validation/test split, saved as split.json in the run folder.

Each file's part follows from a hash of the seed and its name alone, so adding files to a dataset never
moves a file that was already there from one part to another (no test file can leak into training)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config import SplitConfig
from ..atomic import write_text_atomic
from ..errors import DataError, first_line

PARTS = ("test", "val", "train")


def split_score(stem: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the seed and the file name."""
    digest = hashlib.sha256(f"{seed}\0{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def part_of(score: float, cfg: SplitConfig) -> str:
    return "test" if score < cfg.test else "val" if score < cfg.test + cfg.val else "train"


def make_split(stems: list[str], cfg: SplitConfig, fixed: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Test if the score is below cfg.test, validation if below cfg.test + cfg.val, else train.

    `fixed` (file -> part) puts files in test or val outright (a dataset's own test folder, named held-out
    slices; files fixed in train are split between train and val); a part that has fixed files takes no others,
    and the remaining parts share the rest by the same hash, their fractions scaled up to the share left. Only a very small dataset can leave test or validation empty;
    then the training file scoring nearest to that part's range is moved into it."""
    if not (0 < cfg.test and 0 < cfg.val and cfg.test + cfg.val < 1):
        raise ValueError(f"split fractions test {cfg.test} and val {cfg.val} must be positive and sum below 1")
    if len(stems) < 3:
        raise DataError(f"only {len(stems)} image/mask pairs: too few to split into train, validation and test")
    names = set(stems)
    fixed = {s: p for s, p in (fixed or {}).items() if s in names and p != "train"}  # train gives val too
    closed = set(fixed.values())
    left = 1.0 - sum(getattr(cfg, p) for p in closed)
    cfg = SplitConfig(test=0.0 if "test" in closed else cfg.test / left, val=0.0 if "val" in closed else
                      cfg.val / left, seed=cfg.seed)
    scores = {s: split_score(s, cfg.seed) for s in stems}
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for s in stems:
        parts[fixed.get(s) or part_of(scores[s], cfg)].append(s)
    ranges = {name: r for name, r in {"test": (0.0, cfg.test), "val": (cfg.test, cfg.test + cfg.val)}.items()
              if name not in closed}
    for name, (lo, hi) in ranges.items():
        if not parts[name] and len(parts["train"]) > 1:  # (fixed files are never in train here)
            nearest = min(parts["train"], key=lambda s: max(lo - scores[s], scores[s] - hi))
            parts["train"].remove(nearest)
            parts[name].append(nearest)
    if not all(parts.values()):
        raise DataError(f"only {len(stems)} image/mask pairs: too few to split into train, validation and test")
    return parts


def save_split(path: Path, split: dict[str, list[str]], cfg: SplitConfig, fixed: dict[str, str] | None = None) -> None:
    body = {"method": "sha256(seed, name)", "seed": cfg.seed, "fractions": {"test": cfg.test, "val": cfg.val},
            "counts": {k: len(v) for k, v in split.items()}, **split}
    if fixed:
        body["fixed"] = {p: sorted({s for s, q in fixed.items() if q == p}) for p in PARTS if p in fixed.values()}
    write_text_atomic(path, json.dumps(body, indent=1))


def load_split(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        raise DataError(f"{path}: no split file (was this run folder made by `unetseg train`?)")
    try:
        d = json.loads(path.read_text())
        return {k: list(d[k]) for k in PARTS}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a split file ({first_line(e)})") from None


def check_split(split: dict[str, list[str]], available: list[str], path: Path) -> None:
    """Every name in the split must be in the data (evaluation must use the same test files)."""
    have = set(available)
    missing = [s for part in PARTS for s in split[part] if s not in have]
    if missing:
        raise DataError(f"{path}: {len(missing)} file(s) of the saved split are not in the data, e.g. {missing[0]}")
