"""`unetseg predict`: a trained run over files and folders, to masks, overlays, polygons and a summary."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable


from ..checkpoint import load_checkpoint, resolve_checkpoint
from ..config import ModelConfig, PredictConfig, Recipe
from ..data.errors import DataError
from ..data.folder import median_chip_scale, scan_folder
from ..io import atomic_path, check_new_file, output_file, write_csv_atomic, write_text_atomic
from ..runtime import Runtime
from ..compiled import maybe_compile, warmup_seconds
from .engine import Segmenter, Stats
from .outputs import ArrayCollector, Counts, GeoTiffWriter, class_map, mask_png, overlay_png, probability_png
from .sources import RasterSource, Source, collect_inputs, open_source
from .vectors import SUFFIXES, Polygonizer, VectorWriter, areas, to_crs_coordinates

GDAL_CACHE_MB = 64
SUMMARY_FIELDS = ["input", "kind", "width", "height", "crs", "scale", "tiles", "seconds", "tiles_per_s",
                  "valid_pixels", "nodata_pixels", "water_pixels", "water_fraction", "water_area", "area_unit",
                  "polygons", "outputs", "error"]


def training_scale(run_dir: Path, info: dict, image_size: int) -> tuple[float, str]:
    """The run's median chip resize factor: from run.json, else measured on its training files if present."""
    if info.get("chip_scale"):
        return float(info["chip_scale"]), "the run's median training-chip resize factor"
    split_file, data = run_dir / "split.json", Path(info.get("data", ""))
    if split_file.exists() and data.is_dir():
        train = set(json.loads(split_file.read_text())["train"])
        paths = [p.image for p in scan_folder(data).pairs if p.stem in train]
        if paths:
            return median_chip_scale(paths, image_size), "the median training-chip resize factor (measured now)"
    return 1.0, "1.0: the run records no training scale and its data is not here"


def _scale_for(cfg: PredictConfig, source: Source, image_size: int, auto: float) -> tuple[float, float]:
    if cfg.scale == "fit":
        return image_size / source.height, image_size / source.width
    s = auto if cfg.scale == "auto" else float(cfg.scale)
    return s, s


def output_paths(file: Path, out: Path, cfg: PredictConfig) -> dict[str, Path]:
    """Where each output of one input goes: OUT/<stem>_mask.tif and _water.geojson, or _mask.png and friends."""
    if file.suffix.lower() in (".tif", ".tiff"):
        names = {"mask": "_mask.tif", "vectors": f"_water{SUFFIXES[cfg.vectors]}" if cfg.vectors != "none" else ""}
    else:
        names = {"mask": "_mask.png", "overlay": "_overlay.png", "probability": "_probability.png" if cfg.probabilities
                 else ""}
    return {kind: output_file(out, file.stem + suffix) for kind, suffix in names.items() if suffix}


class Predictor:
    """A loaded run and the settings; `one` segments a file and returns its summary row."""

    def __init__(self, run_dir: Path, cfg: PredictConfig, rt: Runtime, progress: bool = True,
                 log: Callable[[str], None] = print):
        cfg.check()
        info_path = Path(run_dir) / "run.json"
        weights = resolve_checkpoint(run_dir, cfg.checkpoint)
        model, ck = load_checkpoint(weights, rt.device)
        if cfg.engine == "onnxruntime":
            from ..export import load_exported

            model = load_exported(Path(run_dir), cfg.checkpoint)
        model = maybe_compile(model, cfg.compile, log)
        info = json.loads(info_path.read_text()) if info_path.exists() else {"recipe": ck["recipe"]}
        recipe = Recipe.from_dict(info["recipe"])
        self.run_info, self.recipe = info, recipe
        self.model_cfg: ModelConfig = recipe.model
        self.image_size = recipe.image_size
        self.class_names = info.get("spec", {}).get("class_names") or ["background", "water"]
        self.water = self.class_names.index("water") if "water" in self.class_names else 1
        self.auto_scale, how = training_scale(Path(run_dir), info, self.image_size)
        self.cfg, self.rt, self.progress, self.log = cfg, rt, progress, log
        self.segmenter = Segmenter(model, rt, self.model_cfg.num_classes, cfg.tile, cfg.overlap, cfg.batch_size,
                                   cfg.blend, cfg.tta)
        self.tags = {"unetseg_run": str(Path(run_dir).resolve()), "unetseg_checkpoint": weights.name,
                     "unetseg_engine": cfg.engine,
                     "unetseg_threshold": str(cfg.threshold)}
        if cfg.scale == "auto":
            log(f"scale {self.auto_scale:.3f} (auto: {how}; see docs/predict.md)")

    def one(self, file: Path, out: Path) -> dict:
        source = open_source(file, self.model_cfg.in_channels, self.cfg.bands, self.cfg.value_range)
        try:
            scale = self.scale_for(source)
            for note in source.notes:
                self.log(f"{file.name}: {note}")
            paths = output_paths(file, out, self.cfg)
            row = {"input": str(file), "kind": "raster" if isinstance(source, RasterSource) else "image",
                   "width": source.width, "height": source.height,
                   "crs": source.crs.to_string() if source.crs is not None else "",
                   "scale": round(scale[0], 4) if scale[0] == scale[1] else f"{scale[0]:.4f}x{scale[1]:.4f}"}
            if isinstance(source, RasterSource):
                row.update(self._raster(source, scale, paths))
            else:
                row.update(self._image(source, scale, paths))
        finally:
            source.close()
        row["outputs"] = " ".join(str(p) for p in paths.values())
        return row

    def _finish(self, file: Path, stats: Stats, counts: Counts) -> dict:
        if counts.valid == 0:
            raise DataError(f"{file}: every pixel is no-data; nothing to segment (no outputs written)")
        water = int(counts.per_class[self.water])
        return {"tiles": stats.tiles, "seconds": round(stats.seconds, 2),
                "tiles_per_s": round(stats.tiles / max(stats.seconds, 1e-9), 2), "valid_pixels": counts.valid,
                "nodata_pixels": counts.nodata, "water_pixels": water,
                "water_fraction": round(water / counts.valid, 6)}

    def scale_for(self, source: Source) -> tuple[float, float]:
        return _scale_for(self.cfg, source, self.image_size, self.auto_scale)

    def collect(self, source: Source, scale: tuple[float, float]) -> tuple[ArrayCollector, Stats, Counts]:
        """Segment a source that fits in memory: whole class map, probability and valid mask."""
        keep = ArrayCollector(source.height, source.width)
        counts = Counts(self.model_cfg.num_classes)

        def sink(y0, probs, valid):
            classes = class_map(probs, self.cfg.threshold)
            counts.add(classes, valid)
            keep.write(y0, classes, probs, valid)

        stats = self.segmenter.run(source, scale, sink, self.progress)
        return keep, stats, counts

    def _image(self, source: Source, scale: tuple[float, float], paths: dict[str, Path]) -> dict:
        keep, stats, counts = self.collect(source, scale)
        row = self._finish(source.path, stats, counts)
        images = {"mask": mask_png(keep.classes, keep.valid, self.model_cfg.num_classes),
                  "overlay": overlay_png(source.pixels, keep.classes == self.water, keep.valid)}
        if "probability" in paths:
            images["probability"] = probability_png(keep.prob, keep.valid)
        with ExitStack() as stack:  # all or nothing: the renames happen together at the end
            for name, img in images.items():
                img.save(stack.enter_context(atomic_path(paths[name])), format="PNG")
        return row

    def _raster(self, source: RasterSource, scale: tuple[float, float], paths: dict[str, Path]) -> dict:
        cfg = self.cfg
        counts = Counts(self.model_cfg.num_classes)
        area_field = "area_m2" if source.crs is not None else "area_px"
        totals = {"area": 0.0, "polygons": 0}
        with ExitStack() as stack:
            tmp_mask = stack.enter_context(atomic_path(paths["mask"]))
            writer = GeoTiffWriter(tmp_mask, source.height, source.width, source.crs, source.transform,
                                   cfg.probabilities, {**self.tags, "unetseg_scale": f"{scale[0]:.6g}"})
            stack.callback(writer.close)
            vectors = polygons = None
            if "vectors" in paths:
                tmp_vec = stack.enter_context(atomic_path(paths["vectors"]))
                tmp_vec.unlink()  # GDAL creates a GeoPackage itself
                vectors = VectorWriter(tmp_vec, cfg.vectors, source.crs, area_field, paths["vectors"].stem)
                stack.callback(vectors.close)
                polygons = Polygonizer(source.height)

            def take(pieces):
                geoms = to_crs_coordinates(pieces, source.transform)
                area = areas(geoms, source.crs)
                totals["area"] += float(area.sum())
                keep = area >= cfg.min_area
                geoms, area = geoms[keep], area[keep]
                if cfg.simplify and len(geoms):
                    import shapely

                    geoms = shapely.simplify(geoms, cfg.simplify, preserve_topology=True)
                    area = areas(geoms, source.crs)
                totals["polygons"] += len(geoms)
                vectors.add(geoms, area)

            def sink(y0, probs, valid):
                classes = class_map(probs, cfg.threshold)
                counts.add(classes, valid)
                writer.write(y0, classes, probs, valid)
                if polygons is not None:
                    take(polygons.add(y0, (classes == self.water) & valid))

            stats = self.segmenter.run(source, scale, sink, self.progress)
            row = self._finish(source.path, stats, counts)
            if polygons is not None:
                take(polygons.close())
                vectors.close()
        unit = "m2" if source.crs is not None else "px"
        if polygons is None:  # no vectors asked for: the area from the pixel count (projected CRSs only)
            a, b, _, d, e, _ = (source.transform or (1, 0, 0, 0, 1, 0))[:6]
            factor = source.crs.linear_units_factor[1] ** 2 if source.crs is not None and source.crs.is_projected \
                else 1.0
            totals["area"] = row["water_pixels"] * abs(a * e - b * d) * factor
            if source.crs is not None and source.crs.is_geographic:
                totals["area"], unit = float("nan"), "m2 (needs --vectors for a geographic CRS)"
        row.update({"water_area": round(totals["area"], 2), "area_unit": unit,
                    "polygons": totals["polygons"] if polygons is not None else ""})
        return row


def describe(row: dict) -> str:
    """One line per input for the terminal."""
    if row.get("error"):
        return f"{Path(row['input']).name}: FAILED: {row['error']}"
    area = ""
    if row.get("water_area") not in (None, ""):
        value = row["water_area"]
        area = f" = {value / 1e6:,.3f} km2" if row["area_unit"] == "m2" else f" = {value:,.0f} {row['area_unit']}"
        if row.get("polygons") != "":
            area += f" in {row['polygons']:,} polygons"
    return (f"{Path(row['input']).name}: {row['width']}x{row['height']} px, {row['tiles']} tiles in {row['seconds']:.1f} s "
            f"({row['tiles_per_s']:.1f} tiles/s); water {100 * row['water_fraction']:.2f}%{area}")


def predict(run_dir: Path, inputs: list[Path], out: Path, cfg: PredictConfig, rt: Runtime, overwrite: bool = False,
            progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Segment every input into OUT; write OUT/predictions.csv and .json. Bad inputs are reported and skipped,
    then the call fails with a count of them (after the good ones are written)."""
    files = collect_inputs(inputs)
    cfg.check()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    summary = {"csv": out / "predictions.csv", "json": out / "predictions.json"}
    for target in [p for f in files for p in output_paths(f, out, cfg).values()] + list(summary.values()):
        check_new_file(target, overwrite)
    import rasterio

    predictor = Predictor(run_dir, cfg, rt, progress, log)
    out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):  # GDAL's default is 5% of RAM, and it fills it
        for file in files:
            try:
                row = predictor.one(file, out)
            except DataError as e:
                row = {"input": str(file), "error": str(e)}
                log(f"error: {e}")
            rows.append(row)
            if not row.get("error"):
                log(describe(row))
    write_csv_atomic(summary["csv"], SUMMARY_FIELDS, rows, extrasaction="ignore", lineterminator="\n")
    compile_s = warmup_seconds(predictor.segmenter.model)
    write_text_atomic(summary["json"], json.dumps({"run": str(run_dir), "settings": _settings(cfg),
                                                   "runtime": rt.describe(), "compile_seconds": compile_s,
                                                   "inputs": rows}, indent=1))
    failed = [r for r in rows if r.get("error")]
    good = [r for r in rows if not r.get("error")]
    tiles = sum(r["tiles"] for r in good)
    compiling = f" (of which {compile_s:.1f} s compiling)" if compile_s else ""
    log(f"{len(good)} of {len(rows)} input(s) segmented, {tiles} tiles in {time.perf_counter() - t0:.1f} s"
        f"{compiling}; summary in {summary['csv']}")
    if failed:
        raise DataError(f"{len(failed)} of {len(rows)} input(s) failed (listed above and in {summary['csv']})")
    return rows


def _settings(cfg: PredictConfig) -> dict:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}

