"""Folders of images and masks (Kaggle layout: Images/ and Masks/, matched by file stem)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
MIN_SIDE = 2  # a chip smaller than this on either side carries no usable context


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
    stems = sorted(images.keys() & masks.keys(), key=_natural_key)
    scan = Scan(
        pairs=[Pair(s, images[s], masks[s]) for s in stems],
        images_only=sorted(images.keys() - masks.keys(), key=_natural_key),
        masks_only=sorted(masks.keys() - images.keys(), key=_natural_key),
    )
    if not scan.pairs:
        raise DataError(
            f"{root}: no image/mask pairs found ({len(images)} images, {len(masks)} masks; "
            f"extensions {', '.join(sorted(IMAGE_EXTS))})"
        )
    return scan


def _natural_key(stem: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)]


def _open(path: Path) -> Image.Image:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({_short(e)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({_short(e)})") from None
    if min(img.size) < MIN_SIDE:
        raise DataError(f"{path}: image is {img.size[0]}x{img.size[1]} px, smaller than {MIN_SIDE} px on a side")
    return img


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float arrays to 0..255 (8-bit arrays are returned as they are)."""
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer):
        top = 65535 if a.max(initial=0) > 255 else 255
        return (a.astype(np.float32) * (255.0 / top)).round().clip(0, 255).astype(np.uint8)
    return (np.nan_to_num(a.astype(np.float32)).clip(0, 1) * 255).round().astype(np.uint8)


def read_image(path: Path) -> tuple[np.ndarray, str | None]:
    """An RGB uint8 array (H, W, 3), and a note when the file's colour mode had to be converted."""
    img = _open(path)
    note = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        rgb = np.repeat(to_uint8(np.asarray(img))[..., None], 3, axis=2)
        return rgb, f"{path.name}: {img.mode} converted to 8-bit RGB"
    if img.mode != "RGB":
        if img.mode not in ("L", "P", "RGBA", "LA"):
            note = f"{path.name}: {img.mode} converted to RGB"
        img = img.convert("RGB")
    return np.asarray(img), note


def read_mask(path: Path, threshold: int = 128) -> np.ndarray:
    """A binary mask (H, W) uint8 in {0, 1}: grey value > threshold is water."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = to_uint8(np.asarray(img))
    else:
        grey = np.asarray(img.convert("L"))
    return (grey > threshold).astype(np.uint8)


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) or (H, W, C) uint8 array to size x size (as the seed did)."""
    mode = None if a.ndim == 3 else "L"
    return np.asarray(Image.fromarray(a, mode=mode).resize((size, size), Image.NEAREST))


def decode_pair(pair: Pair, size: int, threshold: int = 128) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Read, check and resize one pair: (image (S,S,3) uint8, mask (S,S) uint8, note)."""
    image, note = read_image(pair.image)
    mask = read_mask(pair.mask, threshold)
    if image.shape[:2] != mask.shape:
        raise DataError(
            f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} px but its image "
            f"{pair.image.name} is {image.shape[1]}x{image.shape[0]} px"
        )
    return resize_nearest(image, size), resize_nearest(mask, size), note
