"""Image files: opened with their sizes checked before decoding (decompression bombs), .npy arrays, nearest
resizing, and natural sort order."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, first_line

MIN_SIDE = 2  # a chip smaller than this on either side carries no usable context
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # PIL modes of 16/32-bit integer or float pixels


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
    """The image decoded, its size checked first (decompression bombs, at least MIN_SIDE px a side)."""
    img = _checked_header(path)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({first_line(e)})") from None
    return img


def read_rgb_jpeg(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 pixels of a colour JPEG decoded by simplejpeg, or None for anything else (then Pillow reads
    it, and says what is wrong with a broken file). The same pixels as Pillow (both libjpeg-turbo with the
    accurate DCT and smooth upsampling: identical on all 2841 water-bodies chips and the Earth Surface Water
    scenes), twice as fast, and without holding Python's lock, which Pillow's conversion to an array does.
    The file is read once: its header (size, colour space) comes from the same bytes."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return None
    check_not_empty(path)
    data = path.read_bytes()
    try:
        import simplejpeg

        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except Exception:  # noqa: BLE001 - not a JPEG simplejpeg reads: Pillow's path decides and reports it
        return None
    if colorspace not in ("YCbCr", "RGB") or exif_orientation(data) != 1:  # grey, CMYK, YCCK, turned: Pillow's path
        return None
    _check_size(path, w, h)
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
    except Exception:  # noqa: BLE001 - a broken file: Pillow's path reports it
        return None
    return pixels if pixels.shape == (h, w, 3) else None


def exif_orientation(data: bytes) -> int:
    """A JPEG's EXIF orientation tag (1: stored upright), looked up only when its bytes carry an EXIF block."""
    if b"Exif\x00\x00" not in data[:65536]:
        return 1
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - an unreadable EXIF block: the pixels are still the pixels
        return 1


def _checked_header(path: Path) -> Image.Image:
    """The image opened (header only) after checking that it is not empty and not too large to decode."""
    check_not_empty(path)
    try:
        img = open_header(path)
    except UnidentifiedImageError as e:
        raise DataError(f"{path}: not a readable image ({first_line(e)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({first_line(e)})") from None
    try:
        _check_size(path, *img.size)
    except DataError:
        img.close()
        raise
    return img


def _check_size(path: Path, w: int, h: int) -> None:
    """Refuse an image too large to decode (decompression bombs) or smaller than MIN_SIDE px a side."""
    limit = image_pixel_limit()
    if w * h > limit:  # refuse before a single pixel is decoded
        raise DataError(f"{path}: {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} that guards "
                        "against decompression bombs; if you trust the file, raise it with "
                        f"UNETSEG_MAX_IMAGE_PIXELS={w * h}, or make it a tiled GeoTIFF (read window by window)")
    if min(w, h) < MIN_SIDE:
        raise DataError(f"{path}: image is {w}x{h} px, smaller than {MIN_SIDE} px on a side")


def load_npy(path: Path) -> np.ndarray:
    check_not_empty(path)
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({first_line(e)})") from None
    if a.ndim not in (2, 3) or min(a.shape[:2]) < MIN_SIDE:
        raise DataError(f"{path}: expected an (H, W) or (H, W, C) array of at least {MIN_SIDE} px, found shape {a.shape}")
    return a


def resize_to(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W) or (H, W, C) by pixel centres (equals PIL's NEAREST)."""
    h, w = a.shape[:2]
    if (h, w) == (height, width):
        return a
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return a.take(rows, axis=0).take(cols, axis=1)  # take: 3x a[rows][:, cols] (0.07 against 0.21 ms, 128 px)


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to size x size, as every training chip is."""
    return resize_to(a, size, size)


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


