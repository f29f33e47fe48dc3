"""Folders of images and masks (Kaggle layout: Images/ and Masks/, matched by file stem)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import HIGH_DEPTH_MODES, image_shape, load_npy, natural_key, open_image, resize_nearest
from .spec import DatasetSpec, mask_to_classes

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".npy"}


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path


@dataclass
class Scan:
    """What a folder holds: complete pairs, plus the files that have no partner."""

    pairs: list[Pair]
    images_only: list[str] = field(default_factory=list)
    masks_only: list[str] = field(default_factory=list)

    def unpaired_message(self) -> str | None:
        parts = []
        for what, names, missing in [("image", self.images_only, "mask"), ("mask", self.masks_only, "image")]:
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                parts.append(f"{len(names)} {what}(s) without a {missing} skipped: {shown}")
        return "; ".join(parts) or None


def _listing(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            if p.stem in files:
                raise DataError(f"{p}: two files share the stem {p.stem!r} ({files[p.stem].name}); keep one")
            files[p.stem] = p
    return files


def _find_subdir(root: Path, name: str) -> Path:
    for cand in (root / name, root / name.lower()):
        if cand.is_dir():
            return cand
    raise DataError(f"{root}: no {name}/ folder (expected {root / name}, matched to Masks/ by file name)")


def scan_folder(root: str | Path) -> Scan:
    """Pair Images/X.* with Masks/X.*; report (not raise on) files without a partner."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    images = _listing(_find_subdir(root, "Images"))
    masks = _listing(_find_subdir(root, "Masks"))
    stems = sorted(images.keys() & masks.keys(), key=natural_key)
    scan = Scan(
        pairs=[Pair(s, images[s], masks[s]) for s in stems],
        images_only=sorted(images.keys() - masks.keys(), key=natural_key),
        masks_only=sorted(masks.keys() - images.keys(), key=natural_key),
    )
    if not scan.pairs:
        raise DataError(
            f"{root}: no image/mask pairs found ({len(images)} images, {len(masks)} masks; "
            f"extensions {', '.join(sorted(IMAGE_EXTS))})"
        )
    return scan


def read_image(path: Path, spec: DatasetSpec | None = None) -> tuple[np.ndarray, str | None]:
    """A (H, W, C) uint8 array with the dataset's channels, and a note when the file had to be converted.

    Read exactly as predict reads it (data/sources.py: bands by name, the value range of dataset.yaml or, by
    default, predict's rule by data type), so a file gives the model the same input in training and later."""
    from .sources import open_source

    spec = spec or DatasetSpec()
    source = open_source(path, len(spec.channels), None, spec.value_range or "auto", spec.channels)
    try:
        raw, _ = source.read(0, 0, source.height, source.width)
        pixels = source.to_uint8(raw)
    finally:
        source.close()
    if pixels.shape[2] != len(spec.channels):
        raise DataError(f"{path}: has {pixels.shape[2]} channel(s) but the dataset expects {len(spec.channels)} "
                        f"({', '.join(spec.channels)})")
    conversions = [n for n in source.notes if "converted" in n or "read as grey" in n]
    return pixels, (f"{path.name}: {conversions[0]}" if conversions else None)


def read_mask(path: Path, spec: DatasetSpec | None = None) -> np.ndarray:
    """Class indices (H, W) uint8: water (1) where grey > threshold by default, else per dataset.yaml."""
    spec = spec or DatasetSpec()
    if path.suffix.lower() == ".npy":
        raw = load_npy(path)
    else:
        img = open_image(path)
        if img.mode in HIGH_DEPTH_MODES:
            raw = np.asarray(img)
        elif not spec.binary and spec.classes[0].value is not None and img.mode in ("L", "P"):
            raw = np.asarray(img)  # grey values or palette indices
        elif not spec.binary and spec.classes[0].color is not None:
            raw = np.asarray(img.convert("RGB"))
        else:
            raw = np.asarray(img.convert("L"))
    return mask_to_classes(raw, spec, path)


def decode_pair(pair: Pair, size: int, spec: DatasetSpec | None = None) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Read, check and resize one pair: (image (S, S, C) uint8, class mask (S, S) uint8, note)."""
    image, note = read_image(pair.image, spec)
    mask = read_mask(pair.mask, spec)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} px but its image "
            f"{pair.image.name} is {image.shape[1]}x{image.shape[0]} px"
        )
    return resize_nearest(image, size), resize_nearest(mask, size), note


def median_chip_scale(paths: list[Path], size: int) -> float:
    """The median factor by which training resizes these images to size x size (geometric mean of both axes)."""
    factors = [np.sqrt(size * size / (h * w)) for h, w in map(image_shape, paths)]
    return float(np.median(factors)) if factors else 1.0
