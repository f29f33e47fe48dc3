"""Raw pixel values to the model's 0..255, one rule for training, evaluation, predict, serve and the API.

A value range (LO, HI) maps LO to 0 and HI to 255 (clipped; NaN to 0). Without one ('auto'), by data type:
8-bit as is; other integers as Sentinel-2 reflectance x 10000, 0..4000 (reflectance 0..0.4, the usual
true-colour stretch, which is what the water-bodies chips look like); floats as reflectance, 0..0.4.
"""

from __future__ import annotations

import functools

import numpy as np

# Sentinel-2 L1C/L2A store reflectance x 10000; true-colour renderings (Sentinel Hub, EO Browser) show
# reflectance 0..0.4 as 0..255, which is what the water-bodies chips look like.
S2_TRUE_COLOUR = (0.0, 4000.0)


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
