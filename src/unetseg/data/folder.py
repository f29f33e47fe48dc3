"""Folders of images and masks, matched by file stem: the Kaggle layout (Images/ and Masks/), or an image folder
with one folder of binary masks per class (the EPFL layout), optionally in sub-folders that are fixed parts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import HIGH_DEPTH_MODES, image_shape, load_npy, natural_key, open_image, resize_nearest
from .spec import IMAGE_FOLDERS, DatasetSpec, load_spec, mask_to_classes

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".npy"}


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path | tuple[Path, ...]  # class-folders layout: one binary mask per class, in the classes' order

    @property
    def mask_files(self) -> tuple[Path, ...]:
        return self.mask if isinstance(self.mask, tuple) else (self.mask,)


@dataclass
class Scan:
    """What a folder holds: complete pairs, plus the files that have no partner."""

    pairs: list[Pair]
    images_only: list[str] = field(default_factory=list)
    masks_only: list[str] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # stem -> train/val/test, for files in a fixed part
    matched_by: str | None = None  # how the names were paired, when not stem to stem

    def unpaired_message(self) -> str | None:
        parts = [self.matched_by] if self.matched_by else []
        for what, names, missing in [("image", self.images_only, "a mask"), ("mask", self.masks_only, "an image")]:
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                parts.append(f"{len(names)} {what}(s) without {missing} skipped: {shown}")
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


def scan_folder(root: str | Path, spec: DatasetSpec | None = None) -> Scan:
    """Pair Images/X.* with Masks/X.* (or each class folder's X.*) in the root or in each fixed part's folder;
    report (not raise on) images or masks without a partner. A class folder without one of the images is an
    error: a missing class mask cannot be told from a class that is absent."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    spec = spec or load_spec(root)
    if not spec.parts:
        scan = _scan_one(root, spec)
    else:
        scan = Scan([])
        seen: dict[str, str] = {}
        for part, sub in spec.parts:
            if not (root / sub).is_dir():
                raise DataError(f"{root / sub}: the {part} part's folder does not exist")
            one = _scan_one(root / sub, spec)
            for p in one.pairs:
                if p.stem in seen:
                    raise DataError(f"{p.image}: the file name {p.stem!r} is also in {seen[p.stem]}; rename one")
                seen[p.stem] = sub
                scan.parts[p.stem] = part
            scan.pairs += one.pairs
            scan.images_only += one.images_only
            scan.masks_only += one.masks_only
    for part, stems in spec.split:
        for stem in stems:
            scan.parts[stem] = part
    return scan


def _scan_one(root: Path, spec: DatasetSpec) -> Scan:
    if spec.folders:
        return _scan_class_folders(root, spec)
    images = _listing(_find_subdir(root, spec.images or "Images"))
    masks = _listing(_find_subdir(root, "Masks"))
    by_mask, matched_by = masks, None
    if len(images.keys() & masks.keys()) < min(len(images), len(masks)):  # e.g. 12_sat.jpg with 12_mask.png
        cut_i, cut_m = name_suffix(list(images)), name_suffix(list(masks))
        keyed_i = {s.removesuffix(cut_i): s for s in images}
        keyed_m = {s.removesuffix(cut_m): m for s, m in masks.items()}
        if len(keyed_i) == len(images) and len(keyed_m) == len(masks) and \
                len(keyed_i.keys() & keyed_m.keys()) > len(images.keys() & masks.keys()):
            by_mask = {keyed_i.get(k, k + cut_i): m for k, m in keyed_m.items()}
            said = " and ".join(f"{what} {cut!r}" for what, cut in (("images'", cut_i), ("masks'", cut_m)) if cut)
            matched_by = f"images and masks paired by name without the {said} suffix"
    stems = sorted(images.keys() & by_mask.keys(), key=natural_key)
    scan = Scan(
        pairs=[Pair(s, images[s], by_mask[s]) for s in stems],
        images_only=sorted(images.keys() - by_mask.keys(), key=natural_key),
        masks_only=sorted((by_mask[k].stem for k in by_mask.keys() - images.keys()), key=natural_key),
        matched_by=matched_by,
    )
    if not scan.pairs:
        raise DataError(
            f"{root}: no image/mask pairs found ({len(images)} images, {len(masks)} masks; "
            f"extensions {', '.join(sorted(IMAGE_EXTS))})"
        )
    return scan


def name_suffix(stems: list[str]) -> str:
    """The ending every name shares from a separator on (`_mask` of a_mask, b_mask), leaving each a non-empty
    name; '' when they share none."""
    if not stems:
        return ""
    shared = os.path.commonprefix([s[::-1] for s in stems])[::-1]
    shortest = min(len(s) for s in stems)
    for i, ch in enumerate(shared):
        if ch in "_-. " and len(shared) - i < shortest:
            return shared[i:]
    return ""


def _scan_class_folders(root: Path, spec: DatasetSpec) -> Scan:
    image_dir = root / spec.images if spec.images else next(
        (root / n for n in IMAGE_FOLDERS if (root / n).is_dir()), root / "slices")
    if not image_dir.is_dir():
        raise DataError(f"{root}: no image folder {image_dir.name}/ (the class-folders layout: an image folder "
                        "and one folder of masks per class)")
    images = _listing(image_dir)
    if not images:
        raise DataError(f"{image_dir}: no images (extensions {', '.join(sorted(IMAGE_EXTS))})")
    masks = []
    for c in spec.classes:
        folder = root / str(c.folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: the mask folder of class {c.name!r} does not exist")
        listing = _listing(folder)
        missing = sorted(images.keys() - listing.keys(), key=natural_key)
        if missing:
            raise DataError(f"{folder / images[missing[0]].name}: no mask of class {c.name!r} for the image "
                            f"{images[missing[0]].name}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                            else ""))
        extra = sorted(listing.keys() - images.keys(), key=natural_key)
        if extra:
            raise DataError(f"{listing[extra[0]]}: a mask of class {c.name!r} without an image in {image_dir}")
        masks.append(listing)
    stems = sorted(images, key=natural_key)
    return Scan(pairs=[Pair(s, images[s], tuple(m[s] for m in masks)) for s in stems])


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


def read_mask(path: Path | tuple[Path, ...], spec: DatasetSpec | None = None,
              notes: list[str] | None = None) -> np.ndarray:
    """Class indices (H, W) uint8: water (1) where grey > threshold by default (0/1 masks: where 1, said in
    `notes`), else per dataset.yaml; for the class-folders layout (a tuple of one mask per class) a bit set per
    pixel or exclusive classes."""
    spec = spec or DatasetSpec()
    if isinstance(path, tuple):
        return class_folder_mask(path, spec)
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
    return mask_to_classes(raw, spec, path, notes)


def class_folder_mask(paths: tuple[Path, ...], spec: DatasetSpec) -> np.ndarray:
    """One binary mask per class (above the threshold; anti-aliased edges are common) -> (H, W) uint8:
    multi-label: bit k set where class k is; priority: 0 background, else the first class of the priority
    order present (class i + 1 = priority[i]); one class: 0/1."""
    one = DatasetSpec(threshold=spec.threshold)  # each file read as a binary mask (read_mask's water rule)
    hits = []
    for path in paths:
        hit = read_mask(path, one) == 1
        if hits and hit.shape != hits[0].shape:
            raise DataError(f"{path}: mask is {hit.shape[1]}x{hit.shape[0]} px but the mask of class "
                            f"{spec.classes[0].name!r} ({paths[0].name}) is {hits[0].shape[1]}x{hits[0].shape[0]} px")
        hits.append(hit)
    if len(hits) == 1:
        return hits[0].astype(np.uint8)
    if spec.multilabel:
        out = np.zeros(hits[0].shape, np.uint8)
        for k, hit in enumerate(hits):
            out |= hit.astype(np.uint8) << k
        return out
    names = [c.name for c in spec.classes]
    out = np.zeros(hits[0].shape, np.uint8)
    for i, name in reversed(list(enumerate(spec.priority_order))):  # the first in the order is written last
        out[hits[names.index(name)]] = i + 1
    return out


def decode_pair(pair: Pair, size: int, spec: DatasetSpec | None = None) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Read, check and resize one pair: (image (S, S, C) uint8, class mask (S, S) uint8, note); size 0 keeps the
    image's own size."""
    image, note = read_image(pair.image, spec)
    notes: list[str] = []
    mask = read_mask(pair.mask, spec, notes)
    note = "; ".join(n for n in [note, *notes] if n) or None
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"{pair.mask_files[0]}: mask is {mask.shape[1]}x{mask.shape[0]} px but its image "
            f"{pair.image.name} is {image.shape[1]}x{image.shape[0]} px"
        )
    if not size:
        return image, mask, note
    return resize_nearest(image, size), resize_nearest(mask, size), note


def median_chip_scale(paths: list[Path], size: int) -> float:
    """The median factor by which training resizes these images to size x size (geometric mean of both axes)."""
    factors = [np.sqrt(size * size / (h * w)) for h, w in map(image_shape, paths)]
    return float(np.median(factors)) if factors else 1.0
