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
from .data.errors import DataError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="Semantic segmentation with U-Nets: train, evaluate and run water-body models on a CPU.\n\n"
         "Start with `unetseg reproduce --help` (the main job), or `make run`.",
)

PRECISION_HELP = "auto: bf16 where this CPU runs it natively (AMX/AVX512-BF16), else fp32; CUDA AMP on a GPU."


def friendly(fn):
    """Turn expected errors into one line on stderr and exit code 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
    return wrapper


def _recipe(name: str, epochs: Optional[int], batch_size: Optional[int], lr: Optional[float],
            image_size: Optional[int], model: Optional[str], base_width: Optional[int], seed: Optional[int]):
    recipe = get_recipe(name)
    changes = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                                     seed=seed).items() if v is not None}
    recipe = dataclasses.replace(recipe, **changes)
    mchanges = {k: v for k, v in dict(name=model, base_width=base_width).items() if v is not None}
    if mchanges:
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, **mchanges))
    return recipe


def _runtime(precision: str, device: str):
    from .runtime import select_runtime

    return select_runtime(precision, device)


RecipeOpt = typer.Option("seed", "--recipe", "-r", help=f"Training recipe: {', '.join(RECIPES)}.")
EpochsOpt = typer.Option(None, help="Override the recipe's number of epochs.")
BatchOpt = typer.Option(None, "--batch-size", help="Override the recipe's batch size.")
LrOpt = typer.Option(None, help="Override the recipe's learning rate.")
SizeOpt = typer.Option(None, "--image-size", help="Override the chip size in pixels (128 for the seed).")
ModelOpt = typer.Option(None, "--model", help="Override the model: unet, unet-bn.")
WidthOpt = typer.Option(None, "--base-width", help="Override the first level's filters (32 for the seed).")
SeedOpt = typer.Option(None, "--seed", help="Override the random seed (split, init, data order).")
PrecOpt = typer.Option("auto", "--precision", help=PRECISION_HELP)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
SkipOpt = typer.Option(False, "--skip-bad", help="Skip unreadable files (listed in run.json) instead of stopping.")
OverOpt = typer.Option(False, "--overwrite", help="Replace an existing, non-empty output folder.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


@app.command()
@friendly
def train(
    data: Path = typer.Option(None, "--data", "-d", help="Folder with Images/ and Masks/ (default: $UNETSEG_DATA)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create."),
    recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt, image_size: Optional[int] = SizeOpt, model: Optional[str] = ModelOpt,
    base_width: Optional[int] = WidthOpt, seed: Optional[int] = SeedOpt, precision: str = PrecOpt,
    device: str = DeviceOpt, skip_bad: bool = SkipOpt, overwrite: bool = OverOpt, quiet: bool = QuietOpt,
    limit: Optional[int] = typer.Option(None, help="Use only the first N pairs (for quick trials)."),
):
    """Train a U-Net on a folder of images and masks.

    Writes OUT/split.json, best/last checkpoints (.safetensors + .json), history.csv and curves.png.

    Example: unetseg train --data ../shared/data/water-bodies --out runs/seed --recipe seed
    """
    from .workflow import default_data_dir, run_train

    r = _recipe(recipe, epochs, batch_size, lr, image_size, model, base_width, seed)
    run_train(data or default_data_dir(), out, r, _runtime(precision, device), skip_bad, overwrite,
              progress=not quiet, limit=limit)


@app.command()
@friendly
def evaluate(
    run: Path = typer.Argument(..., help="Run folder made by `unetseg train`."),
    data: Path = typer.Option(None, "--data", "-d", help="Data folder (default: the one the run was trained on)."),
    checkpoint: str = typer.Option("best", help="Which checkpoint: best or last."),
    precision: str = PrecOpt, device: str = DeviceOpt, quiet: bool = QuietOpt,
):
    """Score a run on its test split: writes RUN/metrics.json, per_image.csv and test_predictions.png.

    The mean IoU is the seed's: background and water IoU from one confusion matrix over every test
    pixel at the training size, predictions thresholded at 0.5.

    Example: unetseg evaluate runs/seed
    """
    from .workflow import run_evaluate

    m = run_evaluate(run, _runtime(precision, device), data, checkpoint, progress=not quiet)
    typer.echo(f"test mean IoU {m['mean_iou']:.4f}  water IoU {m.get('water_iou', float('nan')):.4f}  "
               f"dice {m.get('dice', float('nan')):.4f}  ({m['test_images']} images) -> {run / 'metrics.json'}")


@app.command()
@friendly
def reproduce(
    data: Path = typer.Option(None, "--data", "-d",
                              help="Folder with Images/ and Masks/. Default: $UNETSEG_DATA or ../shared/data/"
                                   "water-bodies if it exists, else synthetic scenes made in OUT/synthetic-data."),
    out: Path = typer.Option(Path("runs/reproduce"), "--out", "-o", help="Run folder to create."),
    recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, batch_size: Optional[int] = BatchOpt,
    image_size: Optional[int] = SizeOpt, model: Optional[str] = ModelOpt, base_width: Optional[int] = WidthOpt,
    seed: Optional[int] = SeedOpt, precision: str = PrecOpt, device: str = DeviceOpt, skip_bad: bool = SkipOpt,
    overwrite: bool = OverOpt, quiet: bool = QuietOpt,
):
    """The main job: train, evaluate, draw the figures and write OUT/report.md in one command.

    Examples:
      unetseg reproduce --recipe seed --data ../shared/data/water-bodies --out runs/seed   (about 2 h on 2 cores)
      unetseg reproduce --recipe quick                                                    (a few minutes)
    """
    from .workflow import default_data_dir, reproduce as run

    r = _recipe(recipe, epochs, batch_size, None, image_size, model, base_width, seed)
    if data is None and default_data_dir().is_dir():
        data = default_data_dir()
        desc = f"real data at {data}"
    elif data is None:
        from .data.synth import SynthConfig, write_synthetic

        data = out.parent / f"{out.name}-synthetic-data"
        if not (data / "Images").is_dir():
            write_synthetic(data, SynthConfig(), overwrite=True)
        desc = f"synthetic scenes in {data} (no real data found at {default_data_dir()})"
    else:
        desc = str(data)
    typer.echo(f"data: {desc}")
    cmd = "unetseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    run(data, out, r, _runtime(precision, device), cmd, desc, skip_bad, overwrite, progress=not quiet)


@app.command()
@friendly
def synth(
    out: Path = typer.Argument(..., help="Folder to create (Images/ and Masks/ inside)."),
    n: int = typer.Option(400, "--n", help="Number of chips."),
    min_size: int = typer.Option(48, help="Smallest chip side in pixels."),
    max_size: int = typer.Option(320, help="Largest chip side in pixels."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same files."),
    overwrite: bool = OverOpt, quiet: bool = QuietOpt,
):
    """Write a deterministic synthetic water-scene dataset in the Kaggle layout.

    Satellite-like land textures with lakes, rivers and coastlines; chips of varied sizes; JPEG masks
    with JPEG noise, as in the real data. The main job uses it on a machine with no data.

    Example: unetseg synth data/synthetic --n 400
    """
    from .data.synth import SynthConfig, write_synthetic

    path = write_synthetic(out, SynthConfig(n=n, min_size=min_size, max_size=max_size, seed=seed), overwrite,
                           progress=not quiet)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
