"""Water polygons from a mask streamed band by band, their areas, and GeoJSON / GeoPackage output.

Each band of rows is polygonised on its own (GDAL's polygonize through rasterio, 4-connected pixels);
pieces that touch the band's top edge are merged with the still-open pieces of the band above, so a
lake cut by band edges comes out as one polygon. Only pieces touching the newest band's bottom edge
are held back, so memory follows the width of the raster, not its area.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from ..errors import DataError, first_line

SUFFIXES = {"geojson": ".geojson", "gpkg": ".gpkg"}
VECTOR_CRS = ("auto", "wgs84", "raster")  # auto: GeoJSON in WGS84 (RFC 7946), GeoPackage in the raster's CRS


def _polygon(geojson: dict) -> shapely.Polygon:
    """A GeoJSON-like polygon from rasterio to shapely (vectorised rings: faster than shapely.geometry.shape)."""
    rings = [shapely.linearrings(np.asarray(r)) for r in geojson["coordinates"]]
    return shapely.Polygon(rings[0], rings[1:])


class Polygonizer:
    """Feed (first row, (n, W) bool) bands top to bottom; each call returns the polygons that are final.

    Bands are gathered to at least `rows` rows before polygonising (fewer cuts to merge).
    """

    def __init__(self, height: int, rows: int = 1024):
        self.height, self.rows = height, rows
        self.open: list[shapely.Polygon] = []  # pieces touching the last chunk's bottom edge
        self.chunk: list[np.ndarray] = []
        self.chunk_y0 = 0

    def add(self, y0: int, water: np.ndarray) -> list[shapely.Polygon]:
        if not self.chunk:
            self.chunk_y0 = y0
        self.chunk.append(water)
        n = sum(len(c) for c in self.chunk)
        if n < self.rows and y0 + len(water) < self.height:
            return []
        water = np.concatenate(self.chunk) if len(self.chunk) > 1 else self.chunk[0]
        self.chunk = []
        return self._polygonize(self.chunk_y0, water)

    def _polygonize(self, y0: int, water: np.ndarray) -> list[shapely.Polygon]:
        from affine import Affine
        from rasterio.features import shapes

        y1 = y0 + water.shape[0]
        pieces = [_polygon(g) for g, _ in shapes(water.view(np.uint8), mask=water, connectivity=4,
                                                 transform=Affine(1, 0, 0, 0, 1, y0))] if water.any() else []
        touching_top = [p for p in pieces if y0 > 0 and p.bounds[1] == y0]
        rest = [p for p in pieces if not (y0 > 0 and p.bounds[1] == y0)]
        if self.open and touching_top:
            merged = shapely.unary_union(self.open + touching_top)
            rest += list(getattr(merged, "geoms", [merged]))
        else:
            rest += self.open + touching_top
        self.open = [p for p in rest if y1 < self.height and p.bounds[3] == y1]
        return [p for p in rest if not (y1 < self.height and p.bounds[3] == y1)]

    def close(self) -> list[shapely.Polygon]:
        out = self._polygonize(self.chunk_y0, np.concatenate(self.chunk)) if self.chunk else []
        out += self.open
        self.chunk, self.open = [], []
        return out


class VectorWriter:
    """Polygons with an id and their area, appended in batches to a GeoPackage (pyogrio) or streamed to GeoJSON.

    `crs` is the CRS of the coordinates given to `add`: EPSG:4326 longitude/latitude gives RFC 7946 GeoJSON
    (no "crs" member, exterior rings counter-clockwise, 7 decimals: about 1 cm); any other CRS is named in
    the file's "crs" member as GDAL writes it. GeoJSON is written directly from shapely's GEOS writer:
    GDAL's GeoJSON driver took 1.9 s for 7,500 polygons that shapely.to_geojson turns out in 0.23 s.
    `shown` is the path named in error messages (the file is written under a temporary name).
    """

    def __init__(self, path: Path, kind: str, crs: Any, area_field: str, name: str = "water", batch: int = 2000,
                 shown: Path | None = None):
        self.path, self.kind, self.name, self.shown = path, kind, name, shown or path
        self.crs, self.area_field, self.batch = crs, area_field, batch
        self.wgs84 = crs is not None and crs.to_epsg() == 4326
        self.geoms: list = []
        self.values: list[float] = []
        self.count = 0
        self.closed = False
        self.file = None
        if kind == "geojson":
            self.file = open(path, "w")
            head: dict = {"type": "FeatureCollection", "name": name}
            if crs is not None and not self.wgs84:
                epsg = crs.to_epsg()
                head["crs"] = {"type": "name", "properties": {
                    "name": f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_string()}}
            self.file.write(json.dumps(head)[:-1] + ',\n"features": [\n')

    def add(self, geoms: np.ndarray, area: np.ndarray) -> None:
        self.geoms += list(geoms)
        self.values += list(area)
        if len(self.geoms) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.kind == "geojson":
            self._write_geojson()
        else:
            self._write_gpkg()
        self.geoms, self.values = [], []

    def _write_geojson(self) -> None:
        if not self.geoms:
            return
        geoms = np.array(self.geoms, dtype=object)
        if self.wgs84:
            geoms = shapely.transform(shapely.orient_polygons(geoms), lambda xy: np.round(xy, 7))
        for i, (text, value) in enumerate(zip(shapely.to_geojson(geoms), self.values)):
            sep = ",\n" if self.count + i else ""
            self.file.write(f'{sep}{{"type": "Feature", "properties": {{"id": {self.count + i + 1}, '
                            f'"{self.area_field}": {value:.2f}}}, "geometry": {text}}}')
        self.count += len(self.geoms)

    def _write_gpkg(self) -> None:
        from pyogrio.raw import write

        if not self.geoms and self.count:
            return
        n = len(self.geoms)  # with none at all, an empty layer: the file still says "no water"
        wkb = np.array(shapely.to_wkb(np.array(self.geoms, dtype=object)) if n else [], dtype=object)
        try:
            write(str(self.path), wkb, field_data=[np.arange(self.count + 1, self.count + n + 1, dtype=np.int64),
                                                   np.array(self.values, np.float64)],
                  fields=["id", self.area_field], crs=self.crs.to_wkt() if self.crs is not None else None,
                  geometry_type="Polygon", driver="GPKG", layer=self.name, append=self.path.exists())
        except Exception as e:  # pyogrio raises its own error types for every GDAL failure
            raise DataError(f"{self.shown}: could not write polygons ({first_line(e, 160)})") from None
        self.count += n

    def close(self) -> None:
        """Write what is left and finish the file; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        self.flush()
        if self.file is not None:
            self.file.write("\n]}\n")
            self.file.close()
            self.file = None
