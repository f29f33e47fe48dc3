"""Inputs to segment, read window by window as the model's 8-bit channels plus a valid-pixel mask.

Plain images (JPG, PNG) are decoded whole with Pillow; TIFFs and GeoTIFFs are opened with rasterio and
never read whole. Band selection and the scaling of raw values to the 0..255 the model was trained on
happen here, so the tiling engine only ever sees (h, w, C) uint8 and (h, w) bool.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, first_line
from ..pixels import S2_TRUE_COLOUR, default_range, to_model_range
from .files import HIGH_DEPTH_MODES, check_not_empty, load_npy, natural_key, open_image, read_rgb_jpeg

PLAIN_EXTS = (".jpg", ".jpeg", ".png", ".npy")
# read with GDAL (rasterio) window by window; a file given by name is tried with GDAL whatever its suffix
RASTER_EXTS = (".tif", ".tiff", ".vrt", ".jp2", ".j2k", ".img")


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
    warnings: list[str] = field(default_factory=list)  # shown even under --quiet: the output is likely wrong

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    def read(self, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def valid_window(self, strip: int = 256) -> tuple[int, int, int, int] | None:
        """(row, column, height, width) of the smallest window holding every valid pixel; None if there is none.

        The tiles are laid over this window, so a no-data margin changes nothing for the valid pixels. Strips
        are read inwards from each edge until one holds a valid pixel, so the cost follows the margin's width
        (a scene with valid pixels on every edge costs four thin strips)."""
        if getattr(self, "all_valid", False):
            return 0, 0, self.height, self.width

        def first(length: int, window, axis: int, backwards: bool) -> int | None:
            """First (or last) index along one axis holding a valid pixel, reading `strip` lines at a time."""
            starts = range(0, length, strip)
            for s0 in (reversed(starts) if backwards else starts):
                n = min(strip, length - s0)
                hits = np.flatnonzero(window(s0, n).any(axis=axis))
                if hits.size:
                    return s0 + int(hits[-1] if backwards else hits[0])
            return None

        def rows(y0, n):
            return self.read(y0, 0, n, self.width)[1]

        r0 = first(self.height, rows, 1, False)
        if r0 is None:
            return None
        r1 = first(self.height, rows, 1, True)

        def cols(x0, n):
            return self.read(r0, x0, r1 - r0 + 1, n)[1]

        c0, c1 = first(self.width, cols, 0, False), first(self.width, cols, 0, True)
        return r0, c0, r1 - r0 + 1, c1 - c0 + 1

    def close(self) -> None:
        pass


CENTRE = 512  # data that is not 8-bit: its auto value range is judged from a central window this many px a side


def centre_window(height: int, width: int, side: int = CENTRE) -> tuple[int, int, int, int]:
    """(row, column, height, width) of the central window of at most side x side pixels."""
    h, w = min(side, height), min(side, width)
    return (height - h) // 2, (width - w) // 2, h, w


class ArraySource(Source):
    """An image in memory, (H, W) or (H, W, C) of any dtype: its values go to 0..255 by the value range ('auto':
    pixels.default_range by dtype, checked by sampled_range; 'percentile'; or (LO, HI)); NaN, `valid` False and
    pixels at `nodata` in every channel are no-data. One grey channel feeds an RGB model as red, green and blue, as
    training reads grey images."""

    def __init__(self, array: np.ndarray, channels: int, value_range: str | tuple[float, float] = "auto",
                 path: Path = Path("array"), valid: np.ndarray | None = None, nodata: float | None = None):
        a = np.asarray(array)
        a = a[..., None] if a.ndim == 2 else a
        if a.ndim != 3:
            raise DataError(f"{path}: expected an (H, W) or (H, W, C) image, got an array of shape {a.shape}")
        if nodata is not None:
            check_fill(path, a.dtype, nodata)
            data = (a != nodata).any(axis=-1)
            valid = data if valid is None else valid & data
        if a.shape[-1] == 1 and channels == 3:
            a = np.repeat(a, 3, axis=-1)
        if a.shape[-1] != channels:
            raise DataError(f"{path}: has {a.shape[-1]} channel(s) but the model needs {channels}")
        if np.issubdtype(a.dtype, np.floating):
            finite = np.isfinite(a).any(axis=-1)
            valid = finite if valid is None else valid & finite
        if value_range == "percentile":  # of the valid pixels' values, as a raster's (its no-data left out)
            values = a if valid is None else a[valid]
            values = values[np.isfinite(values)] if np.issubdtype(a.dtype, np.floating) else values.ravel()
            lo, hi = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
            value_range = (float(lo), float(max(hi, lo + 1e-6)))
        why, white = "", None
        if value_range == "auto" and a.dtype != np.uint8:
            y0, x0, h, w = centre_window(a.shape[0], a.shape[1])
            centre = a[y0:y0 + h, x0:x0 + w]
            sample = centre if valid is None else centre[valid[y0:y0 + h, x0:x0 + w]]
            value_range, why, white = sampled_range(sample, a.dtype)
        self.lo, self.hi = default_range(a.dtype) if value_range == "auto" else value_range
        self.array, self.valid = a, valid
        self.all_valid = valid is None or bool(valid.all())
        super().__init__(path, a.shape[0], a.shape[1], channels)
        if why:
            self.notes.append(f"values {self.lo:g}..{self.hi:g} -> 0..255{why}")
        if white:
            self.warnings.append(white)

    @property
    def pixels(self) -> np.ndarray:
        """The whole image as the model sees it, (H, W, C) uint8 (for overlays and figures)."""
        return self.to_uint8(self.array)

    def read(self, y0, x0, h, w):
        valid = np.ones((h, w), bool) if self.valid is None else self.valid[y0:y0 + h, x0:x0 + w]
        return self.array[y0:y0 + h, x0:x0 + w], valid

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return to_model_range(raw, self.lo, self.hi)

    def valid_window(self, strip: int = 256) -> tuple[int, int, int, int] | None:
        if self.valid is None:
            return 0, 0, self.height, self.width
        rows, cols = np.flatnonzero(self.valid.any(axis=1)), np.flatnonzero(self.valid.any(axis=0))
        if not rows.size:
            return None
        return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


class ImageSource(ArraySource):
    """A JPG or PNG decoded whole (colour JPEGs by simplejpeg, with Pillow's pixels; the rest by Pillow). Colour
    images as RGB, or as grey for a one-channel model (colour images converted, and said so); transparent
    pixels are no-data (an alpha channel at 0, and a PNG's transparent palette entries or colour key, tRNS);
    16-bit and float images as grey values through the value range, like a raster of that type."""

    def __init__(self, path: Path, channels: int, value_range: str | tuple[float, float] = "auto",
                 nodata: float | None = None):
        fast = read_rgb_jpeg(path) if channels == 3 else None
        if fast is not None:  # the common case (photos, the chips): no Pillow image at all
            super().__init__(fast, channels, value_range, path, None, nodata)
            return
        img = open_image(path)
        notes = []
        transparent = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        if (turn := img.getexif().get(0x0112, 1)) != 1:
            notes.append(f"EXIF orientation {turn} not applied: outputs follow the stored pixels (as GDAL and "
                         "NumPy read them), not a photo viewer's turned view")
        if img.mode in HIGH_DEPTH_MODES:
            array, valid = np.asarray(img), None
            notes.append(f"{img.mode} image read as grey values, mapped to 8-bit by the value range")
        elif channels == 1:
            if img.mode not in ("L", "LA", "1") and not (img.mode == "P" and _grey_palette(img)):
                notes.append(f"{img.mode} converted to grey (the model reads one channel)")
            valid = np.asarray(img.convert("RGBA"))[..., 3] > 0 if transparent else None
            array = np.asarray(img if img.mode == "L" else img.convert("L"))[..., None]
        else:
            if channels != 3:
                raise DataError(f"{path}: a {path.suffix.lower().lstrip('.').upper()} picture has at most 3 channels "
                                f"(red, green, blue) but the model needs {channels}: give it a GeoTIFF or .npy with them")
            if img.mode not in ("RGB", "L", "P", "RGBA", "LA", "PA"):
                notes.append(f"{img.mode} converted to RGB")
            if transparent:
                rgba = np.asarray(img.convert("RGBA"))
                array, valid = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3] > 0
            else:  # contiguous RGB: no alpha plane to carry, no strided copies later
                array, valid = np.asarray(img if img.mode == "RGB" else img.convert("RGB")), None
        super().__init__(array, channels, value_range, path, valid, nodata)
        self.notes += notes


def _grey_palette(img) -> bool:
    """A palette image whose colours are all greys (reading it as grey loses nothing)."""
    pal = np.asarray(img.getpalette() or [], np.int16).reshape(-1, 3)
    return bool(pal.size) and bool((pal.max(axis=1) == pal.min(axis=1)).all())


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


# What a band is, from GDAL's colour interpretation or its description (Sentinel-2 and Landsat 8/9 band
# names, STAC common names): the model's channel names are matched against these.
BAND_NAMES = {
    "blue": ("blue", "b2", "b02", "sr_b2"), "green": ("green", "b3", "b03", "sr_b3"),
    "red": ("red", "b4", "b04", "sr_b4"), "nir": ("nir", "nir08", "b8", "b08", "sr_b5"),
    "swir1": ("swir1", "swir16", "b11", "sr_b6"), "swir2": ("swir2", "swir22", "b12", "sr_b7"),
}
_BY_NAME = {alias: meaning for meaning, aliases in BAND_NAMES.items() for alias in aliases}


def band_meaning(colorinterp: str, description: str | None) -> str | None:
    """'red', 'green', 'blue', 'alpha', 'palette', 'nir', 'swir1', 'swir2' or None (unknown).

    The description wins over the colour interpretation, which GDAL sets to 'gray' for the first band of
    any multi-band file; a description like "B4 (red)" or "red" counts.
    """
    if description:
        for token in re.split(r"[^a-z0-9_]+", description.lower()):
            if token in _BY_NAME:
                return _BY_NAME[token]
    return colorinterp if colorinterp in ("red", "green", "blue", "alpha", "palette") else None


class RasterSource(Source):
    """Any raster GDAL reads (GeoTIFF, COG, VRT, JPEG 2000, ...) with rasterio, one window at a time: bands
    chosen by what they are, value scaling, no-data from nodata values, masks, alpha and NaN, palettes
    expanded to colours."""

    def __init__(self, path: Path, channels: int, bands: list[int] | None = None,
                 value_range: str | tuple[float, float] = "auto", names: tuple[str, ...] | None = None,
                 nodata: float | None = None):
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        check_not_empty(path)
        self.value_range = value_range  # as asked: another reader of the same file (a water index) follows it
        self.fill = nodata  # --nodata: a value that marks no-data besides what the file declares
        try:
            with warnings.catch_warnings():  # predict says it in its own words (see notes below)
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self.ds = rasterio.open(path)
        except RasterioIOError as e:
            suffix = path.suffix.lower()
            if suffix not in RASTER_EXTS:
                raise DataError(f"{path}: unsupported file type {suffix!r} (not a JPG or PNG, and GDAL cannot read "
                                f"it as a raster)") from None
            kind = "TIFF" if suffix in (".tif", ".tiff") else "raster"
            raise DataError(f"{path}: not a readable {kind} ({first_line(e)})") from None
        ds = self.ds
        self.palette: np.ndarray | None = None
        try:
            check_raster_size(path, ds.width, ds.height)
            meanings = [band_meaning(ci.name, d) for ci, d in zip(ds.colorinterp, ds.descriptions)]
            self.meanings = meanings  # every band's, in order (None: unknown)
            self.bands, how = choose_bands(path, meanings, list(ds.descriptions), channels, bands, names,
                                           ds.dtypes[0])
            dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
            if meanings[self.bands[0] - 1] == "palette" and bands is None:
                self.palette = _palette_table(ds)
                dtype = np.dtype(np.uint8)
            if nodata is not None:
                check_fill(path, np.dtype(ds.dtypes[self.bands[0] - 1]), nodata)
            self._no_data_rule(meanings, dtype)  # before the value range: its samples leave out what read() does
            lo_hi, why, white = value_range, "", None  # why: how auto chose, when not by the data type alone
            if value_range == "auto":
                declared = declared_scaling(ds, self.bands) if self.palette is None else None
                lo_hi = reflectance_range(*declared) if declared else default_range(dtype)
                if declared:
                    why = " (the file's scale %g and offset %g: reflectance %g..%g)" % (*declared,
                                                                                       *default_range(np.float32))
                elif dtype != np.uint8:
                    lo_hi, why, white = sampled_range(self._central_window(), dtype)
            elif value_range == "percentile":
                lo_hi = self._percentiles(path)
            self.lo, self.hi = lo_hi
        except BaseException:
            ds.close()
            raise
        transform = ds.transform if not ds.transform.is_identity else None
        super().__init__(path, ds.height, ds.width, channels, ds.crs, transform)
        self.notes.append(f"{how}, values {self.lo:g}..{self.hi:g} -> 0..255{why}")
        if white:
            self.warnings.append(white)
        if ds.crs is None:
            self.notes.append("no CRS: the mask keeps the pixel grid, polygons are in pixel units, areas in pixels")
        black = self._black_corners() if self.all_valid and dtype == np.uint8 else 0  # all_valid: no palette, no --nodata
        if black:
            self.notes.append(f"{black} of 4 corners 0 in every band, and no no-data declared: if that is fill around "
                              "the scene, not data, give --nodata 0 (else it is segmented, usually as dark water)")

    def _black_corners(self) -> int:
        """How many of the four corner pixels are 0 in every band read."""
        from rasterio.windows import Window

        h, w = self.ds.height, self.ds.width
        return sum(not self.ds.read(self.bands, window=Window(x, y, 1, 1)).any()
                   for y, x in {(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)})

    def _no_data_rule(self, meanings: list[str | None], dtype: np.dtype) -> None:
        """How read() tells no-data: nodata values, an alpha band, zero fill, GDAL's masks, or none."""
        from rasterio.enums import MaskFlags

        ds = self.ds
        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        # an alpha band masks the pixels whether or not GDAL's mask flags say so (an .aux.xml may name it)
        self.alpha = next((b for b in range(1, ds.count + 1) if meanings[b - 1] == "alpha"), None)
        # the file itself marks no pixel (no nodata value, mask, alpha or palette): read() needs no mask from GDAL
        self.file_valid = all(f == [MaskFlags.all_valid] for f in flags) and self.palette is None \
            and self.alpha is None
        self.nodata_values = None
        if all(f == [MaskFlags.nodata] for f in flags):
            self.nodata_values = np.array([ds.nodatavals[b - 1] for b in self.bands], dtype=ds.dtypes[self.bands[0] - 1])
        # no no-data declared, wider than 8 bits (reflectance, not a picture): a pixel 0 in every band read is the
        # fill a reprojection (gdalwarp, rasterio.warp) or Sentinel-2 itself leaves outside the data, not data
        self.zero_is_nodata = self.file_valid and zero_means_nodata(dtype)
        self.all_valid = self.file_valid and not self.zero_is_nodata and self.fill is None  # every pixel, surely

    def _kept_by_value(self, raw: np.ndarray) -> np.ndarray | None:
        """(h, w) pixels of raw (bands, h, w) that the values' own rules keep (zero fill, --nodata); None if no
        such rule applies."""
        keep = raw.any(axis=0) if self.zero_is_nodata else None
        if self.fill is not None:
            not_fill = (raw != self.fill).any(axis=0)
            keep = not_fill if keep is None else keep & not_fill
        return keep

    def _valid_values(self, **how: Any) -> np.ndarray:
        """The chosen bands' values that read() counts as valid, from ds.read(..., **how) (a window, a size)."""
        a = self.ds.read(self.bands, masked=True, **how)
        keep = self._kept_by_value(a.data)
        if keep is not None:
            a = np.ma.masked_array(a.data, np.ma.getmaskarray(a) | ~keep)
        return a.compressed()

    def _central_window(self) -> np.ndarray:
        """The chosen bands' valid values in the central window (centre_window)."""
        from rasterio.windows import Window

        y0, x0, h, w = centre_window(self.ds.height, self.ds.width)
        return self._valid_values(window=Window(x0, y0, w, h))

    def _percentiles(self, path: Path) -> tuple[float, float]:
        """2nd and 98th percentiles of the valid values, from a decimated read (at most 1024 px a side)."""
        ds = self.ds
        f = max(1, int(np.ceil(max(ds.height, ds.width) / 1024)))
        shape = (len(self.bands), max(1, ds.height // f), max(1, ds.width // f))
        values = self._valid_values(out_shape=shape).astype(np.float64)
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
            elif self.alpha is not None:
                valid = self.ds.read(self.alpha, window=win) > 0
            elif self.file_valid:
                valid = np.ones((h, w), bool)
            else:  # internal masks, alpha bands
                valid = (self.ds.read_masks(self.bands, window=win) > 0).any(axis=0)
        except RasterioIOError as e:
            raise DataError(f"{self.path}: unreadable block near row {y0}, column {x0} ({first_line(e)})") from None
        # GDAL's convention: a pixel is no-data only where every band says so
        if np.issubdtype(raw.dtype, np.floating):
            valid &= np.isfinite(raw).any(axis=0)
        if (keep := self._kept_by_value(raw)) is not None:
            valid &= keep
        if self.palette is not None:  # colour table: index -> RGB, and transparent entries are no-data
            rgba = self.palette[raw[0]]
            return rgba[..., :3], valid & (rgba[..., 3] > 0)
        pixels = np.moveaxis(raw, 0, -1)
        if pixels.shape[-1] < self.channels:  # one grey band for a colour model: as training reads grey images
            pixels = np.repeat(pixels, self.channels, axis=-1)
        return pixels, valid

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        return to_model_range(raw, self.lo, self.hi)

    def thumbnail(self, height: int, width: int) -> np.ndarray:
        """The model's view of the whole raster at height x width (nearest), as (h, w, C) uint8: for quicklooks."""
        raw = self.ds.read(self.bands, out_shape=(len(self.bands), height, width))
        if self.palette is not None:
            return self.palette[raw[0]][..., :3]
        pixels = np.moveaxis(raw, 0, -1)
        if pixels.shape[-1] < self.channels:
            pixels = np.repeat(pixels, self.channels, axis=-1)
        return self.to_uint8(pixels)

    def close(self) -> None:
        self.ds.close()


def _palette_table(ds) -> np.ndarray:
    """(256, 4) uint8 RGBA for each palette index of band 1 (entries the table lacks: transparent black)."""
    table = np.zeros((256, 4), np.uint8)
    for index, rgba in ds.colormap(1).items():
        if 0 <= index < 256:
            table[index] = rgba
    return table


def choose_bands(path: Path, meanings: list[str | None], descriptions: list[str | None], channels: int,
                 bands: list[int] | None, names: tuple[str, ...] | None, dtype: str) -> tuple[list[int], str]:
    """The bands that feed the model's channels (1-based), and how they were chosen, in words.

    In order: --bands as given (never an alpha band); the bands whose colour interpretation or description
    names each of the model's channels (red, green, blue; nir, ...); a palette, expanded to red, green, blue;
    all the bands when there are exactly as many as channels (in file order); one 8-bit grey band for an RGB
    model (as training reads grey images). Anything else is an error that says which bands there are.
    """
    count = len(meanings)

    def label(b: int) -> str:
        return descriptions[b - 1] or meanings[b - 1] or ""

    if bands is not None:
        bad = [b for b in bands if b > count]
        if bad:
            raise DataError(f"{path}: band {bad[0]} out of range (the file has {count} band(s))")
        alpha = [b for b in bands if meanings[b - 1] == "alpha"]
        if alpha:
            raise DataError(f"{path}: band {alpha[0]} is the alpha (transparency) band, not a colour; it is used as "
                            f"the no-data mask")
        if len(bands) != channels:
            raise DataError(f"{path}: --bands gives {len(bands)} band(s) but the model needs {channels}")
        return bands, f"bands {','.join(map(str, bands))} of {count} (--bands)"
    names = tuple(names or ())
    if len(names) == channels and all(n in BAND_NAMES for n in names):
        found = [[b for b in range(1, count + 1) if meanings[b - 1] == n] for n in names]
        if all(len(f) == 1 for f in found):
            picked = [f[0] for f in found]
            shown = ", ".join(f"{label(b) or b} as {n}" for b, n in zip(picked, names))
            return picked, f"bands {','.join(map(str, picked))} of {count} by their names ({shown})"
    if "palette" in meanings[:1] and channels == 3 and count == 1:
        return [1], "a palette image, its colour table expanded to red, green, blue"
    colour = [b for b in range(1, count + 1) if meanings[b - 1] != "alpha"]
    if len(colour) == channels:
        return colour, f"bands {','.join(map(str, colour))} of {count} in file order"
    if len(colour) == 1 and channels == 3 and np.dtype(dtype) == np.uint8:
        return colour, f"band {colour[0]}: one grey band used as red, green and blue (as training reads grey images)"
    wanted = ", ".join(names) if names else f"{channels} channel(s)"
    listing = ", ".join(f"{b}={label(b)}" for b in range(1, count + 1) if label(b))
    listing = f" ({listing})" if listing else ""
    if len(colour) > channels:
        example = ",".join(str(b) for b in colour[:channels])
        raise DataError(f"{path}: has {count} bands{listing} and their names do not say which are {wanted}; "
                        f"choose them with --bands (e.g. --bands {example})")
    raise DataError(f"{path}: has {len(colour)} colour band(s){listing} but the model needs {wanted}")


def sampled_range(values: np.ndarray, dtype: np.dtype) -> tuple[tuple[float, float], str, str | None]:
    """The auto value range of data that is not 8-bit, from a sample of its values; why, when the data type's
    rule (pixels.default_range) does not hold; and a warning when even so the model would see a white image
    (all_above). Reflectance never reaches 2 (about 1.5 at most), so floats with a 99th percentile above 2 are
    reflectance x 10000 (0..4000) or, none above 255, an 8-bit picture stored as floats (0..255); and 16-bit
    integers with a 99th percentile above 20000 are a 16-bit picture (0..65535 or the type's top), not
    reflectance x 10000."""
    dtype = np.dtype(dtype)
    values = values[np.isfinite(values)] if np.issubdtype(dtype, np.floating) else values.ravel()
    lo_hi, why = _range_of(values, dtype)
    return lo_hi, why, all_above(values, lo_hi[1])


def _range_of(values: np.ndarray, dtype: np.dtype) -> tuple[tuple[float, float], str]:
    """sampled_range's range and why, from the sample's finite values."""
    top = float(np.percentile(values, 99)) if values.size else 0.0
    if np.issubdtype(dtype, np.floating):
        if top <= 2:
            return default_range(dtype), ""
        if values.max() <= 255:
            return (0.0, 255.0), f" (float values up to {values.max():g}: an 8-bit picture, not reflectance 0..1)"
        return S2_TRUE_COLOUR, f" (float values up to {top:.0f}: reflectance x 10000, not 0..1)"
    if dtype.itemsize == 2 and top > 20000:
        return (0.0, float(np.iinfo(dtype).max)), f" (values up to {top:.0f}: a 16-bit picture, not reflectance x 10000)"
    return default_range(dtype), ""


def all_above(values: np.ndarray, top: float) -> str | None:
    """A warning when even the darkest 1% of a sample's finite values lies above the top of the auto value range,
    so that the model would see a white image: an encoding auto does not know (Landsat Collection 2 surface
    reflectance, 7273 at reflectance 0, in a file that does not declare its scale); else None."""
    if not values.size or (p1 := float(np.percentile(values, 1))) <= top:
        return None
    return (f"even its darkest values (1st percentile {p1:.6g}, central window) are above {top:g}, the top of the "
            f"auto value range, so the model would see a white image: another encoding? For Landsat Collection 2 "
            f"surface reflectance with no scale declared: --value-range 7273,21818; else --value-range percentile "
            f"or LO,HI")


def declared_scaling(ds, bands: list[int]) -> tuple[float, float] | None:
    """(scale, offset) that the chosen bands of an integer raster wider than 8 bits declare (GDAL's metadata:
    value x scale + offset = reflectance; Sentinel-2 L2A COGs from baseline 04.00 on: 0.0001, -0.1; Landsat
    Collection 2 surface reflectance: 2.75e-05, -0.2), when every band declares the same and it reads as
    reflectance (0 < scale <= 0.01); else None."""
    dtype = np.dtype(ds.dtypes[bands[0] - 1])
    if not np.issubdtype(dtype, np.integer) or dtype.itemsize == 1:
        return None
    pairs = {(float(ds.scales[b - 1]), float(ds.offsets[b - 1])) for b in bands}
    if len(pairs) != 1:
        return None
    scale, offset = pairs.pop()
    return (scale, offset) if 0 < scale <= 0.01 and np.isfinite(offset) else None


def reflectance_range(scale: float, offset: float) -> tuple[float, float]:
    """The stored values that hold the default reflectance range (that of float rasters) under scale and offset."""
    lo, hi = default_range(np.float32)
    return (lo - offset) / scale, (hi - offset) / scale


def zero_means_nodata(dtype: np.dtype) -> bool:
    """Whether a raster of this type with no no-data declared takes 0 in every band read as no-data: yes above
    8 bits (reflectance and other measurements, where such a pixel is a reprojection's or the sensor's fill), no
    for 8-bit pictures (a black pixel can be data)."""
    return np.dtype(dtype).itemsize > 1


def check_fill(path: Path, dtype: np.dtype, value: float) -> None:
    """Refuse a --nodata value that the file's values cannot take (300 or 0.5 in an 8-bit image): it would mark
    nothing, silently."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if value != int(value) or not info.min <= value <= info.max:
            raise DataError(f"{path}: --nodata {value:g} cannot occur in its {dtype} values ({info.min}..{info.max})")


def is_raster(path: Path) -> bool:
    """Read with GDAL window by window (anything but JPG, PNG and .npy), with raster outputs (GeoTIFF,
    polygons)."""
    return path.suffix.lower() not in PLAIN_EXTS


def open_source(path: Path, channels: int, bands: list[int] | None = None,
                value_range: str | tuple[float, float] = "auto", names: tuple[str, ...] | None = None,
                nodata: float | None = None) -> Source:
    """The one pixel reader, for training, evaluation, predict, serve and the API: Pillow for JPG and PNG, NumPy
    for .npy (H, W, C) arrays, GDAL for everything else."""
    if is_raster(path):
        return RasterSource(path, channels, bands, value_range, names, nodata)
    if bands:
        raise DataError(f"{path}: --bands applies to rasters (GeoTIFF, VRT, JPEG 2000, ...); a "
                        f"{path.suffix.lower()} image is read as it is")
    if path.suffix.lower() == ".npy":
        return ArraySource(load_npy(path), channels, value_range, path, nodata=nodata)
    return ImageSource(path, channels, value_range, nodata)


def _images_in(folder: Path, recursive: bool):
    """The image and raster files in a folder (or below it), hidden ones (or in hidden folders) left out."""
    for f in folder.rglob("*") if recursive else folder.iterdir():
        if f.suffix.lower() in PLAIN_EXTS + RASTER_EXTS and f.is_file() \
                and not any(part.startswith(".") for part in f.relative_to(folder).parts):
            yield f


def has_images_below(folder: Path) -> bool:
    """Whether a folder's subfolders hold any image (stops at the first; the folder's own files not looked at)."""
    return any(next(_images_in(d, True), None) is not None for d in folder.iterdir()
               if d.is_dir() and not d.name.startswith("."))


def collect_inputs(inputs: list[Path], recursive: bool = False) -> list[Path]:
    """Files as given, and the images in folders (with `recursive`, in their subfolders too), in natural order;
    a folder without any is an error."""
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(_images_in(p, recursive), key=lambda f: [natural_key(part) for part in
                                                                     f.relative_to(p).with_suffix("").parts])
            if not found:
                where = "this folder or its subfolders" if recursive else "this folder"
                hint = "; its subfolders have some: --recursive searches them" if not recursive and \
                    has_images_below(p) else ""
                raise DataError(f"{p}: no images in {where} (looked for {', '.join(PLAIN_EXTS + RASTER_EXTS)})"
                                f"{hint}")
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
