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
from ..head import IGNORE
from .folder import Pair, decode_pair
from .spec import DatasetSpec
from ..progress import bar as progress_bar

CACHE_VERSION = 5  # 3: one pixel reader with predict; 4: grid chips, border weights; 5: 0/1 masks


@dataclass(frozen=True)
class ChipPlan:
    """How files become training chips: `resize` each whole image to size x size (the seed's way), or cut it at
    its own resolution into size x size windows every `stride` px (`grid`: large slices, microscopy), with the
    border weight map of the U-Net paper (w0 > 0) computed on the whole image first."""

    size: int
    mode: str = "resize"  # resize | grid
    stride: int = 0  # grid: 0 = half the size
    w0: float = 0.0  # border weights: 0 = none
    sigma: float = 5.0

    def key(self) -> str:
        return f"{self.size}" if self.mode == "resize" and not self.w0 else \
            f"{self.size}|{self.mode}|{self.stride}|{self.w0}|{self.sigma}"


def as_plan(size: "int | ChipPlan") -> ChipPlan:
    return size if isinstance(size, ChipPlan) else ChipPlan(int(size))


def default_cache_dir() -> Path:
    return Path(os.environ.get("UNETSEG_CACHE", Path.home() / ".cache" / "unetseg"))


def cache_key(pairs: list[Pair], size: "int | ChipPlan", spec: DatasetSpec) -> str:
    """A digest of every file's bytes, the names, the chip plan and the dataset description."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{as_plan(size).key()}|{spec.key()}".encode())
    for p in pairs:
        masks = "|".join(sha256_file(m) for m in p.mask_files)
        h.update(f"|{p.stem}|{sha256_file(p.image)}|{masks}".encode())
    return h.hexdigest()[:24]


def chip_group(stem: str) -> str:
    """The file a chip was cut from: grid chips are named FILE#K."""
    return stem.split("#", 1)[0]


@dataclass
class Chips:
    """N chips of S x S: images (N, S, S, C) uint8 and class masks (N, S, S) uint8 (0/1 for water; bit sets
    for multi-label data); grid chips may carry border weights (N, S, S) float16. Grid chips are named FILE#K."""

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    bad: dict[str, str] = field(default_factory=dict)  # stem -> message, for files skipped with --skip-bad
    notes: list[str] = field(default_factory=list)  # e.g. colour-mode conversions
    weights: np.ndarray | None = None

    def subset(self, stems: list[str]) -> "Chips":
        """The chips of these chip names or files (a file: all its grid chips), in the order asked for."""
        index = {s: [i] for i, s in enumerate(self.stems)}
        for i, s in enumerate(self.stems):
            if s != chip_group(s):
                index.setdefault(chip_group(s), []).append(i)
        idx = np.array([i for s in stems for i in index.get(s, [])], np.int64)
        return Chips([self.stems[i] for i in idx], self.images[idx], self.masks[idx],
                     weights=None if self.weights is None else self.weights[idx])

    @property
    def files(self) -> list[str]:
        """The files the chips came from, in order, each once."""
        return list(dict.fromkeys(chip_group(s) for s in self.stems))


def _decode(args: tuple[Pair, ChipPlan, DatasetSpec]):
    pair, plan, spec = args
    try:
        if plan.mode == "resize" and not plan.w0:
            img, mask, note = decode_pair(pair, plan.size, spec)
            return pair.stem, [img], [mask], None, note, None
        img, mask, note = decode_pair(pair, 0, spec)
        weights = None
        if plan.w0:
            from .borders import border_weights

            weights = border_weights((mask != 0) & (mask != IGNORE), plan.w0, plan.sigma)
        if plan.mode == "resize":
            from .files import resize_nearest

            return pair.stem, [resize_nearest(img, plan.size)], [resize_nearest(mask, plan.size)], \
                [resize_nearest(weights, plan.size).astype(np.float16)], note, None
        from .borders import grid_cut

        stride = plan.stride or plan.size // 2
        return (pair.stem, grid_cut(img, plan.size, stride), grid_cut(mask, plan.size, stride, IGNORE),
                None if weights is None else [w.astype(np.float16) for w in grid_cut(weights, plan.size, stride, 1)],
                note, None)
    except DataError as e:
        return pair.stem, None, None, None, None, str(e)


def build_chips(pairs: list[Pair], size: "int | ChipPlan", spec: DatasetSpec, workers: int | None = None,
                progress: bool = True) -> Chips:
    """Decode every pair on `workers` processes (all cores by default); bad files are listed, not raised."""
    workers = workers or os.cpu_count() or 1
    plan = as_plan(size)
    size = plan.size
    jobs = [(p, plan, spec) for p in pairs]
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(progress_bar(pool.map(_decode, jobs, chunksize=16), enabled=progress, total=len(jobs),
                                        desc=f"decoding chips ({workers} processes)", unit="chip"))
    else:
        results = [_decode(j) for j in progress_bar(jobs, enabled=progress, desc="decoding chips", unit="chip")]
    good = [r for r in results if r[5] is None]
    one = plan.mode == "resize"
    stems = [r[0] if one else f"{r[0]}#{k}" for r in good for k in range(len(r[1]))]
    images = np.stack([c for r in good for c in r[1]]) if good else \
        np.zeros((0, size, size, len(spec.channels)), np.uint8)
    masks = np.stack([c for r in good for c in r[2]]) if good else np.zeros((0, size, size), np.uint8)
    weights = np.stack([c for r in good for c in r[3]]) if good and plan.w0 else None
    return Chips(
        stems=stems, images=images, masks=masks,
        bad={r[0]: r[5] for r in results if r[5] is not None},
        notes=[r[4] for r in good if r[4]], weights=weights,
    )


def load_chips(pairs: list[Pair], size: "int | ChipPlan", spec: DatasetSpec | None = None, cache_dir: Path | None = None,
               skip_bad: bool = False, workers: int | None = None, progress: bool = True) -> Chips:
    """Cached decode of `pairs`: the first call builds the cache, later calls memory-map it."""
    spec = spec or DatasetSpec()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache_dir / cache_key(pairs, size, spec)
    if (folder / "meta.json").exists():
        meta = json.loads((folder / "meta.json").read_text())
        chips = Chips(meta["stems"], np.load(folder / "images.npy", mmap_mode="r"),
                      np.load(folder / "masks.npy", mmap_mode="r"), meta["bad"], meta["notes"],
                      np.load(folder / "weights.npy", mmap_mode="r") if (folder / "weights.npy").exists() else None)
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
            if chips.weights is not None:
                np.save(tmp / "weights.npy", chips.weights)
            (tmp / "meta.json").write_text(json.dumps({"stems": chips.stems, "bad": chips.bad, "notes": chips.notes}))
    except OSError:
        if not (folder / "meta.json").exists():  # another process may have won the race
            raise
