"""`unetseg predict`: a trained run over files and folders, to masks, overlays, polygons and a summary."""

from __future__ import annotations

import functools
import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..checkpoint import load_for_inference, resolve_checkpoint
from ..config import ModelConfig, PredictConfig, Recipe, index_of, uses_model
from ..errors import DataError, ReportedElsewhere
from ..data.spec import DatasetSpec
from ..data.folder import median_chip_scale, scan_folder
from ..atomic import atomic_path, check_new_file, output_file, scratch_path, write_csv_atomic, \
    write_files_atomic, write_json_atomic
from ..head import head_of
from ..runfolder import RunFolder
from ..distributed import World
from ..runtime import Runtime
from ..compiled import maybe_compile, warmup_seconds
from .engine import Job, Segmenter, Stats
from .fused import FusedSegmenter
from .index import INDEX_BANDS, IndexSegmenter
from .areas import PixelAreas, measure_polygons
from .outputs import ArrayCollector, Counts, GeoTiffWriter, class_map, mask_pixels, overlay_pixels, png_bytes, \
    probability_pixels, to_cog
from ..data.sources import RasterSource, Source, collect_inputs, has_images_below, is_raster, open_source
from .vectors import SUFFIXES, Polygonizer, VectorWriter

GDAL_CACHE_MB = 64
SUMMARY_FIELDS = ["input", "kind", "width", "height", "crs", "ground_resolution_m", "scale", "scale_from", "tiles",
                  "seconds", "tiles_per_s", "valid_pixels", "nodata_pixels", "water_pixels", "water_fraction",
                  "water_area", "area_unit", "polygons", "unlike_training", "mean_entropy", "index_threshold", "outputs",
                  "error"]
MAX_SCALE, MIN_SCALE = 16.0, 0.01


READ_AHEAD = 32  # plain images decoded ahead of the model: a batch of small ones,
READ_AHEAD_PIXELS = 1 << 26  # or as many as hold 67 megapixels (then one at a time)


class Helpers:
    """Two threads for the work around the model (decoding the next images and cutting their tiles; class maps,
    figures and files of the finished ones), held still while the model runs: `settle` (called before each
    batch) waits for whatever they have in hand. On 2 cores the model's OpenMP threads lose a core to any
    concurrent work and then wait at every barrier, so running beside the model was slower than taking turns
    (62 against 73 img/s, bench/predict_folder.py); between batches the helpers (Pillow, zlib and most of
    NumPy work without Python's lock) and the main thread share the cores."""

    def __init__(self, threads: int = 2):
        self.pool = ThreadPoolExecutor(threads, "unetseg-helper")
        self.busy: list[Future] = []

    def submit(self, fn: Callable, *args) -> Future:
        future = self.pool.submit(fn, *args)
        self.busy.append(future)
        return future

    def settle(self) -> None:
        wait(self.busy)
        self.busy = []

    def __enter__(self) -> "Helpers":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def training_scale(run_dir: Path, info: dict, image_size: int) -> tuple[float, str]:
    """The run's median chip resize factor: from run.json, else measured on its training files if present."""
    if info.get("chip_scale"):
        return float(info["chip_scale"]), "the run's median training-chip resize factor"
    split_file, data = RunFolder(run_dir).split_path, Path(info.get("data", ""))
    if split_file.exists() and data.is_dir():
        train = set(json.loads(split_file.read_text())["train"])
        paths = [p.image for p in scan_folder(data).pairs if p.stem in train]
        if paths:
            return median_chip_scale(paths, image_size), "the median training-chip resize factor (measured now)"
    return 1.0, "1.0: the run records no training scale and its data is not here"


def choose_scale(cfg: PredictConfig, source: Source, image_size: int, auto: float, model_gsd: float | None,
                 ground_resolution: float | None) -> tuple[tuple[float, float], str]:
    """Model pixels per input pixel (rows, columns), and where the factor came from, in words.

    --scale auto: the input's ground resolution over the run's model-pixel ground size when both are known
    (a 300 m Landsat pixel is 30 times a 10 m Sentinel-2 one), else the run's median training-chip factor.
    """
    if cfg.scale == "fit":
        return (image_size / source.height, image_size / source.width), "fit: the whole image to the training size"
    if cfg.scale != "auto":
        return (float(cfg.scale), float(cfg.scale)), "--scale"
    if model_gsd and ground_resolution:
        s = ground_resolution / model_gsd
        how = f"ground: {ground_resolution:.4g} m per pixel / the model's {model_gsd:.4g} m"
        if not MIN_SCALE <= s <= MAX_SCALE:
            s = min(max(s, MIN_SCALE), MAX_SCALE)
            how += f", limited to {s:g}"
        return (s, s), how
    return (auto, auto), "the run's training-chip factor" + (" (the input has no ground resolution)" if model_gsd
                                                              else "")


def scale_text(scale: tuple[float, float]) -> float | str:
    """The scale as the summary shows it: one number, or rows x columns when they differ."""
    return round(scale[0], 4) if scale[0] == scale[1] else f"{scale[0]:.4f}x{scale[1]:.4f}"


def output_paths(file: Path, out: Path, cfg: PredictConfig) -> dict[str, Path]:
    """Where each output of one input goes: OUT/<stem>_mask.tif and _water.geojson, or _mask.png and friends."""
    if is_raster(file):
        names = {"mask": "_mask.tif", "vectors": f"_water{SUFFIXES[cfg.vectors]}" if cfg.vectors != "none" else "",
                 "overlay": "_overlay.jpg" if cfg.quicklook else ""}
    else:
        names = {"mask": "_mask.png", "overlay": "_overlay.jpg" if cfg.overlay else "",
                 "probability": "_probability.png" if cfg.probabilities else ""}
    return {kind: output_file(out, file.stem + suffix) for kind, suffix in names.items() if suffix}


@dataclass
class Segmented:
    """An image segmented in memory: `keep` (classes, probability, valid, every probability plane), the water
    pixels, and the summary row's figures."""

    keep: ArrayCollector
    water: np.ndarray
    row: dict
    num_classes: int
    multilabel: bool = False

    def mask_pixels(self) -> np.ndarray:
        return mask_pixels(self.keep.classes, self.keep.valid, self.num_classes, self.multilabel)

    def overlay(self, image: np.ndarray) -> np.ndarray:
        return overlay_pixels(image, self.water, self.keep.valid)


class Predictor:
    """A loaded run (or a water index: cfg.method ndwi/mndwi) and the settings; `one` segments a file and
    returns its summary row."""

    def __init__(self, run_dir: Path | None, cfg: PredictConfig, rt: Runtime, progress: bool = True,
                 log: Callable[[str], None] = print):
        cfg.check()
        self.cfg, self.rt, self.progress, self.log = cfg, rt, progress, log
        self.run_dir: Path | None = None
        self._hinted = False  # said once that a water index could join the model (see _log_notes)
        if not uses_model(cfg.method):
            self._index(cfg.method)
            return
        from ..zoo import resolve_run

        run_dir = self.run_dir = resolve_run(run_dir)
        folder = RunFolder(run_dir)
        if not folder.is_run() and Path(run_dir).is_dir():
            folder.info()  # a folder that is not a run: the clear error
        weights = resolve_checkpoint(run_dir, cfg.checkpoint)
        model, ck = load_for_inference(weights, rt, prepack=not cfg.compile)
        if cfg.engine == "onnxruntime":
            from ..export import load_exported

            model = load_exported(Path(run_dir), cfg.checkpoint)
        model = maybe_compile(model, cfg.compile, log)
        info = folder.info() if folder.is_run() else {"recipe": ck["recipe"]}
        recipe = Recipe.from_dict(info["recipe"])
        self.run_info, self.recipe = info, recipe
        self.model_cfg: ModelConfig = recipe.model
        self.head = head_of(self.model_cfg)
        self.image_size = recipe.image_size
        spec = DatasetSpec.from_dict(info.get("spec") or {})  # run.json keeps the classes, not their names list
        self.class_names = spec.class_names
        self.water = self.class_names.index("water") if "water" in self.class_names else 1
        self.channel_names = tuple(spec.channels)
        # the run's own rule for raw values (dataset.yaml's value_range) unless --value-range says otherwise
        self.value_range = cfg.value_range if cfg.value_range != "auto" or not spec.value_range else \
            tuple(spec.value_range)
        self.auto_scale, how = training_scale(Path(run_dir), info, self.image_size)
        self.model_gsd = info.get("model_gsd")
        self.segmenter = self._segmenter(model, cfg)
        self.tags = {"unetseg_run": str(Path(run_dir).resolve()), "unetseg_checkpoint": weights.name,
                     "unetseg_engine": cfg.engine, "unetseg_method": cfg.method,
                     "unetseg_threshold": str(cfg.threshold)}
        if cfg.scale == "auto":
            ground = (f"georeferenced inputs: their ground resolution / {self.model_gsd:.4g} m per model pixel; "
                      f"others: ") if self.model_gsd else ""
            log(f"scale auto: {ground}{self.auto_scale:.3f} ({how}; see docs/predict.md)")

    def variant(self, cfg: PredictConfig) -> "Predictor":
        """The same loaded model with other per-input settings (threshold, tta, scale, bands, value range,
        outputs, a water index beside the model): what serve gives each request. Settings that need another
        model (run, checkpoint, engine, compile; a method without it) stay this one's."""
        import copy
        import dataclasses

        fixed = ("checkpoint", "engine", "compile")
        if not (uses_model(cfg.method) and uses_model(self.cfg.method)):
            fixed += ("method",)
        cfg = dataclasses.replace(cfg, **{k: getattr(self.cfg, k) for k in fixed})
        cfg.check()
        other = copy.copy(self)
        other.cfg = cfg
        other.value_range = cfg.value_range if cfg.value_range != "auto" else self.value_range  # auto: the run's rule
        if uses_model(cfg.method):
            other.segmenter = self._segmenter(self.segmenter.model, cfg)
        return other

    def _segmenter(self, model, cfg: PredictConfig) -> Segmenter | FusedSegmenter:
        """The loaded model with the tiling, batching, blending and test-time settings of `cfg` (and the water
        index beside it, for unet+INDEX)."""
        unet = Segmenter(model, self.rt, self.model_cfg.num_classes, cfg.tile, cfg.overlap, cfg.batch_size,
                         cfg.blend, cfg.tta, self.head)
        index = index_of(cfg.method)
        if index is None:
            return unet
        if self.head.outputs != 1:
            raise ValueError(f"--method {cfg.method}: the run's model has {self.head.outputs} outputs; a water index "
                             f"joins a binary water model (one output) only")

        def open_index(source: Source) -> Source:
            if not isinstance(source, RasterSource):  # an array handed to the API
                self._refuse_without_bands(source.path, "an array")
            # read as `--method INDEX` with the same --value-range and --nodata would: the same offset and fill
            return open_source(source.path, 2, None, source.value_range, INDEX_BANDS[index], source.fill)

        return FusedSegmenter(unet, IndexSegmenter(index), open_index)

    def _index(self, method: str) -> None:
        """No model: a water index thresholded by Otsu's method, at the input's own resolution."""
        self.run_info, self.recipe = {"method": method}, None
        self.model_cfg = ModelConfig(name=method, in_channels=2, num_classes=1)
        self.head = head_of(self.model_cfg)
        self.image_size, self.class_names, self.water = 0, ["background", "water"], 1
        self.channel_names = INDEX_BANDS[method]
        self.value_range = self.cfg.value_range
        self.auto_scale, self.model_gsd = 1.0, None
        self.segmenter = IndexSegmenter(method)
        self.tags = {"unetseg_method": method, "unetseg_threshold": str(self.cfg.threshold)}

    def open(self, file: Path, bands: list[int] | None = None,
             value_range: str | tuple[float, float] | None = None, nodata: float | None = None) -> Source:
        """The input as this model reads it (bands, value range and no-data value: the settings', unless given
        here)."""
        if index_of(self.cfg.method) is not None and not is_raster(file):
            self._refuse_without_bands(file, f"a {file.suffix.lower()} image")
        return open_source(file, self.model_cfg.in_channels, bands or self.cfg.bands,
                           value_range or self.value_range, self.channel_names,
                           self.cfg.nodata if nodata is None else nodata)

    def _refuse_without_bands(self, file: Path, what: str) -> None:
        """The one-line error for an input the method's water index cannot read (`what` it is instead)."""
        bands = " and ".join(INDEX_BANDS[index_of(self.cfg.method)])
        named = "named bands" if uses_model(self.cfg.method) else "named bands (or --bands)"  # --bands: the model's
        raise DataError(f"{file}: --method {self.cfg.method} needs {bands} bands: a multi-band raster with {named}, "
                        f"not {what}")

    def many(self, files: list[Path], out: Path, on_row: Callable[[dict], None]) -> None:
        """Segment files into OUT, giving on_row each one's summary row (or {"input", "error"}), in order.

        Rasters stream through the model one at a time (their outputs are written band by band); runs of
        plain images share the model's batches (run_many), so a folder of small images goes at batch speed."""
        i = 0
        while i < len(files):
            if is_raster(files[i]):
                on_row(self._guarded(files[i], lambda f=files[i]: self._raster_row(f, out)))
                i += 1
                continue
            j = next((k for k in range(i, len(files)) if is_raster(files[k])), len(files))
            self._images(files[i:j], out, on_row)
            i = j

    def _guarded(self, file: Path, work: Callable[[], dict]) -> dict:
        """work()'s row, or the error row of a DataError (also logged)."""
        try:
            return work()
        except DataError as e:
            self.log(f"error: {e}")
            return {"input": str(file), "error": str(e)}

    def _start(self, file: Path, out: Path, log_notes: bool = True
               ) -> tuple[Source, dict, dict[str, Path], PixelAreas, tuple[float, float]]:
        """Open an input; its summary row's first fields, output paths, pixel areas and scale."""
        source = self.open(file)
        try:
            ground, scale, how = self._measure(source, self.cfg.gsd)
        except BaseException:
            source.close()
            raise
        if log_notes:
            self._log_notes(source)
        row = {"input": str(file), "kind": "raster" if isinstance(source, RasterSource) else "image",
               "width": source.width, "height": source.height,
               "crs": source.crs.to_string() if source.crs is not None else "",
               "ground_resolution_m": round(ground.ground_resolution, 4) if ground.ground_resolution else "",
               "scale": scale_text(scale),
               "scale_from": how}
        return source, row, output_paths(file, out, self.cfg), ground, scale

    def _log_notes(self, source: Source) -> None:
        for note in source.notes if self.progress else []:  # --quiet: no per-file lines
            self.log(f"{source.path.name}: {note}")
        for warning in source.warnings:
            self.log(f"warning: {source.path.name}: {warning}")
        if self.progress and not self._hinted and self.cfg.method == "unet" \
                and "water" in self.class_names and self.head.outputs == 1 and isinstance(source, RasterSource):
            usable = [i for i, (g, ir) in INDEX_BANDS.items() if g in source.meanings and ir in source.meanings]
            if usable:
                self._hinted = True  # once per command
                methods = " or ".join(f"unet+{i}" for i in usable)
                self.log(f"note: {source.path.name} has green and infrared bands: --method {methods} adds the "
                         f"water a water index finds and a colour model misses (flooded vegetation; docs/scenes.md)")

    @staticmethod
    def _timed(row: dict, paths: dict[str, Path], t0: float) -> dict:
        row["outputs"] = [str(p) for p in paths.values()]
        row["seconds"] = round(time.perf_counter() - t0, 2)  # everything: reading, model, outputs, COG
        row["tiles_per_s"] = round(row["tiles"] / max(row["seconds"], 1e-9), 2)
        return row

    def _raster_row(self, file: Path, out: Path) -> dict:
        t0 = time.perf_counter()
        source, row, paths, ground, scale = self._start(file, out)
        try:
            row.update(self._raster(source, scale, paths, ground))
        finally:
            source.close()
        return self._timed(row, paths, t0)

    def _images(self, files: list[Path], out: Path, on_row: Callable[[dict], None]) -> None:
        """Plain images through run_many; rows leave in input order. The main thread runs the model; two helper
        threads decode the next images and turn each finished one's probabilities into its class map, figures
        and files, but only between the model's batches (Helpers)."""
        slots: deque = deque()  # per input, in order: its row, or the future of its outputs

        def give(wait: bool = False) -> None:
            while slots and (wait or not isinstance(slots[0], Future) or slots[0].done()):
                row = slots.popleft()
                on_row(row.result() if isinstance(row, Future) else row)

        def start(file: Path):
            t0 = time.perf_counter()
            try:
                started = self._start(file, out, log_notes=False)
                return file, t0, started, self.segmenter.read_ahead(started[0], started[4])
            except DataError as e:
                return file, t0, e, None

        def ahead_pixels(ahead: deque) -> int:  # of the images decoded and waiting
            opened = [f.result()[2] for f in ahead if f.done() and f.exception() is None]
            return sum(o[0].width * o[0].height for o in opened if not isinstance(o, DataError))

        with Helpers() as helpers:
            def jobs():
                ahead, nxt = deque(), 0
                for _ in range(len(files)):
                    while nxt < len(files) and (not ahead or len(ahead) < READ_AHEAD
                                                and ahead_pixels(ahead) < READ_AHEAD_PIXELS):
                        ahead.append(helpers.submit(start, files[nxt]))
                        nxt += 1
                    file, t0, started, plan = ahead.popleft().result()
                    if isinstance(started, DataError):
                        slots.append({"input": str(file), "error": str(started)})
                        self.log(f"error: {started}")
                        give()
                        continue
                    self._log_notes(started[0])
                    bands: list = []  # the engine's rows, kept for a helper (copies: the blender reuses its own)

                    def keep(y0, probs, valid, bands=bands, height=started[0].height):
                        whole = probs.shape[1] == height  # one tile's probabilities: the engine's no more
                        bands.append((y0, probs, valid) if whole else (y0, probs.copy(), valid.copy()))

                    def done(stats, file=file, started=started, bands=bands, t0=t0):
                        work = functools.partial(self._image_outputs, started, bands, stats, t0)
                        slots.append(helpers.submit(self._guarded, file, work))
                        give()

                    yield Job(started[0], started[4], keep, done, plan)

            self.segmenter.run_many(jobs(), self.progress, before_model=helpers.settle)
            give(wait=True)

    def _image_outputs(self, started: tuple, bands: list, stats: Stats, t0: float) -> dict:
        """An image's class map and summary figures from its probability rows, and its files; its row."""
        source, row, paths, ground, scale = started
        try:
            results: list = []
            job = self._image_job(source, scale, row["scale_from"], ground, None, results.append)
            for band in bands:
                job.sink(*band)
            job.done(stats)
            if isinstance(results[0], DataError):
                raise results[0]
            self._write_pngs(source, results[0], paths)
            return self._timed({**row, **results[0].row}, paths, t0)
        finally:
            source.close()

    def _write_pngs(self, source: Source, result: "Segmented", paths: dict[str, Path]) -> None:
        images = {"mask": result.mask_pixels()}
        if "overlay" in paths:
            images["overlay"] = result.overlay(source.pixels)
        if "probability" in paths:
            images["probability"] = probability_pixels(result.keep.prob, result.keep.valid)
        # all or nothing: the renames happen together at the end
        write_files_atomic({paths[name]: image_bytes(img, paths[name].suffix) for name, img in images.items()})

    @property
    def counted(self) -> str:
        """What the summary's water figures count: water, or another model's class 1 (or any class, multi-label)."""
        return "labelled" if self.head.multilabel else self.class_names[self.water]

    def is_water(self, classes: np.ndarray) -> np.ndarray:
        """The pixels of the water class (the class named water, else class 1; multi-label: any class), which
        the overlay tints, the polygons outline and the areas sum."""
        return classes != 0 if self.head.multilabel else classes == self.water

    def _finish(self, file: Path, stats: Stats, counts: Counts) -> dict:
        if counts.valid == 0:
            raise DataError(f"{file}: every pixel is no-data; nothing to segment (no outputs written)")
        water = counts.labelled if self.head.multilabel else int(counts.per_class[self.water])
        return {"tiles": stats.tiles, "seconds": round(stats.seconds, 2),
                "tiles_per_s": round(stats.tiles / max(stats.seconds, 1e-9), 2), "valid_pixels": counts.valid,
                "nodata_pixels": counts.nodata, "water_pixels": water,
                "water_fraction": round(water / counts.valid, 6), **self.judge(file, stats),
                "index_threshold": round(stats.index_threshold, 4) if stats.index_threshold is not None else ""}

    def judge(self, file: Path, stats: Stats) -> dict:
        """How unlike the training images the input looks (tiles' colour statistics, when the run recorded its
        own) and how unsure the model was (mean entropy); a warning line above the run's threshold."""
        from ..ood import distance, unlike_note

        entropy = stats.mean_entropy if uses_model(self.cfg.method) else None
        out: dict = {"mean_entropy": round(entropy, 4) if entropy is not None else ""}
        ref = self.run_info.get("input_stats")
        out["unlike_training"] = ""
        if ref and stats.features:
            score = float(np.mean(distance(ref, np.stack(stats.features))))
            out["unlike_training"] = round(score, 3)
            if note := unlike_note(score, ref["threshold"]):
                self.log(f"warning: {file.name} {note}")
        return out

    def _measure(self, source: Source, gsd: float | None) -> tuple[PixelAreas, tuple[float, float], str]:
        """The source's pixel areas, and the scale to run it at and where that came from (`gsd`: metres per
        pixel of an input without georeferencing)."""
        ground = PixelAreas(source.height, source.width, source.transform, source.crs)
        return (ground, *self.scale_for(source, ground.ground_resolution or gsd))

    def scale_for(self, source: Source, ground_resolution: float | None) -> tuple[tuple[float, float], str]:
        if not uses_model(self.cfg.method):
            return (1.0, 1.0), f"{self.cfg.method}: the input's own pixels"
        return choose_scale(self.cfg, source, self.image_size, self.auto_scale, self.model_gsd,
                            ground_resolution or self.cfg.gsd)

    def _image_job(self, source: Source, scale: tuple[float, float], how: str, ground: PixelAreas,
                   threshold: float | None, done: Callable[["Segmented | DataError"], None]) -> Job:
        """A source that fits in memory, as a job for the segmenter: done() gets its Segmented (classes at
        `threshold`, default the settings'; every probability plane; the summary figures), or the DataError
        that stopped it."""
        keep = ArrayCollector(source.height, source.width, self.head.outputs)
        counts = Counts(self.model_cfg.num_classes, self.head.multilabel)
        threshold = self.cfg.threshold if threshold is None else threshold

        def sink(y0, probs, valid):
            classes = class_map(probs, threshold, self.head)
            counts.add(classes, valid)
            keep.write(y0, classes, probs, valid)

        def finish(stats: Stats):
            try:
                row = {"scale": scale_text(scale),
                       "scale_from": how, **self._finish(source.path, stats, counts)}
            except DataError as e:
                done(e)
                return
            water = self.is_water(keep.classes) & keep.valid
            row.update({"water_area": round(ground.area(0, water), 2), "area_unit": ground.unit}
                       if ground.unit == "m2" else {"water_area": "", "area_unit": ""})
            done(Segmented(keep, water, row, self.model_cfg.num_classes, self.head.multilabel))

        return Job(source, scale, sink, finish)

    def segment(self, source: Source, threshold: float | None = None, gsd: float | None = None) -> "Segmented":
        """A whole image in memory, the one path behind predict's plain images, serve's replies, the API and
        scene evaluation: classes at `threshold` (default: the settings'), probabilities, no-data, the summary
        figures (water fraction, true ground area for georeferenced images, unlike-training score)."""
        ground, scale, how = self._measure(source, gsd)
        results: list = []
        self.segmenter.run_many([self._image_job(source, scale, how, ground, threshold, results.append)],
                                self.progress)
        if isinstance(results[0], DataError):
            raise results[0]
        return results[0]

    def _raster(self, source: RasterSource, scale: tuple[float, float], paths: dict[str, Path],
                ground: PixelAreas) -> dict:
        cfg = self.cfg
        counts = Counts(self.model_cfg.num_classes, self.head.multilabel)
        totals = {"area": 0.0, "polygons": 0}
        with ExitStack() as stack:
            tmp_mask = stack.enter_context(atomic_path(paths["mask"]))
            tiled = stack.enter_context(scratch_path(paths["mask"].with_name(paths["mask"].stem + ".tiled.tif")))
            writer = GeoTiffWriter(tiled, source.height, source.width, source.crs, source.transform,
                                   cfg.probabilities, {**self.tags, "unetseg_scale": f"{scale[0]:.6g}"})
            stack.callback(writer.close)
            vectors = polygons = None
            if "vectors" in paths:
                tmp_vec = stack.enter_context(atomic_path(paths["vectors"]))
                tmp_vec.unlink()  # GDAL creates a GeoPackage itself
                wgs84 = source.crs is not None and vector_crs(cfg) == "wgs84"
                vectors = VectorWriter(tmp_vec, cfg.vectors, wgs84_crs() if wgs84 else source.crs,
                                       "area_m2" if source.crs is not None else "area_px", paths["vectors"].stem,
                                       shown=paths["vectors"])
                stack.callback(vectors.close)
                polygons = Polygonizer(source.height)

            def take(pieces):
                if cfg.simplify and pieces:  # in pixels: the tolerance is in CRS units
                    import shapely

                    px = abs(source.transform[0]) if source.transform is not None else 1.0
                    pieces = shapely.simplify(np.asarray(pieces, dtype=object), cfg.simplify / px,
                                              preserve_topology=True)
                measured = measure_polygons(pieces, source.transform, source.crs)
                keep = measured.areas >= cfg.min_area
                geoms = measured.lonlat_geoms if wgs84 else measured.crs_geoms
                totals["polygons"] += int(keep.sum())
                vectors.add(geoms[keep], measured.areas[keep])

            def sink(y0, probs, valid):
                classes = class_map(probs, cfg.threshold, self.head)
                counts.add(classes, valid)
                writer.write(y0, classes, probs, valid)
                water = self.is_water(classes) & valid
                totals["area"] += ground.area(y0, water)
                if polygons is not None:
                    take(polygons.add(y0, water))

            stats = self.segmenter.run(source, scale, sink, self.progress)
            row = self._finish(source.path, stats, counts)
            if polygons is not None:
                take(polygons.close())
                vectors.close()
            writer.close()
            if "overlay" in paths:
                save_image(quicklook(source, tiled, self.water), stack.enter_context(atomic_path(paths["overlay"])))
            to_cog(tiled, tmp_mask)
        row.update({"water_area": round(totals["area"], 2), "area_unit": ground.unit,
                    "polygons": totals["polygons"] if polygons is not None else ""})
        return row


def quicklook(source: RasterSource, mask: Path, water: int, side: int = 2048) -> np.ndarray:
    """The water over the image, shrunk to at most `side` pixels: a picture of a raster's result."""
    import rasterio

    k = max(1, int(np.ceil(max(source.height, source.width) / side)))
    h, w = max(1, source.height // k), max(1, source.width // k)
    with rasterio.open(mask) as m:
        classes = m.read(1, out_shape=(h, w))
    valid = classes != 255
    return overlay_pixels(source.thumbnail(h, w), (classes == water) & valid, valid)


def save_image(img: Image.Image | np.ndarray, path: Path) -> None:
    path.write_bytes(image_bytes(img, path.suffix))


def image_bytes(img: Image.Image | np.ndarray, suffix: str) -> bytes:
    """A picture output's file by its suffix: masks and probabilities (grey arrays) as PNG (lossless;
    png_bytes), overlays as JPEG (a 0.27-megapixel overlay: 1 ms as JPEG against 44 ms as a PNG five times its
    size). JPEGs go through simplejpeg (libjpeg-turbo, quality 90, 4:2:0 as Pillow's default): Pillow's encoder
    holds Python's lock, so two helper threads encoded no faster than one (483 against 499 overlays/s of 400 px);
    simplejpeg releases it (1050/s on two threads)."""
    if suffix.lower() in (".jpg", ".jpeg"):
        import simplejpeg

        if isinstance(img, Image.Image):
            img = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        rgb = np.ascontiguousarray(img)
        return simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB", colorsubsampling="420")
    return png_bytes(img)


def vector_crs(cfg: PredictConfig) -> str:
    """The CRS polygons are written in: wgs84 or raster (--vector-crs auto: GeoJSON wgs84, GeoPackage raster)."""
    if cfg.vector_crs != "auto":
        return cfg.vector_crs
    return "wgs84" if cfg.vectors == "geojson" else "raster"


def wgs84_crs():
    """EPSG:4326 as a rasterio CRS."""
    from rasterio.crs import CRS

    return CRS.from_epsg(4326)


def describe(row: dict, counted: str = "water") -> str:
    """One line per input for the terminal; `counted`: the name of the class the row counts (water)."""
    if row.get("error"):
        return f"{Path(row['input']).name}: FAILED: {row['error']}"
    area = ""
    if row.get("water_area") not in (None, ""):
        value = row["water_area"]
        area = f" = {value / 1e6:,.3f} km2" if row["area_unit"] == "m2" else f" = {value:,.0f} {row['area_unit']}"
        if row.get("polygons") != "":
            area += f" in {row['polygons']:,} polygons"
    return (f"{Path(row['input']).name}: {row['width']}x{row['height']} px, {row['tiles']} tiles in {row['seconds']:.1f} s "
            f"({row['tiles_per_s']:.1f} tiles/s); {counted} {100 * row['water_fraction']:.2f}%{area}")


def predict(run_dir: Path | None, inputs: list[Path], out: Path, cfg: PredictConfig, rt: Runtime,
            overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print,
            predictor: Predictor | None = None, world: World | None = None, skip_done: bool = False) -> list[dict]:
    """Segment every input into OUT; write OUT/predictions.csv and .json. Bad inputs are reported and skipped,
    then the call fails with a count of them (after the good ones are written). Ctrl-C writes the summary of
    the inputs finished so far (one process); `skip_done` leaves out the inputs an earlier predict into OUT
    finished with the same run and settings (`done_inputs`), so that the same command goes on where it stopped.

    Under torchrun (`world` of several processes, on one machine or many) each process segments its own
    share of the inputs (`shard`) and rank 0 alone writes the one summary, with every process's rows.

    The summary is a ledger of the folder: rows of inputs predicted earlier into OUT are kept, and an input's
    row is replaced when it is predicted again (a failed one freely; a finished one with --overwrite, as its
    outputs are)."""
    cfg.check()
    files = collect_inputs(inputs, cfg.recursive)
    if world is None or world.main:
        for folder in [p for p in inputs if p.is_dir() and not cfg.recursive and has_images_below(p)]:
            log(f"note: {folder}: images in its subfolders are not searched (--recursive searches them)")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    summary = {"csv": out / "predictions.csv", "json": out / "predictions.json"}
    world = world or World()
    if skip_done:
        done = done_inputs(summary["json"], files, run_dir, cfg, out, world)
        if done and world.main:
            log(f"{len(done)} of {len(files)} input(s) already segmented into {out} with these settings: skipped")
        files = [f for f in files if str(f) not in done]
        if not files:
            if world.main:
                log(f"nothing left to segment; summary in {summary['csv']}")
            return []
    # with skip_done and predict's summary there (done_inputs checked it), the inputs left are unfinished, or
    # finished with outputs deleted since: their outputs and rows are replaced
    leftovers = skip_done and summary["json"].exists()
    for target in [p for f in files for p in output_paths(f, out, cfg).values()]:
        check_new_file(target, overwrite or leftovers)
    earlier = earlier_rows(summary, files, overwrite or leftovers)
    import rasterio

    if predictor is not None and predictor.cfg != cfg:  # the loaded model with these settings' outputs
        predictor = predictor.variant(cfg)
    predictor = predictor or Predictor(run_dir, cfg, rt, progress, log if world.main else lambda m: None)
    if not world.main:  # per-file lines and errors from every process, each input's once; the rest from rank 0
        predictor.log = log
    out.mkdir(parents=True, exist_ok=True)
    rows, t0 = [], time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):  # GDAL's default is 5% of RAM, and it fills it
        def take(row: dict) -> None:
            rows.append(row)
            if progress and not row.get("error"):
                log(describe(row, predictor.counted))

        try:
            predictor.many(shard(files, world.rank, world.size), out, take)
        except KeyboardInterrupt:
            if world.size == 1 and rows:  # what is finished stays on record, and the same command goes on
                write_summary(summary, earlier + rows, run_dir, cfg, rt, predictor)
                log(f"interrupted after {len(rows)} of {len(files)} input(s); their summary is in {summary['csv']}; "
                    "to go on, run the same command with --skip-done")
            raise
    if world.size > 1:
        rows = gather_rows(rows, files, world)
        if not world.main:  # rank 0 writes the summary and says what failed; the others exit as it does
            if any(r.get("error") for r in rows):
                raise ReportedElsewhere()
            return rows
    compile_s = write_summary(summary, earlier + rows, run_dir, cfg, rt, predictor)
    failed = [r for r in rows if r.get("error")]
    good = [r for r in rows if not r.get("error")]
    tiles = sum(r["tiles"] for r in good)
    compiling = f" (of which {compile_s:.1f} s compiling)" if compile_s else ""
    log(f"{len(good)} of {len(rows)} input(s) segmented, {tiles} tiles in {time.perf_counter() - t0:.1f} s"
        f"{compiling}; summary in {summary['csv']}")
    if failed:
        raise DataError(f"{len(failed)} of {len(rows)} input(s) failed (listed above and in {summary['csv']})")
    return rows


SPEED_SETTINGS = ("batch_size", "compile")  # change the speed, not the outputs: free to differ under --skip-done


def write_summary(summary: dict[str, Path], ledger: list[dict], run_dir: Path | None, cfg: PredictConfig,
                  rt: Runtime, predictor: Predictor) -> float | None:
    """OUT/predictions.csv and .json: a row per input, with the run and settings; returns the compile seconds."""
    write_csv_atomic(summary["csv"], SUMMARY_FIELDS, [{**r, "outputs": "; ".join(r.get("outputs", []))}
                                                      for r in ledger], extrasaction="ignore", lineterminator="\n")
    compile_s = warmup_seconds(predictor.segmenter.model) if uses_model(cfg.method) else None
    write_json_atomic(summary["json"], {"run": str(run_dir) if run_dir else None, "settings": _settings(cfg),
                                        "runtime": rt.describe(), "compile_seconds": compile_s, "inputs": ledger})
    return compile_s


def done_inputs(path: Path, files: list[Path], run_dir: Path | None, cfg: PredictConfig, out: Path,
                world: World) -> set[str]:
    """The inputs (of `files`) that an earlier predict into OUT finished: a row without an error in its summary
    and every output file there. Refused when that predict used another run or other settings, whose outputs
    would sit beside these. Under torchrun rank 0 decides and every process takes its answer."""
    done, refusal = set(), None
    if world.main:
        try:
            done = _finished_earlier(path, files, run_dir, cfg, out)
        except DataError as e:
            refusal = str(e)
    if world.size > 1:
        import torch.distributed as dist

        box = [(done, refusal)]
        dist.broadcast_object_list(box, src=0)
        done, refusal = box[0]
    if refusal:
        raise DataError(refusal) if world.main else ReportedElsewhere()
    return done


def _finished_earlier(path: Path, files: list[Path], run_dir: Path | None, cfg: PredictConfig, out: Path) -> set[str]:
    if not path.exists():
        return set()
    earlier = read_summary(path)
    if earlier is None:
        raise DataError(f"{path}: is not a summary written by predict; --skip-done needs one")
    now = {"run": str(run_dir) if run_dir else None, **_settings(cfg)}
    then = {"run": earlier.get("run"), **(earlier.get("settings") or {})}
    differ = [f"{k} {then.get(k)!r} there, {v!r} now" for k, v in now.items()
              if k not in SPEED_SETTINGS and then.get(k) != v]
    if differ:
        raise DataError(f"{path}: made with other settings ({'; '.join(differ[:3])}); --skip-done goes on only "
                        "with the same run and settings (or use another --out)")
    finished = {r["input"] for r in earlier["inputs"] if not r.get("error")}
    return {str(f) for f in files if str(f) in finished and all(p.exists() for p in output_paths(f, out, cfg).values())}


def shard(files: list[Path], rank: int, size: int) -> list[Path]:
    """Process `rank`'s share of the inputs, in input order: largest files first, each to the process with the
    fewest bytes so far (ties: the lowest rank). Every process computes the same split from the same list."""
    if size == 1:
        return files
    sizes = [f.stat().st_size if f.exists() else 0 for f in files]
    loads, mine = [0] * size, []
    for i in sorted(range(len(files)), key=lambda i: (-sizes[i], i)):
        r = min(range(size), key=lambda k: (loads[k], k))
        loads[r] += sizes[i]
        if r == rank:
            mine.append(i)
    return [files[i] for i in sorted(mine)]


def gather_rows(rows: list[dict], files: list[Path], world: World) -> list[dict]:
    """Every process's summary rows, in input order (the whole list on rank 0; elsewhere as given)."""
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, rows)
    order = {str(f): i for i, f in enumerate(files)}
    return sorted((r for part in parts for r in part), key=lambda r: order.get(r["input"], len(order)))


def read_summary(path: Path) -> dict | None:
    """An earlier predict's predictions.json (its rows, each with an "input", under "inputs"), or None when the
    file is not one."""
    try:
        d = json.loads(path.read_text())
        rows = d["inputs"]
        assert isinstance(rows, list) and all(isinstance(r, dict) and "input" in r for r in rows)
    except (ValueError, KeyError, TypeError, AssertionError):
        return None
    return d


def earlier_rows(summary: dict[str, Path], files: list[Path], overwrite: bool) -> list[dict]:
    """The rows of an earlier predict into the same folder that this one keeps (those of other inputs).

    A summary that is not predict's, or a finished input predicted again without --overwrite, is refused."""
    path = summary["json"]
    if not path.exists():
        if summary["csv"].exists():
            check_new_file(summary["csv"], overwrite)  # a CSV of someone else's
        return []
    earlier = read_summary(path)
    if earlier is None:
        if overwrite:
            return []
        raise DataError(f"{path}: exists and is not a summary written by predict (use --overwrite to replace it)")
    rows = earlier["inputs"]
    again = {str(f) for f in files}
    done = [r["input"] for r in rows if r["input"] in again and not r.get("error")]
    if done and not overwrite:
        raise DataError(f"{done[0]}: already predicted into {path.parent} (use --overwrite to predict it again)")
    return [r for r in rows if r["input"] not in again]


def _settings(cfg: PredictConfig) -> dict:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}

