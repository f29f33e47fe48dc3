"""The `unetseg` command line: thin typer commands that call the library; errors are one line."""

from __future__ import annotations

import dataclasses
import functools
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import RECIPES, get_recipe
from .errors import DataError, Interrupted, ReportedElsewhere

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Semantic segmentation with U-Nets: train, evaluate and run water-body models on a CPU.\n\n"
         "Start with `unetseg reproduce --help` (the main job), or `make run`.",
)


def _version(value: bool) -> None:
    """--version: this package's, and the versions of what it runs on (read without importing them)."""
    if value:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from .version import __version__

        def of(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "missing"

        typer.echo(f"unetseg {__version__} (Python {platform.python_version()}, torch {of('torch')}, "
                   f"onnxruntime {of('onnxruntime')}, rasterio {of('rasterio')})")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """The options before any command (the help text is the app's)."""


PRECISION_HELP = "auto: bf16 where this CPU runs it natively (AMX/AVX512-BF16), else fp32; CUDA AMP on a GPU."


def friendly(fn):
    """Turn expected errors into one line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ValueError, FileNotFoundError, FileExistsError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except ReportedElsewhere as e:
            raise typer.Exit(e.code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Interrupted as e:  # training stopped on Ctrl-C / SIGTERM after saving its state
            typer.echo(str(e), err=True)
            raise typer.Exit(130) from None
    return wrapper


def _recipe(name: str, epochs: Optional[int], batch_size: Optional[int], lr: Optional[float],
            image_size: Optional[int], model: Optional[str], base_width: Optional[int], seed: Optional[int],
            encoder_weights: Optional[Path] = None, minutes: Optional[float] = None):
    recipe = get_recipe(name)
    changes = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                                     seed=seed, minutes=minutes).items() if v is not None}
    recipe = dataclasses.replace(recipe, **changes)
    mchanges = {k: v for k, v in dict(name=model, base_width=base_width,
                                      encoder_weights=str(encoder_weights) if encoder_weights else None).items()
                if v is not None}
    if mchanges:
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, **mchanges))
    recipe.check()
    return recipe


def _world(nproc: int, rt):
    """Under torchrun: join its process group. With --nproc N > 1 outside torchrun: run this command (minus
    --nproc) on N processes through torchrun's own launcher, and exit with their status (rank 0 reports)."""
    from .distributed import from_env, launched_by_torchrun, launch_local

    if nproc > 1 and not launched_by_torchrun():
        args, skip = [], False
        for a in sys.argv[1:]:
            if skip:
                skip = False
            elif a == "--nproc":
                skip = True
            elif not a.startswith("--nproc="):
                args.append(a)
        typer.echo(f"running: torchrun --standalone --nproc-per-node={nproc} -m unetseg "
                   + " ".join(shlex.quote(a) for a in args), err=True)
        raise typer.Exit(launch_local(nproc, ["-m", "unetseg", *args]))
    return from_env(rt.device)


NprocOpt = typer.Option(1, "--nproc", help="Processes to train with (DistributedDataParallel via torchrun; gloo on "
                        "CPU, nccl on GPU). The batch size stays the global batch. For several machines, use "
                        "torchrun directly (see README).")


def _runtime(precision: str, device: str, reuse_memory: bool = True):
    """select_runtime, its warnings (bf16 asked for where it is only emulated) as one `warning:` line each."""
    import warnings

    from .runtime import select_runtime

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        rt = select_runtime(precision, device, reuse_memory)
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            typer.echo(f"warning: {w.message}", err=True)
    return rt


RecipeOpt = typer.Option("seed", "--recipe", "-r", help=f"Training recipe: {', '.join(RECIPES)} (see README).")
EpochsOpt = typer.Option(None, help="Override the recipe's number of epochs.")
MinutesOpt = typer.Option(None, "--minutes", help="Train for at most this long: the first epoch's pace (timed "
                          "after a few steps) and each epoch's after it plan how many of the epochs fit, and the "
                          "learning-rate schedule is fitted to them, so it still ends annealed. Validation counts; "
                          "the final evaluation does not. 0 = no budget.")
BatchOpt = typer.Option(None, "--batch-size", help="Override the recipe's batch size.")
LrOpt = typer.Option(None, help="Override the recipe's learning rate.")
SizeOpt = typer.Option(None, "--image-size", help="Override the chip size in pixels (128 for the seed).")
ModelOpt = typer.Option(None, "--model", help="Override the model: unet, unet-bn, ternausnet.")
EncOpt = typer.Option(None, "--encoder-weights", help="ternausnet: a local torchvision VGG11 state dict "
                      "(vgg11-8a719046.pth); loaded with weights_only, never downloaded.")
CompileOpt = typer.Option(False, "--compile", help="Run the model through torch.compile: a one-off warm-up "
                          "(20-60 s, reported) for a faster forward pass; eager PyTorch if compiling fails. "
                          "Pays off on long jobs; `unetseg benchmark` shows the gain on this machine.")
TtaOpt = typer.Option("none", "--tta", help="Test-time augmentation: none, flips (4 views) or d4 (8 views).")
WidthOpt = typer.Option(None, "--base-width", help="Override the first level's filters (32 for the seed).")
SeedOpt = typer.Option(None, "--seed", help="Override the random seed (split, init, data order).")
PrecOpt = typer.Option("auto", "--precision", help=PRECISION_HELP)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
SkipOpt = typer.Option(False, "--skip-bad", help="Skip unreadable files (listed in run.json) instead of stopping.")
OverOpt = typer.Option(False, "--overwrite", help="Replace an existing, non-empty output folder.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars (they are shown on a terminal only) and no "
                        "per-file lines; warnings, errors and the totals are still printed.")
ScenesOpt = typer.Option(None, "--scenes", help="Scenes to cut random training crops from, for recipes that use "
                         "them (general): a folder with Images/ and Masks/, or a scenes yaml (see docs/scenes.md). "
                         "Default: $UNETSEG_SCENES, or esw-scenes beside the $UNETSEG_DATA folder "
                         "(../shared/data/esw-scenes).")
GsdOpt = typer.Option(None, "--gsd", help="Metres on the ground per pixel of the data's images, if they share "
                      "one (else dataset.yaml's gsd). Lets predict --scale auto match each GeoTIFF's resolution.")


@app.command()
@friendly
def train(
    data: Path = typer.Option(None, "--data", "-d", help="Folder with Images/ and Masks/, or an image folder and a mask folder per class (docs/em.md); default: $UNETSEG_DATA."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder to create."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder from its last finished "
                                          "epoch (or where Ctrl-C stopped it), with its own data and recipe."),
    recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, minutes: Optional[float] = MinutesOpt,
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, image_size: Optional[int] = SizeOpt,
    model: Optional[str] = ModelOpt, base_width: Optional[int] = WidthOpt, seed: Optional[int] = SeedOpt,
    precision: str = PrecOpt, device: str = DeviceOpt, skip_bad: bool = SkipOpt, overwrite: bool = OverOpt,
    quiet: bool = QuietOpt,
    limit: Optional[int] = typer.Option(None, help="Use only the first N pairs (for quick trials)."),
    encoder_weights: Optional[Path] = EncOpt,
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log to OUT/tensorboard (needs tensorboard)."),
    nproc: int = NprocOpt, gsd: Optional[float] = GsdOpt, scenes: Optional[Path] = ScenesOpt,
    init: Optional[str] = typer.Option(None, "--init", help="Start from the best weights of this run folder (or "
                                       "a shipped model: water) instead of random ones, to fine-tune it on "
                                       "--data; the model must be the same (architecture, bands, classes)."),
):
    """Train a U-Net on a folder of images and masks.

    Writes OUT/split.json, best/last checkpoints (.safetensors + .json), history.csv and curves.png.

    Example: unetseg train --data ../shared/data/water-bodies --out runs/seed --recipe seed

    The training state is saved at the end of every epoch. Ctrl-C (or SIGTERM) stops at the next step
    and saves it too; after that, or a crash, go on with: unetseg train --resume runs/seed

    On several processes (DistributedDataParallel): add --nproc 2, or launch it with torchrun yourself:
    torchrun --nnodes 2 --nproc-per-node 2 --rdzv-endpoint HOST:29500 -m unetseg train ...
    """
    from .distributed import shutdown
    from .workflow import default_data_dir, resume_train, run_train

    if resume is not None:
        given = [name for name, value in (("--data", data), ("--epochs", epochs), ("--minutes", minutes),
                                          ("--batch-size", batch_size), ("--lr", lr),
                                          ("--image-size", image_size), ("--model", model),
                                          ("--base-width", base_width), ("--seed", seed), ("--limit", limit),
                                          ("--encoder-weights", encoder_weights), ("--gsd", gsd),
                                          ("--scenes", scenes), ("--init", init))
                 if value is not None]
        if out is not None and out.resolve() != resume.resolve():
            given.append("--out")
        if given:
            raise ValueError(f"--resume continues {resume} with its own data and recipe; drop {', '.join(given)}")
    elif out is None:
        raise ValueError("--out RUN is required (the run folder to create), or --resume RUN to continue one")
    r = _recipe(recipe, epochs, batch_size, lr, image_size, model, base_width, seed, encoder_weights, minutes)
    rt = _runtime(precision, device)
    world = _world(nproc, rt)
    try:
        if resume is not None:
            resume_train(resume, rt, progress=not quiet, world=world)
        else:
            run_train(data or default_data_dir(), out, r, rt, skip_bad, overwrite, progress=not quiet, limit=limit,
                      tensorboard=tensorboard, world=world, gsd=gsd, scenes=scenes, init=init)
    finally:
        shutdown()


@app.command()
@friendly
def evaluate(
    run: Optional[Path] = typer.Argument(None, help="Run folder made by `unetseg train` (left out with --method "
                                         "ndwi/mndwi)."),
    data: Path = typer.Option(None, "--data", "-d", help="Data folder (default: the one the run was trained on)."),
    checkpoint: str = typer.Option("best", help="Which checkpoint: best or last."),
    scenes: Optional[Path] = typer.Option(None, "--scenes", help="Score whole scenes instead of the test chips: a "
                                          "folder with Images/ and Masks/ (or a scenes.yaml), or a scenes yaml "
                                          "(label conventions, bands, value ranges: docs/scenes.md). Runs predict's "
                                          "own path: tiling, scale, no-data."),
    method: str = typer.Option("unet", "--method", help="With --scenes: unet (the run's model), ndwi/mndwi (a "
                               "water index with Otsu's threshold, no model; scenes with named bands), or "
                               "unet+ndwi/unet+mndwi (both: water where either finds it)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --scenes: folder for metrics.json, "
                                       "per_scene.csv and a figure per scene (default: RUN/scenes-NAME)."),
    tta: str = TtaOpt, compile: bool = CompileOpt, precision: str = PrecOpt, device: str = DeviceOpt,
    quiet: bool = QuietOpt,
):
    """Score a run on its test split: writes RUN/metrics.json, per_image.csv and test_predictions.png.

    The mean IoU is the seed's: background and water IoU from one confusion matrix over every test
    pixel at the training size, predictions thresholded at 0.5.

    With --tta the results go to metrics-tta-MODE.json, beside the plain ones. With --scenes, whole
    scenes are scored per scene and pooled; scenes the run trained on are left out (and said so).

    \b
    Examples:
      unetseg evaluate runs/seed
      unetseg evaluate runs/improved --tta d4
      unetseg evaluate runs/general --scenes configs/real-scenes.yaml
      unetseg evaluate --method mndwi --scenes configs/real-scenes.yaml --out runs/mndwi-real
    """
    if scenes is not None:
        from .config import PredictConfig, uses_model
        from .workflow import run_evaluate_scenes

        cfg = PredictConfig(checkpoint=checkpoint, tta=tta, compile=compile, method=method)
        cfg.check()
        if uses_model(method) and run is None:
            raise ValueError("give the run folder to evaluate: unetseg evaluate RUN --scenes DIR")
        if not uses_model(method) and out is None:
            raise ValueError(f"--method {method} has no run folder to write into: give --out DIR")
        r = run_evaluate_scenes(run if uses_model(method) else None, scenes, _runtime(precision, device), cfg, out,
                                log=lambda m: typer.echo(m))
        typer.echo(f"{r['scene_set']}: pooled mean IoU {r['pooled_mean_iou']:.4f}, water IoU "
                   f"{r['pooled_water_iou']:.4f} over {r['scenes']} scene(s); worst {r['worst_scene']}; "
                   f"written to {r['out']}")
        return
    if run is None:
        raise ValueError("give the run folder to evaluate: unetseg evaluate RUN")
    if method != "unet":
        raise ValueError(f"--method {method} needs --scenes (the test chips are RGB: they have no infrared band)")
    from .workflow import run_evaluate

    from .evaluation import summary_lines

    m = run_evaluate(run, _runtime(precision, device), data, checkpoint, progress=not quiet, tta=tta, compile=compile)
    for line in summary_lines(m, tta):
        typer.echo(line)


@app.command()
@friendly
def reproduce(
    data: Path = typer.Option(None, "--data", "-d",
                              help="Folder with Images/ and Masks/ (or class folders: docs/em.md). Default: $UNETSEG_DATA or ../shared/data/"
                                   "water-bodies if it exists, else synthetic scenes made in OUT/synthetic-data."),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", "-o", help="Run folder to create."),
    recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, minutes: Optional[float] = MinutesOpt,
    batch_size: Optional[int] = BatchOpt, image_size: Optional[int] = SizeOpt, model: Optional[str] = ModelOpt,
    base_width: Optional[int] = WidthOpt, seed: Optional[int] = SeedOpt, precision: str = PrecOpt,
    device: str = DeviceOpt, skip_bad: bool = SkipOpt,
    overwrite: bool = OverOpt, quiet: bool = QuietOpt, encoder_weights: Optional[Path] = EncOpt,
    nproc: int = NprocOpt, gsd: Optional[float] = GsdOpt, scenes: Optional[Path] = ScenesOpt,
):
    """The main job: train, evaluate, draw the figures and write OUT/report.md in one command.

    Examples:
      unetseg reproduce --recipe seed --data ../shared/data/water-bodies --out runs/seed   (about 2 h on 2 cores)
      unetseg reproduce --recipe quick                                                    (a few minutes)
      unetseg reproduce --recipe isbi2012 --data ../shared/data/isbi2012-em --out runs/isbi2012   (EM membranes)
      unetseg reproduce --recipe epfl-em --data ../shared/data/epfl-em --out runs/epfl-em   (six structures)
    """
    from .workflow import reproduce as run, resolve_data

    r = _recipe(recipe, epochs, batch_size, None, image_size, model, base_width, seed, encoder_weights, minutes)
    data, desc = resolve_data(data, out)
    typer.echo(f"data: {desc}")
    cmd = "unetseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    from .distributed import shutdown

    rt = _runtime(precision, device)
    world = _world(nproc, rt)
    try:
        run(data, out, r, rt, cmd, desc, skip_bad, overwrite, progress=not quiet, world=world, gsd=gsd,
            scenes=scenes)
    finally:
        shutdown()


@app.command()
@friendly
def predict(
    run: Optional[Path] = typer.Argument(None, help="Run folder made by `unetseg train` (or a .safetensors "
                                         "checkpoint). Left out with --method ndwi/mndwi."),
    inputs: Optional[list[Path]] = typer.Argument(None, help="Images (JPG, PNG, any raster GDAL reads) and/or "
                                                  "folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the outputs (created if missing)."),
    tile: int = typer.Option(256, help="Tile size in model pixels (after --scale)."),
    overlap: int = typer.Option(32, help="Pixels shared by neighbouring tiles (model pixels, at most tile/2)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Tiles per forward pass; smaller model tiles (a folder "
                                   "of small images) batch as many pixels: 32 of 128 px for 8 of 256."),
    blend: str = typer.Option("cosine", help="How overlaps are blended: cosine, linear, average, or none "
                              "(hard cut in the middle of each overlap)."),
    scale: str = typer.Option("auto", help="Resize factor from input pixels to model pixels: auto (the median "
                              "factor the run's training chips were resized by), fit (each image to the "
                              "training chip size, as in training), or a number."),
    threshold: float = typer.Option(0.5, help="Water probability above which a pixel is water."),
    tta: str = TtaOpt,
    bands: Optional[str] = typer.Option(None, help="Raster bands to use, 1-based, in the model's channel order, "
                                        "e.g. 4,3,2 for Sentinel-2 red, green, blue."),
    value_range: str = typer.Option("auto", "--value-range", help="Raw raster values mapped to 0..255: auto "
                                    "(8-bit as is; 16-bit as Sentinel-2 reflectance x 10000, 0..4000; floats "
                                    "0..0.4; a raster's declared scale and offset applied; values beyond "
                                    "reflectance read as pictures or as reflectance x 10000, said in the log; "
                                    "docs/predict.md), percentile (2nd-98th), or LO,HI (e.g. 1000,5000 for L2A "
                                    "with an undeclared +1000 offset)."),
    nodata: Optional[float] = typer.Option(None, "--nodata", help="A value that marks no-data where every band "
                                           "has it, besides what the file declares: e.g. 0 for the black fill "
                                           "around an 8-bit scene (Sentinel-2 TCI), which is otherwise read as "
                                           "dark water. No-data pixels are 255 in the mask and left out of areas."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Also write the probability: a PNG for "
                                       "images, a second band (percent) in the mask GeoTIFF."),
    quicklook: bool = typer.Option(False, "--quicklook", help="Rasters: also NAME_overlay.jpg, the water over the "
                                   "image, at most 2048 px a side (plain images get one unless --no-overlay)."),
    no_overlay: bool = typer.Option(False, "--no-overlay", help="Plain images: no NAME_overlay.jpg, the mask (and "
                                    "probability) only, for folders of many images where the pictures are not wanted."),
    recursive: bool = typer.Option(False, "--recursive", help="Folders given as inputs: the images in their "
                                   "subfolders too (outputs stay side by side in OUT, named by file: two inputs "
                                   "of one name are refused)."),
    vectors: str = typer.Option("geojson", help="Water polygons for raster inputs: geojson, gpkg or none."),
    vector_crs: str = typer.Option("auto", "--vector-crs", help="CRS of the polygons: wgs84 (longitude/latitude), "
                                   "raster (the input's CRS), or auto: GeoJSON in wgs84 as RFC 7946 asks, "
                                   "GeoPackage in the raster's CRS."),
    min_area: float = typer.Option(0.0, "--min-area", help="Drop polygons smaller than this (m2; pixels "
                                   "without a CRS)."),
    simplify: float = typer.Option(0.0, help="Simplify polygons with this tolerance (CRS units)."),
    checkpoint: str = typer.Option("best", help="Which checkpoint of RUN: best or last."),
    engine: str = typer.Option("torch", help="torch, or onnxruntime (runs RUN/best.onnx from `unetseg export`)."),
    compile: bool = CompileOpt,
    method: str = typer.Option("unet", "--method", help="unet: the run's model. ndwi or mndwi: no model, a water "
                               "index ((green - nir) / (green + nir), or swir1 for mndwi) thresholded by Otsu's "
                               "method (never below 0); needs rasters with those bands named (or --bands GREEN,NIR). "
                               "unet+ndwi or unet+mndwi: the model and the index, water where either finds it "
                               "(multi-band rasters: catches flooded vegetation the RGB model misses)."),
    gsd: Optional[float] = typer.Option(None, "--gsd", help="Metres per pixel of inputs without georeferencing "
                                        "(plain images), so that --scale auto can match them to the model."),
    nproc: int = typer.Option(1, "--nproc", help="Processes to share the inputs (torchrun on this machine); "
                              "each takes its share, one summary at the end. On several machines, use torchrun "
                              "directly (docs/predict.md)."),
    precision: str = PrecOpt, device: str = DeviceOpt, overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace outputs that already exist."),
    skip_done: bool = typer.Option(False, "--skip-done", help="Leave out the inputs an earlier predict into --out "
                                   "finished (a row in its predictions.json and their outputs there), with the same "
                                   "run and settings, and replace the outputs of those it had begun: after Ctrl-C "
                                   "or a crash, the same command goes on."),
    quiet: bool = QuietOpt,
):
    """Segment images of any size and GeoTIFF scenes with a trained run.

    Plain images (JPG, PNG) give OUT/NAME_mask.png (water white), NAME_overlay.jpg and, with
    --probabilities, NAME_probability.png. Rasters (GeoTIFF, COG, VRT, JPEG 2000: anything GDAL reads)
    are read and written window by window (memory stays flat whatever their size) and give
    OUT/NAME_mask.tif, a Cloud-Optimized GeoTIFF with the input's CRS, transform and size (0 land,
    1 water, 255 no-data), and NAME_water.geojson (RFC 7946: longitude/latitude) with one polygon per
    water body and its true ground area in m2. OUT/predictions.csv and .json get a row per input: water
    fraction, water area, polygons, the scale used, tiles and seconds.

    Bands are picked by their names (red, green, blue; Sentinel-2's B04, B03, B02), alpha bands and
    no-data values mask pixels out, and large inputs are cut into overlapping tiles blended with a
    cosine window, so there are no seams. See docs/predict.md for scale, bands, areas and a
    Sentinel-2 recipe.

    \b
    Examples:
      unetseg predict runs/improved photo.jpg --out predictions
      unetseg predict runs/improved S2_L2A.tif --value-range 1000,5000 --out scene --vectors gpkg --min-area 1000
      unetseg predict --method mndwi S2_L2A.tif --value-range 1000,5000 --out scene-mndwi
      unetseg predict water S2_L1C.tif --method unet+mndwi --out flood
      unetseg predict water scenes/ --out water --nproc 2
    """
    from .config import PredictConfig, parse_scale, uses_model
    from .distributed import shutdown
    from .predict.pipeline import predict as run_predict
    from .data.sources import parse_bands, parse_value_range

    cfg = PredictConfig(tile=tile, overlap=overlap, batch_size=batch_size, blend=blend, scale=parse_scale(scale),
                        threshold=threshold, tta=tta, bands=parse_bands(bands),
                        value_range=parse_value_range(value_range), nodata=nodata, probabilities=probabilities,
                        vectors=vectors,
                        quicklook=quicklook, overlay=not no_overlay,
                        vector_crs=vector_crs, min_area=min_area, simplify=simplify, checkpoint=checkpoint,
                        engine=engine, compile=compile, method=method, gsd=gsd, recursive=recursive)
    cfg.check()  # every option, and the device, before any file is looked at
    if not uses_model(method):  # no run: every argument is an input
        run, inputs = None, [p for p in [run, *(inputs or [])] if p is not None]
    elif run is None or not inputs:
        raise ValueError("give a run folder and at least one input: unetseg predict RUN INPUT... --out DIR")
    if not inputs:
        raise ValueError("give at least one input: unetseg predict --method ndwi INPUT... --out DIR")
    rt = _runtime(precision, device)
    world = _world(nproc, rt)
    try:
        run_predict(run, inputs, out, cfg, rt, overwrite, progress=not quiet,
                    log=lambda m: typer.echo(m, err=m.startswith("error:")), world=world, skip_done=skip_done)
    finally:
        shutdown()


@app.command()
@friendly
def serve(
    run: Path = typer.Argument(..., help="Run folder made by `unetseg train`, or a shipped model (water)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface: set --token)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", envvar="UNETSEG_TOKEN", show_envvar=True,
                                        help="Require `Authorization: Bearer TOKEN` on the API (/v1/*); the page "
                                             "asks for it once. /health and /metrics stay open."),
    cors_origin: Optional[str] = typer.Option(None, "--cors-origin", help="Let pages from this one origin (e.g. "
                                              "https://maps.example.org) call the API; CORS is off otherwise."),
    log_format: str = typer.Option("text", "--log-format", help="Access log, one line per request: text or json."),
    max_upload_mb: float = typer.Option(32, "--max-upload-mb", help="Largest upload accepted (413 above)."),
    max_pixels: int = typer.Option(4096 * 4096, "--max-pixels", help="Largest image accepted, in pixels (422 "
                                   "above); large scenes belong to `unetseg predict`."),
    max_queue: int = typer.Option(8, "--max-queue", help="Segment requests in the server at once, running or "
                                  "waiting for the model; one more gets 503 with Retry-After (memory stays "
                                  "bounded whatever the number of clients)."),
    checkpoint: str = typer.Option("best", help="Which checkpoint of RUN: best or last."),
    precision: str = PrecOpt, device: str = DeviceOpt,
):
    """Serve a run over HTTP: a web page at / and a JSON API (OpenAPI document at /openapi.json).

    POST /v1/segment (multipart field `image`: PNG, JPEG, TIFF or GeoTIFF) takes predict's options as
    query parameters (threshold, tta, scale, bands, value_range, nodata) and returns the water fraction, the
    water area for georeferenced images and the PNGs asked for (outputs=mask,overlay,probability,image);
    or, for a TIFF, format=geotiff (the mask GeoTIFF) or format=geojson (the water polygons). GET /health,
    GET /v1/model, GET /metrics (Prometheus). Every error is {"status": N, "detail": "one line"}. One
    access-log line per request goes to stdout. docs/serve.md has the details.

    \b
    Examples:
      unetseg serve water --port 8000, then open http://127.0.0.1:8000/
      curl -F image=@chip.jpg 'http://127.0.0.1:8000/v1/segment?outputs=mask,overlay'
      curl -F image=@scene.tif -o scene_mask.tif 'http://127.0.0.1:8000/v1/segment?format=geotiff'
      UNETSEG_TOKEN=s3cret unetseg serve water --host 0.0.0.0
    """
    try:
        import uvicorn

        from .serve.app import Access, Limits, create_app
    except ImportError as e:
        raise DataError(f"serve needs FastAPI and uvicorn: pip install 'unetseg[serve]' ({e.name} missing)") from None
    from .config import PredictConfig

    if max_upload_mb <= 0 or max_pixels <= 0 or max_queue <= 0:
        raise ValueError("--max-upload-mb, --max-pixels and --max-queue must be positive")
    if log_format not in ("text", "json"):
        raise ValueError(f"--log-format {log_format!r}: choose text or json")
    if token is not None and not token.strip():
        raise ValueError("--token: empty (give a secret, or leave --token and UNETSEG_TOKEN out)")
    _check_port(host, port)  # before the model loads
    app_ = create_app(run, _runtime(precision, device, reuse_memory=False), PredictConfig(checkpoint=checkpoint),
                      Limits(int(max_upload_mb * 1024 * 1024), max_pixels, max_queue), log=lambda m: typer.echo(m),
                      access=Access(token, cors_origin, log_format))
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.echo(f"warning: listening on {host} without --token: anyone who reaches this port can use the API",
                   err=True)
    typer.echo(f"serving {run} on http://{host}:{port}/  (API document: http://{host}:{port}/openapi.json; "
               f"{'token required on /v1/*; ' if token else ''}Ctrl-C stops)")
    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)


def _check_port(host: str, port: int) -> None:
    """One line for a port out of range, an address this machine does not have, or a port already taken."""
    import socket

    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port}: must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"--host {host!r}: not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            sock.bind(address)
        except OSError as e:
            import errno

            if e.errno == errno.EADDRINUSE:
                raise ValueError(f"--port {port}: {host}:{port} is in use (another server?); choose another "
                                 "--port") from None
            raise ValueError(f"--host {host}: cannot listen there ({e.strerror})") from None


@app.command("import")
@friendly
def import_(
    weights: Path = typer.Argument(..., help="A state dict saved with torch.save (.pt / .pth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create."),
    recipe: str = RecipeOpt, model: Optional[str] = ModelOpt, base_width: Optional[int] = WidthOpt,
    image_size: Optional[int] = SizeOpt,
    depth: Optional[int] = typer.Option(None, "--depth", help="Levels of the U-Net (5 for the seed)."),
    in_channels: int = typer.Option(3, "--in-channels", help="Input channels the weights expect."),
    num_classes: int = typer.Option(1, "--num-classes", help="1 for water / not water (sigmoid), else the classes."),
    overwrite: bool = OverOpt,
):
    """Turn U-Net weights saved with torch.save into a run folder (safetensors + SHA-256).

    This is the only command that reads a pickled file, and it reads it with torch.load(weights_only=True):
    tensors and plain containers only, so a file that would run code is refused before any of it runs.
    Everything else in unetseg loads safetensors only.

    Example: unetseg import unet_water.pth --out runs/imported --recipe seed && unetseg predict runs/imported scene.tif -o s
    """
    from .checkpoint import import_weights

    r = _recipe(recipe, None, None, None, image_size, model, base_width, None)
    r = dataclasses.replace(r, model=dataclasses.replace(r.model, in_channels=in_channels, num_classes=num_classes,
                                                         depth=depth or r.model.depth))
    import_weights(weights, out, r, overwrite)
    typer.echo(f"imported {weights} as {r.model.name} (base width {r.model.base_width}) into {out}/best.safetensors")


@app.command()
@friendly
def export(
    run: Path = typer.Argument(..., help="Run folder made by `unetseg train`, or a shipped model's name (water)."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write (default: RUN/<checkpoint>.onnx; "
                                       "for a shipped model $UNETSEG_CACHE/onnx/, where predict --engine "
                                       "onnxruntime finds it)."),
    checkpoint: str = typer.Option("best", help="Which checkpoint of RUN: best or last."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
):
    """Export a trained model to ONNX: fp32, dynamic batch, height and width, checked against PyTorch.

    The file is written only if onnxruntime's logits match PyTorch's within 1e-3 and the masks agree
    on at least 99.9% of pixels (printed). `unetseg predict RUN ... --engine onnxruntime` runs it.

    Example: unetseg export runs/improved && unetseg predict runs/improved scene.tif --engine onnxruntime --out s

    Example: unetseg export water && unetseg predict water scene.tif --engine onnxruntime --out s
    """
    from .export import FORMATS, export_onnx

    if format not in FORMATS:
        raise ValueError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    r = export_onnx(run, out, checkpoint, overwrite)
    typer.echo(f"wrote {r['path']} in {r['seconds']} s; onnxruntime vs PyTorch: max |logit diff| "
               f"{r['max_abs_logit_diff']:.2e}, masks agree on {100 * r['mask_agreement']:.3f}% of pixels")


@app.command()
@friendly
def benchmark(
    model: str = typer.Option("unet", "--model", help="Model to time: unet (the seed U-Net), unet-bn, ternausnet."),
    base_width: int = typer.Option(32, "--base-width", help="First level's filters (32 for the seed)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step."),
    image_size: int = typer.Option(128, "--image-size", help="Image side in pixels."),
    rounds: int = typer.Option(3, help="Timed steps of each variant, in alternation (the median is kept)."),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="Include torch.compile (slow to warm up)."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Include onnxruntime (exports the model first)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here (to compare "
                                            "machines: a GPU, another CPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
):
    """Time training and inference for every engine and precision on this machine, side by side.

    Training: fp32 eager, the best precision with channels_last, and compiled. Inference: fp32 eager
    (PyTorch's own layers), then predict's eager model (convolutions packed for oneDNN with their ReLU) in
    fp32 + channels_last and bf16 + channels_last (where bf16 is native), compiled, and onnxruntime. Each as
    img/s, a ratio to fp32 eager, and a fraction of the measured matmul roofline in its precision (FLOPs
    counted by PyTorch; training = 3x the forward). Also the share of a training step spent on data.

    Example: unetseg benchmark --json bench.json     (about 3 minutes on 2 cores)
    """
    from .benchmark import format_table, run_benchmark
    from .config import ModelConfig
    from .atomic import check_new_file, write_json_atomic

    for name, value, least in (("--batch-size", batch_size, 1), ("--image-size", image_size, 16),
                               ("--rounds", rounds, 1), ("--base-width", base_width, 1)):
        if value < least:
            raise ValueError(f"{name} {value}: must be at least {least}")
    if json_out:
        check_new_file(json_out, overwrite)
    cfg = ModelConfig(name=model, base_width=base_width, batch_norm=model != "unet")
    result = run_benchmark(cfg, batch_size, image_size, rounds, compile, onnx, log=lambda m: typer.echo(m))
    typer.echo(format_table(result))
    if json_out:
        write_json_atomic(json_out, result)
        typer.echo(f"wrote {json_out}")


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o",
                             help="Folder for the outputs; a rerun replaces the demo's own files there, nothing else."),
    model: str = typer.Option("water", "--model", help="A shipped model's name or a run folder."),
):
    """Segment one real Sentinel-2 scene with the shipped water model and say where the picture is (the end of
    `make run`). Uses accra.tif from $UNETSEG_REAL_SCENES, or from real-scenes beside the water-bodies data
    ($UNETSEG_DATA, default ../shared/data/water-bodies), when it is there; else a synthetic sample.

    Example: unetseg demo --out runs/demo
    """
    from .demo import demo as run_demo

    run_demo(out, model, log=lambda m: typer.echo(m))


@app.command()
@friendly
def ship(
    run: Path = typer.Argument(..., help="Run folder to ship (its best checkpoint)."),
    name: str = typer.Option("water", "--name", help="The name users will type: unetseg predict NAME ..."),
    version: int = typer.Option(1, "--version", help="Version number; the folder is NAME-vVERSION."),
    out: Path = typer.Option(Path("src/unetseg/zoo"), "--out", "-o", help="Where shipped models live."),
    card: Path = typer.Option(Path("configs/model-card.md"), "--card", help="Model card template ({figures}, "
                              "{mask_agreement}, ... are filled in)."),
    overwrite: bool = OverOpt,
):
    """Package a run as a shipped model (maintainers): float16 weights checked against float32 on the run's
    test chips (masks must agree on 99.9% of pixels), at most 5 MB, with run.json and a model card.

    Then pin the printed SHA-256 in unetseg/zoo.py's SHIPPED.

    Example: unetseg ship runs/general-v3-s42 --name water --version 2
    """
    from .shipping import ship as do_ship

    r = do_ship(run, name, version, out, card.read_text(), overwrite)
    typer.echo(f"wrote {r['folder']}: {r['bytes']:,} bytes, masks agree on {100 * r['mask_agreement']:.3f}% of "
               f"{r['parity_images']} test chips; SHA-256 {r['sha256']}")


@app.command()
@friendly
def synth(
    out: Path = typer.Argument(..., help="Folder to create (Images/ and Masks/ inside)."),
    n: int = typer.Option(400, "--n", help="Number of chips."),
    min_size: int = typer.Option(48, help="Smallest chip side in pixels."),
    max_size: int = typer.Option(320, help="Largest chip side in pixels."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same files."),
    multiclass: bool = typer.Option(False, "--multiclass",
                                    help="4 channels (R, G, B, NIR, as .npy) and 4 classes (land, water, vegetation, "
                                         "built-up, as PNG colours), with a dataset.yaml."),
    overwrite: bool = OverOpt, quiet: bool = QuietOpt,
):
    """Write a deterministic synthetic water-scene dataset in the Kaggle layout.

    Satellite-like land textures with lakes, rivers and coastlines; chips of varied sizes; JPEG masks
    with JPEG noise, as in the real data. The main job uses it on a machine with no data.

    Examples: unetseg synth data/synthetic --n 400;  unetseg synth data/multiclass --multiclass
    """
    from .data.synth import SynthConfig, write_synthetic

    cfg = SynthConfig(n=n, min_size=min_size, max_size=max_size, seed=seed, multiclass=multiclass)
    path = write_synthetic(out, cfg, overwrite, progress=not quiet)
    typer.echo(f"wrote {n} synthetic image/mask pairs to {path}")


@app.command()
@friendly
def download(
    out: Path = typer.Argument(Path("data/water-bodies"), help="Folder to create (Images/ and Masks/ inside)."),
    dataset: str = typer.Option("franciscoescobar/satellite-images-of-water-bodies", help="Kaggle dataset handle."),
    overwrite: bool = OverOpt,
):
    """Download "Satellite Images of Water Bodies" from Kaggle (needs internet and Kaggle credentials).

    Uses kagglehub, so credentials come from KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json.

    Example: unetseg download data/water-bodies && unetseg reproduce --data data/water-bodies
    """
    from .data.download import download_dataset

    path, pairs = download_dataset(out, dataset, overwrite)
    typer.echo(f"downloaded {dataset}: {pairs} image/mask pairs in {path}")


@app.command("runs")
@friendly
def runs_(
    root: Path = typer.Argument(Path("runs"), help="Folder searched for run folders (any depth)."),
    sort: str = typer.Option("test_miou", help="Column to sort by (numbers: highest first)."),
    markdown: bool = typer.Option(False, "--markdown", help="A Markdown table, for a README."),
):
    """List run folders as a table: model, recipe, parameters, epochs, training minutes, test scores.

    Epochs read 10/25 where a time budget (train --minutes) stopped a run before its recipe's 25.

    Example: unetseg runs runs --sort train_min
    """
    from .runs import format_table, list_runs

    rows = list_runs(root)
    if not rows:
        raise FileNotFoundError(f"{root}: no run folders (folders with run.json) found")
    typer.echo(format_table(rows, sort, markdown))


@app.command("augment-preview")
@friendly
def augment_preview(
    data: Path = typer.Option(None, "--data", "-d", help="Folder with Images/ and Masks/, or an image folder and a mask folder per class (docs/em.md); default: $UNETSEG_DATA."),
    out: Path = typer.Option(Path("augment-preview.png"), "--out", "-o", help="PNG to write."),
    recipe: str = typer.Option("improved", "--recipe", "-r", help="Recipe whose augmentation is shown."),
    n: int = typer.Option(4, "--n", help="Chips (rows)."),
    views: int = typer.Option(3, help="Augmented versions of each chip (column pairs)."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = OverOpt,
):
    """Draw chips and augmented copies (image above its mask) to check augmentation by eye.

    Example: unetseg augment-preview --data ../shared/data/water-bodies --out aug.png
    """
    from .atomic import check_new_file
    from .preview import augment_preview as draw
    from .workflow import default_data_dir

    check_new_file(out, overwrite)
    draw(data or default_data_dir(), get_recipe(recipe), out, n, views, seed)
    typer.echo(f"wrote {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
