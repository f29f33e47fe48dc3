"""Folders of images and masks (Kaggle layout: Images/ and Masks/, matched by file stem)."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, first_line
from .spec import DatasetSpec, mask_to_classes

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".npy"}
MIN_SIDE = 2  # a chip smaller than this on either side carries no usable context
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # PIL modes of 16/32-bit integer or float pixels


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


def natural_key(stem: str) -> list:
    """water_body_2 before water_body_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)]


def check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


PILLOW_PIXEL_LIMIT: int = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit
_HEADER_LOCK = threading.Lock()


def image_pixel_limit() -> int:
    """Largest image (in pixels) decoded whole: Pillow's decompression-bomb limit, or UNETSEG_MAX_IMAGE_PIXELS."""
    value = os.environ.get("UNETSEG_MAX_IMAGE_PIXELS", "")
    try:
        return int(value) if value else PILLOW_PIXEL_LIMIT
    except ValueError:
        raise DataError(f"UNETSEG_MAX_IMAGE_PIXELS={value!r}: not a whole number of pixels") from None


def open_header(path: Path) -> Image.Image:
    """Image.open (which reads the header only) without Pillow's own size check: callers check the size.
    Pillow keeps its limit in a module global, so it is lifted under a lock (the server opens from many threads)."""
    with _HEADER_LOCK:
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def open_image(path: Path) -> Image.Image:
    check_not_empty(path)
    limit = image_pixel_limit()
    try:
        img = open_header(path)
        w, h = img.size
        if w * h > limit:  # refuse before a single pixel is decoded
            raise DataError(f"{path}: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} that guards "
                            "against decompression bombs; if you trust the file, raise it with "
                            f"UNETSEG_MAX_IMAGE_PIXELS={w * h}, or make it a tiled GeoTIFF (read window by window)")
        img.load()
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image ({first_line(e)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({first_line(e)})") from None
    if min(img.size) < MIN_SIDE:
        raise DataError(f"{path}: image is {img.size[0]}x{img.size[1]} px, smaller than {MIN_SIDE} px on a side")
    return img


def to_uint8(a: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Scale to 0..255: `max_value` maps to 255 (default: 255 for 8-bit, 65535 for 16-bit data above 255, 1.0 for floats)."""
    if a.dtype == np.uint8 and max_value in (None, 255):
        return a
    if max_value is None:
        if np.issubdtype(a.dtype, np.integer):
            max_value = 65535 if a.max(initial=0) > 255 else 255
        else:
            max_value = 1.0
    return (np.nan_to_num(a.astype(np.float32)) * (255.0 / max_value)).round().clip(0, 255).astype(np.uint8)


def _load_npy(path: Path) -> np.ndarray:
    check_not_empty(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({first_line(e)})") from None
    if a.ndim not in (2, 3) or min(a.shape[:2]) < MIN_SIDE:
        raise DataError(f"{path}: expected an (H, W) or (H, W, C) array of at least {MIN_SIDE} px, found shape {a.shape}")
    return a


def _load_bands(path: Path) -> np.ndarray:
    """All bands of a (multi-band) TIFF as (H, W, C), with rasterio."""
    import rasterio
    from rasterio.errors import RasterioIOError

    check_not_empty(path)
    try:
        with rasterio.open(path) as src:
            a = src.read()
    except RasterioIOError as e:
        raise DataError(f"{path}: not a readable TIFF ({first_line(e)})") from None
    return np.moveaxis(a, 0, -1)


def read_image(path: Path, spec: DatasetSpec | None = None) -> tuple[np.ndarray, str | None]:
    """A (H, W, C) uint8 array with the dataset's channel count, and a note when the file had to be converted."""
    spec = spec or DatasetSpec()
    n = len(spec.channels)
    note = None
    if path.suffix.lower() == ".npy" or (n != 3 and path.suffix.lower() in (".tif", ".tiff")):
        a = _load_npy(path) if path.suffix.lower() == ".npy" else _load_bands(path)
        a = a[..., None] if a.ndim == 2 else a
    else:
        img = open_image(path)
        if img.mode in HIGH_DEPTH_MODES:
            a = np.repeat(np.asarray(img)[..., None], 3, axis=2)
            note = f"{path.name}: {img.mode} converted to 8-bit RGB"
        else:
            if img.mode not in ("RGB", "L", "P", "RGBA", "LA"):
                note = f"{path.name}: {img.mode} converted to RGB"
            a = np.asarray(img.convert("RGB"))
    if a.shape[2] != n:
        raise DataError(f"{path}: has {a.shape[2]} channel(s) but the dataset expects {n} ({', '.join(spec.channels)})")
    return to_uint8(a, spec.max_value), note


def read_mask(path: Path, spec: DatasetSpec | None = None) -> np.ndarray:
    """Class indices (H, W) uint8: water (1) where grey > threshold by default, else per dataset.yaml."""
    spec = spec or DatasetSpec()
    if path.suffix.lower() == ".npy":
        raw = _load_npy(path)
    else:
        img = open_image(path)
        if img.mode in HIGH_DEPTH_MODES:
            raw = to_uint8(np.asarray(img)) if spec.binary else np.asarray(img)
        elif not spec.binary and spec.classes[0].value is not None and img.mode in ("L", "P"):
            raw = np.asarray(img)  # grey values or palette indices
        elif not spec.binary and spec.classes[0].color is not None:
            raw = np.asarray(img.convert("RGB"))
        else:
            raw = np.asarray(img.convert("L"))
    return mask_to_classes(raw, spec, path)


def resize_to(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W) or (H, W, C) by pixel centres (equals PIL's NEAREST)."""
    h, w = a.shape[:2]
    if (h, w) == (height, width):
        return a
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return np.ascontiguousarray(a[rows][:, cols])


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to size x size, as every training chip is."""
    return resize_to(a, size, size)


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


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, without decoding the pixels."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[:2])  # type: ignore[return-value]
    if suffix in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            return src.height, src.width
    with open_header(path) as img:
        return img.size[1], img.size[0]


def median_chip_scale(paths: list[Path], size: int) -> float:
    """The median factor by which training resizes these images to size x size (geometric mean of both axes)."""
    factors = [np.sqrt(size * size / (h * w)) for h, w in map(image_shape, paths)]
    return float(np.median(factors)) if factors else 1.0
