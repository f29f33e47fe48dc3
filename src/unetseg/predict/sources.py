"""Inputs to segment, read window by window as the model's 8-bit channels plus a valid-pixel mask.

Plain images (JPG, PNG) are decoded whole with Pillow; TIFFs and GeoTIFFs are opened with rasterio and
never read whole. Band selection and the scaling of raw values to the 0..255 the model was trained on
happen here, so the tiling engine only ever sees (h, w, C) uint8 and (h, w) bool.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.errors import DataError, first_line
from ..data.folder import _open, check_not_empty

PLAIN_EXTS = (".jpg", ".jpeg", ".png")
RASTER_EXTS = (".tif", ".tiff")
# Sentinel-2 L1C/L2A store reflectance x 10000; true-colour renderings (Sentinel Hub, EO Browser) show
# reflectance 0..0.4 as 0..255, which is what the water-bodies chips look like.
S2_TRUE_COLOUR = (0.0, 4000.0)


def parse_bands(text: str | None) -> list[int] | None:
    """'4,3,2' -> [4, 3, 2] (1-based band numbers, as GDAL counts them)."""
    if not text:
        return None
    try:
        bands = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise ValueError(f"--bands {text!r}: expected band numbers separated by commas, e.g. 4,3,2") from None
    if not bands or min(bands) < 1:
        raise ValueError(f"--bands {text!r}: band numbers start at 1")
    return bands


def parse_value_range(text: str) -> str | tuple[float, float]:
    """'auto', 'percentile' or 'LO,HI' (raw values mapped to 0 and 255)."""
    if text in ("auto", "percentile"):
        return text
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--value-range {text!r}: expected auto, percentile or LO,HI (e.g. 0,4000)") from None
    if not hi > lo:
        raise ValueError(f"--value-range {text!r}: HI must be greater than LO")
    return lo, hi


def default_range(dtype: np.dtype) -> tuple[float, float]:
    """8-bit data as is; other integers as Sentinel-2 reflectance x 10000; floats as reflectance 0..1."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 0.0, 255.0
    if np.issubdtype(dtype, np.integer):
        return S2_TRUE_COLOUR
    return S2_TRUE_COLOUR[0] / 10000, S2_TRUE_COLOUR[1] / 10000


def to_model_range(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Raw values to uint8: lo -> 0, hi -> 255, clipped; NaN -> 0. 8/16-bit integers go through a lookup table."""
    if a.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return a
    if a.dtype in (np.uint8, np.uint16, np.int16):
        return _lookup_table(a.dtype.str, lo, hi)[a.view(np.uint16 if a.dtype == np.int16 else a.dtype)]
    scaled = (a.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
    return np.nan_to_num(scaled).clip(0, 255).round().astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _lookup_table(dtype: str, lo: float, hi: float) -> np.ndarray:
    """uint8 output for every possible raw value (indexed by the raw bits; int16 via its uint16 view)."""
    dt = np.dtype(dtype)
    raw = np.arange(2 ** (8 * dt.itemsize), dtype=np.int64)
    if dt == np.int16:
        raw = raw.astype(np.uint16).view(np.int16).astype(np.int64)
    return to_model_range(raw.astype(np.float64), lo, hi)


@dataclass
class Source:
    """Common description of an input.

    `read` returns the raw window ((h, w, C), the file's own values) and its (h, w) bool valid mask;
    `to_uint8` maps raw values to the model's 0..255 (done after resizing, on fewer pixels).
    """

    path: Path
    height: int
    width: int
    channels: int
    crs: Any = None  # rasterio CRS or None
    transform: Any = None  # affine.Affine or None (pixel grid)
    notes: list[str] = field(default_factory=list)

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    def read(self, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def close(self) -> None:
        pass


class ImageSource(Source):
    """A JPG or PNG decoded whole (RGB); transparent pixels (alpha 0) are no-data."""

    def __init__(self, path: Path, channels: int):
        img = _open(path)
        if channels != 3:
            raise DataError(f"{path}: a {img.mode} image has RGB colours but the model needs {channels} channels "
                            f"(use a GeoTIFF with --bands)")
        rgba = np.asarray(img.convert("RGBA"))
        self.pixels = np.ascontiguousarray(rgba[..., :3])
        self.valid = rgba[..., 3] > 0 if img.mode in ("RGBA", "LA", "PA") else np.ones(rgba.shape[:2], bool)
        super().__init__(path, rgba.shape[0], rgba.shape[1], 3)

    def read(self, y0, x0, h, w):
        return self.pixels[y0:y0 + h, x0:x0 + w], self.valid[y0:y0 + h, x0:x0 + w]


DEFAULT_MAX_RASTER_PIXELS = 40_000_000_000  # 200,000 px square: 330 Sentinel-2 tiles; streamed, so memory is not it


def check_raster_size(path: Path, width: int, height: int) -> None:
    """Refuse rasters larger than UNETSEG_MAX_RASTER_PIXELS: such headers are corrupt or hostile far more often than
    real, and the outputs alone would fill a disk."""
    import os

    value = os.environ.get("UNETSEG_MAX_RASTER_PIXELS", "")
    try:
        limit = int(value) if value else DEFAULT_MAX_RASTER_PIXELS
    except ValueError:
        raise DataError(f"UNETSEG_MAX_RASTER_PIXELS={value!r}: not a whole number of pixels") from None
    if width * height > limit:
        raise DataError(f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of {limit:,}; if the "
                        f"raster is real, raise it with UNETSEG_MAX_RASTER_PIXELS={width * height}")


class RasterSource(Source):
    """A (Geo)TIFF read with rasterio one window at a time: band choice, value scaling, no-data masks."""

    def __init__(self, path: Path, channels: int, bands: list[int] | None = None,
                 value_range: str | tuple[float, float] = "auto"):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        check_not_empty(path)
        try:
            with warnings.catch_warnings():  # predict says it in its own words (see notes below)
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(path)
        except RasterioIOError as e:
            raise DataError(f"{path}: not a readable TIFF ({first_line(e)})") from None
        ds = self.ds
        try:
            check_raster_size(path, ds.width, ds.height)
            self.bands = self._choose_bands(path, ds.count, channels, bands)
            dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
            lo_hi = value_range
            if value_range == "auto":
                lo_hi = default_range(dtype)
            elif value_range == "percentile":
                lo_hi = self._percentiles(path)
            self.lo, self.hi = lo_hi
        except BaseException:
            ds.close()
            raise
        from rasterio.enums import MaskFlags

        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        self.all_valid = all(f == [MaskFlags.all_valid] for f in flags)
        self.nodata_values = None
        if all(f == [MaskFlags.nodata] for f in flags):
            self.nodata_values = np.array([ds.nodatavals[b - 1] for b in self.bands], dtype=dtype)
        transform = ds.transform if not ds.transform.is_identity else None
        super().__init__(path, ds.height, ds.width, channels, ds.crs, transform)
        self.notes.append(f"bands {','.join(map(str, self.bands))} of {ds.count} ({dtype}), values "
                          f"{self.lo:g}..{self.hi:g} -> 0..255")
        if ds.crs is None:
            self.notes.append("no CRS: the mask keeps the pixel grid, polygons are in pixel units, areas in pixels")

    @staticmethod
    def _choose_bands(path: Path, count: int, channels: int, bands: list[int] | None) -> list[int]:
        if bands is None:
            if count == channels:
                return list(range(1, channels + 1))
            hint = " (e.g. --bands 4,3,2 for Sentinel-2 red, green, blue)" if channels == 3 else ""
            raise DataError(f"{path}: has {count} band(s) but the model needs {channels}; choose them with "
                            f"--bands{hint}")
        bad = [b for b in bands if b > count]
        if bad:
            raise DataError(f"{path}: band {bad[0]} out of range (the file has {count} band(s))")
        if len(bands) != channels:
            raise DataError(f"{path}: --bands gives {len(bands)} band(s) but the model needs {channels}")
        return bands

    def _percentiles(self, path: Path) -> tuple[float, float]:
        """2nd and 98th percentiles of the valid values, from a decimated read (at most 1024 px a side)."""
        ds = self.ds
        f = max(1, int(np.ceil(max(ds.height, ds.width) / 1024)))
        shape = (len(self.bands), max(1, ds.height // f), max(1, ds.width // f))
        a = ds.read(self.bands, out_shape=shape, masked=True).astype(np.float64)
        values = a.compressed()
        values = values[np.isfinite(values)]
        if not values.size:
            raise DataError(f"{path}: every pixel is no-data; nothing to segment")
        lo, hi = np.percentile(values, [2, 98])
        return float(lo), float(max(hi, lo + 1e-6))

    def read(self, y0, x0, h, w):
        from rasterio.errors import RasterioIOError
        from rasterio.windows import Window

        win = Window(x0, y0, w, h)
        try:
            raw = self.ds.read(self.bands, window=win)
            if self.nodata_values is not None:  # cheaper than read_masks, which reads the bands again
                valid = (raw != self.nodata_values[:, None, None]).any(axis=0)
            elif self.all_valid:
                valid = np.ones((h, w), bool)
            else:  # internal masks, alpha bands
                valid = (self.ds.read_masks(self.bands, window=win) > 0).any(axis=0)
        except RasterioIOError as e:
            raise DataError(f"{self.path}: unreadable block near row {y0}, column {x0} ({first_line(e)})") from None
        # GDAL's convention: a pixel is no-data only where every band says so
        if np.issubdtype(raw.dtype, np.floating):
            valid &= np.isfinite(raw).any(axis=0)
        return np.moveaxis(raw, 0, -1), valid

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return to_model_range(raw, self.lo, self.hi)

    def close(self) -> None:
        self.ds.close()


def open_source(path: Path, channels: int, bands: list[int] | None = None,
                value_range: str | tuple[float, float] = "auto") -> Source:
    """The right reader for the file's type."""
    suffix = path.suffix.lower()
    if suffix in RASTER_EXTS:
        return RasterSource(path, channels, bands, value_range)
    if suffix in PLAIN_EXTS:
        if bands:
            raise DataError(f"{path}: --bands applies to TIFFs; a {suffix} image is read as RGB")
        return ImageSource(path, channels)
    raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(PLAIN_EXTS + RASTER_EXTS)})")


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, and the images in folders (not recursive, natural order); an empty folder is an error."""
    from ..data.folder import _natural_key

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in PLAIN_EXTS + RASTER_EXTS), key=lambda f: _natural_key(f.stem))
            if not found:
                raise DataError(f"{p}: no images in this folder (looked for {', '.join(PLAIN_EXTS + RASTER_EXTS)})")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    stems = [f.stem for f in files]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup:
        raise DataError(f"two inputs are named {dup!r} ({', '.join(str(f) for f in files if f.stem == dup)}); "
                        f"their outputs would collide: predict them into separate --out folders")
    return files
