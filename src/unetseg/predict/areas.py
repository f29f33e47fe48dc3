"""True ground areas on the WGS84 ellipsoid, for any CRS: polygons, pixels, and a raster's ground resolution.

One rule everywhere (predict's summary and polygons, serve's reply): a shape's area is the area on the
ellipsoid of the shape whose outline runs through its vertices in longitude/latitude. By Green's theorem
that is the closed integral of A(lat) d(lon), where A(lat) is the ellipsoid's area between the equator and
`lat` per radian of longitude. The integral is exact for edges along parallels and meridians (the pixel
edges of a raster in a geographic CRS) and, for other edges, converges as they are cut shorter. So:

- polygons are cut into segments of at most `DENSIFY_PIXELS` pixels in the raster's CRS, taken to
  longitude/latitude, and integrated; holes are subtracted;
- pixels are measured in cells of up to 256 x 256 pixels (each cell's outline densified 4 times), and a
  pixel's area is its cell's area over the cell's pixel count; cells are made small enough (about 1 km)
  that the area of a pixel changes by less than 0.1% across one.

Rasters without a CRS are measured in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

WGS84_A, WGS84_F = 6378137.0, 1 / 298.257223563
DENSIFY_PIXELS = 64  # longest polygon segment (in pixels) before it is taken to longitude/latitude
CELL_METRES = 1000.0  # ground size of the cells in which pixel areas are measured
MAX_CELL = 256  # pixels
SUBDIVIDE = 4  # points per cell edge


def zone_area(lat_deg: np.ndarray, a: float = WGS84_A, f: float = WGS84_F) -> np.ndarray:
    """Square metres between the equator and `lat_deg` per radian of longitude, on the ellipsoid (a, f)."""
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    b2 = (a * (1 - f)) ** 2
    s = np.sin(np.radians(lat_deg))
    return b2 * (s / (2 * (1 - e2 * s * s)) + np.arctanh(e * s) / (2 * e))


def _wrap(dlon: np.ndarray) -> np.ndarray:
    """Longitude differences into [-180, 180): a segment never spans half the globe once densified."""
    return (dlon + 180.0) % 360.0 - 180.0


def _segment_terms(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """A(lat) d(lon) of each segment between consecutive points (trapezoid in A; exact along parallels)."""
    zone = zone_area(lat)
    return np.radians(_wrap(np.diff(lon))) * (zone[1:] + zone[:-1]) / 2


def lonlat_polygon_areas(geoms: np.ndarray) -> np.ndarray:
    """Ellipsoidal areas (m2) of polygons whose coordinates are longitude/latitude in degrees."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.zeros(0)
    rings, owner = shapely.get_rings(geoms, return_index=True)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    terms = _segment_terms(coords[:, 0], coords[:, 1])
    same = ring[1:] == ring[:-1]  # a segment joins two points of one ring (rings are closed)
    ring_area = np.abs(np.bincount(ring[1:][same], weights=terms[same], minlength=len(rings)))
    exterior = np.r_[True, owner[1:] != owner[:-1]]  # the first ring of each polygon is its exterior
    signed = np.where(exterior, ring_area, -ring_area)
    return np.maximum(np.bincount(owner, weights=signed, minlength=len(geoms)), 0.0)


def to_lonlat(crs: Any):
    """A function (N, 2) CRS coordinates -> (N, 2) WGS84 longitude/latitude, for shapely.transform."""
    from pyproj import Transformer

    tr = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)

    def apply(xy: np.ndarray) -> np.ndarray:
        lon, lat = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return apply


def pixel_to_crs(geoms: np.ndarray, transform: Any) -> np.ndarray:
    """Shapes in pixel coordinates (x right, y down) to the raster's CRS through its affine transform."""
    geoms = np.asarray(geoms, dtype=object)
    if transform is None or not len(geoms):
        return geoms
    a, b, c, d, e, f = tuple(transform)[:6]
    m = np.array([[a, b], [d, e]])
    return shapely.transform(geoms, lambda xy: xy @ m.T + np.array([c, f]))


@dataclass
class Measured:
    """Polygons measured: areas (m2, or pixels without a CRS) and the shapes in the raster's CRS and in WGS84."""

    areas: np.ndarray
    crs_geoms: np.ndarray
    lonlat_geoms: np.ndarray | None  # None without a CRS


def measure_polygons(pixel_geoms: list | np.ndarray, transform: Any, crs: Any) -> Measured:
    """Polygons traced in pixel coordinates, placed in the raster's CRS and measured on the ellipsoid."""
    geoms = np.asarray(pixel_geoms, dtype=object) if len(pixel_geoms) else np.zeros(0, dtype=object)
    crs_geoms = pixel_to_crs(geoms, transform)
    if crs is None:
        return Measured(shapely.area(geoms) if len(geoms) else np.zeros(0), crs_geoms, None)
    if not len(geoms):
        return Measured(np.zeros(0), crs_geoms, np.zeros(0, dtype=object))
    step = DENSIFY_PIXELS * math.sqrt(abs(transform[0] * transform[4] - transform[1] * transform[3]))
    bounds = shapely.bounds(crs_geoms)
    long = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]) > step  # may have a long edge
    dense = crs_geoms.copy()
    dense[long] = shapely.segmentize(crs_geoms[long], step)
    lonlat = shapely.transform(dense, to_lonlat(crs))
    return Measured(lonlat_polygon_areas(lonlat), crs_geoms, lonlat)


class PixelAreas:
    """Ground area of every pixel of a raster (m2), piecewise constant on cells; `water_area` sums a band.

    Without a CRS every pixel counts 1 (areas in pixels).
    """

    def __init__(self, height: int, width: int, transform: Any, crs: Any):
        self.height, self.width = height, width
        if crs is None or transform is None:
            self.step, self.cells, self.unit = max(height, width, 1), np.ones((1, 1)), "px"
            return
        self.unit = "m2"
        self.step = 1
        centre = self._cell_areas(transform, crs, (height // 2, width // 2), 1, 1, 1)[0, 0]
        gsd = math.sqrt(centre)
        self.step = int(min(MAX_CELL, max(1, CELL_METRES // max(gsd, 1e-9))))
        ny, nx = -(-height // self.step), -(-width // self.step)
        self.cells = self._cell_areas(transform, crs, (0, 0), ny, nx, self.step)
        counts_y = np.minimum(self.step, height - np.arange(ny) * self.step)
        counts_x = np.minimum(self.step, width - np.arange(nx) * self.step)
        self.cells = self.cells / (counts_y[:, None] * counts_x[None, :])

    def _cell_areas(self, transform: Any, crs: Any, origin: tuple[int, int], ny: int, nx: int,
                    step: int) -> np.ndarray:
        """(ny, nx) areas of cells of step x step pixels from `origin` (row, col), clipped to the raster."""
        k = SUBDIVIDE
        ys = np.minimum(origin[0] + np.arange(ny * k + 1) * (step / k), max(self.height, origin[0] + 1))
        xs = np.minimum(origin[1] + np.arange(nx * k + 1) * (step / k), max(self.width, origin[1] + 1))
        px, py = np.meshgrid(xs, ys)
        a, b, c, d, e, f = tuple(transform)[:6]
        xy = np.column_stack([(a * px + b * py + c).ravel(), (d * px + e * py + f).ravel()])
        ll = to_lonlat(crs)(xy)
        lon, lat = ll[:, 0].reshape(px.shape), ll[:, 1].reshape(px.shape)
        zone = zone_area(lat)
        h = np.radians(_wrap(np.diff(lon, axis=1))) * (zone[:, 1:] + zone[:, :-1]) / 2  # along rows
        v = np.radians(_wrap(np.diff(lon, axis=0))) * (zone[1:] + zone[:-1]) / 2  # along columns
        fine = np.abs(h[:-1] + v[:, 1:] - h[1:] - v[:, :-1])  # each small cell's outline, one way round
        return fine.reshape(ny, k, nx, k).sum(axis=(1, 3))

    @property
    def ground_resolution(self) -> float | None:
        """Metres per pixel (square root of a pixel's area) at the raster's centre; None without a CRS."""
        if self.unit != "m2":
            return None
        return float(math.sqrt(self.cells[self.cells.shape[0] // 2, self.cells.shape[1] // 2]))

    def area(self, y0: int, mask: np.ndarray) -> float:
        """Area of the True pixels of a band of rows starting at row y0 (m2, or pixels)."""
        if self.unit == "px":
            return float(np.count_nonzero(mask))
        rows = np.arange(y0, y0 + mask.shape[0]) // self.step
        edges = np.arange(0, self.width, self.step)
        per_cell = np.add.reduceat(mask, edges, axis=1, dtype=np.int32)  # (n rows, cells across)
        return float((per_cell * self.cells[rows]).sum())
