"""Decoded, resized chips cached as memory-mapped .npy files, keyed by file contents and size."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, sha256_file
from ..errors import DataError
from .folder import Pair, decode_pair
from .spec import DatasetSpec
from ..progress import bar as progress_bar

CACHE_VERSION = 3  # 3: one pixel reader with predict (16-bit by value range)


def default_cache_dir() -> Path:
    return Path(os.environ.get("UNETSEG_CACHE", Path.home() / ".cache" / "unetseg"))


def cache_key(pairs: list[Pair], size: int, spec: DatasetSpec) -> str:
    """A digest of every file's bytes, the names, the chip size and the dataset description."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{spec.key()}".encode())
    for p in pairs:
        h.update(f"|{p.stem}|{sha256_file(p.image)}|{sha256_file(p.mask)}".encode())
    return h.hexdigest()[:24]


@dataclass
class Chips:
    """N chips of S x S: images (N, S, S, C) uint8 and class masks (N, S, S) uint8 (0/1 for water)."""

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    bad: dict[str, str] = field(default_factory=dict)  # stem -> message, for files skipped with --skip-bad
    notes: list[str] = field(default_factory=list)  # e.g. colour-mode conversions

    def subset(self, stems: list[str]) -> "Chips":
        index = {s: i for i, s in enumerate(self.stems)}
        idx = np.array([index[s] for s in stems], dtype=np.int64)
        return Chips(list(stems), self.images[idx], self.masks[idx])


def _decode(args: tuple[Pair, int, DatasetSpec]):
    pair, size, spec = args
    try:
        img, mask, note = decode_pair(pair, size, spec)
        return pair.stem, img, mask, note, None
    except DataError as e:
        return pair.stem, None, None, None, str(e)


def build_chips(pairs: list[Pair], size: int, spec: DatasetSpec, workers: int | None = None,
                progress: bool = True) -> Chips:
    """Decode every pair on `workers` processes (all cores by default); bad files are listed, not raised."""
    workers = workers or os.cpu_count() or 1
    jobs = [(p, size, spec) for p in pairs]
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(progress_bar(pool.map(_decode, jobs, chunksize=16), enabled=progress, total=len(jobs),
                                        desc=f"decoding chips ({workers} processes)", unit="chip"))
    else:
        results = [_decode(j) for j in progress_bar(jobs, enabled=progress, desc="decoding chips", unit="chip")]
    good = [r for r in results if r[4] is None]
    images = np.stack([r[1] for r in good]) if good else np.zeros((0, size, size, len(spec.channels)), np.uint8)
    masks = np.stack([r[2] for r in good]) if good else np.zeros((0, size, size), np.uint8)
    return Chips(
        stems=[r[0] for r in good], images=images, masks=masks,
        bad={r[0]: r[4] for r in results if r[4] is not None},
        notes=[r[3] for r in good if r[3]],
    )


def load_chips(pairs: list[Pair], size: int, spec: DatasetSpec | None = None, cache_dir: Path | None = None,
               skip_bad: bool = False, workers: int | None = None, progress: bool = True) -> Chips:
    """Cached decode of `pairs`: the first call builds the cache, later calls memory-map it."""
    spec = spec or DatasetSpec()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache_dir / cache_key(pairs, size, spec)
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        chips = Chips(meta["stems"], np.load(folder / "images.npy", mmap_mode="r"),
                      np.load(folder / "masks.npy", mmap_mode="r"), meta["bad"], meta["notes"])
    else:
        chips = build_chips(pairs, size, spec, workers, progress)
        _save(folder, chips)
    if chips.bad and not skip_bad:
        first = next(iter(chips.bad.values()))
        more = f" (and {len(chips.bad) - 1} more bad files; --skip-bad skips them)" if len(chips.bad) > 1 else \
            " (--skip-bad skips it)"
        raise DataError(first + more)
    if not chips.stems:
        raise DataError(f"no readable image/mask pairs among {len(pairs)} ({next(iter(chips.bad.values()))})")
    return chips


def _save(folder: Path, chips: Chips) -> None:
    """Write the cache into a temporary folder, then rename it into place (never half-written)."""
    try:
        with atomic_dir(folder) as tmp:
            np.save(tmp / "images.npy", chips.images)
            np.save(tmp / "masks.npy", chips.masks)
            (tmp / "meta.json").write_text(json.dumps({"stems": chips.stems, "bad": chips.bad, "notes": chips.notes}))
    except OSError:
        if not (folder / "meta.json").exists():  # another process may have won the race
            raise
