"""Decoded, resized chips cached as memory-mapped .npy files, keyed by file contents and size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import DataError
from .folder import Pair, decode_pair

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("UNETSEG_CACHE", Path.home() / ".cache" / "unetseg"))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(pairs: list[Pair], size: int, threshold: int) -> str:
    """A digest of every file's bytes, the names, the chip size and the mask threshold."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{threshold}".encode())
    for p in pairs:
        h.update(f"|{p.stem}|{_file_digest(p.image)}|{_file_digest(p.mask)}".encode())
    return h.hexdigest()[:24]


@dataclass
class Chips:
    """N chips of S x S: images (N, S, S, 3) uint8 and masks (N, S, S) uint8 in {0, 1}."""

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    bad: dict[str, str] = field(default_factory=dict)  # stem -> message, for files skipped with --skip-bad
    notes: list[str] = field(default_factory=list)  # e.g. colour-mode conversions

    def subset(self, stems: list[str]) -> "Chips":
        index = {s: i for i, s in enumerate(self.stems)}
        idx = np.array([index[s] for s in stems], dtype=np.int64)
        return Chips(list(stems), self.images[idx], self.masks[idx])


def _decode(args: tuple[Pair, int, int]):
    pair, size, threshold = args
    try:
        img, mask, note = decode_pair(pair, size, threshold)
        return pair.stem, img, mask, note, None
    except DataError as e:
        return pair.stem, None, None, None, str(e)


def build_chips(pairs: list[Pair], size: int, threshold: int, workers: int | None = None,
                progress: bool = True) -> Chips:
    """Decode every pair on `workers` processes (all cores by default); bad files are listed, not raised."""
    workers = workers or os.cpu_count() or 1
    jobs = [(p, size, threshold) for p in pairs]
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(_decode, jobs, chunksize=16), total=len(jobs),
                                desc=f"decoding chips ({workers} processes)", disable=not progress, unit="chip"))
    else:
        results = [_decode(j) for j in tqdm(jobs, desc="decoding chips", disable=not progress, unit="chip")]
    good = [r for r in results if r[4] is None]
    images = np.stack([r[1] for r in good]) if good else np.zeros((0, size, size, 3), np.uint8)
    masks = np.stack([r[2] for r in good]) if good else np.zeros((0, size, size), np.uint8)
    return Chips(
        stems=[r[0] for r in good], images=images, masks=masks,
        bad={r[0]: r[4] for r in results if r[4] is not None},
        notes=[r[3] for r in good if r[3]],
    )


def load_chips(pairs: list[Pair], size: int, threshold: int = 128, cache_dir: Path | None = None,
               skip_bad: bool = False, workers: int | None = None, progress: bool = True) -> Chips:
    """Cached decode of `pairs`: the first call builds the cache, later calls memory-map it."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache_dir / cache_key(pairs, size, threshold)
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        chips = Chips(meta["stems"], np.load(folder / "images.npy", mmap_mode="r"),
                      np.load(folder / "masks.npy", mmap_mode="r"), meta["bad"], meta["notes"])
    else:
        chips = build_chips(pairs, size, threshold, workers, progress)
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
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        np.save(tmp / "images.npy", chips.images)
        np.save(tmp / "masks.npy", chips.masks)
        (tmp / "meta.json").write_text(json.dumps({"stems": chips.stems, "bad": chips.bad, "notes": chips.notes}))
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").exists():  # another process may have won the race
            raise
