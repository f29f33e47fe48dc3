"""Settings as plain dataclasses: the model, the training recipe and the split."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError
from .version import __version__


@dataclass
class AugmentConfig:
    """Which augmentations training applies (augment.Augment builds them with kornia)."""

    flips: bool = True
    rot90: bool = True
    scale: tuple[float, float] | None = (0.5, 1.0)  # random resized crop: area fraction kept; None = off
    crop_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2  # RGB inputs only
    hue: float = 0.03  # RGB inputs only
    jitter_p: float = 0.8
    noise_std: float = 0.0  # Gaussian noise on the [0, 1] image; 0 = off
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    # for imagery that does not look like the training data (other sensors, renderings, atmospheres)
    gamma: tuple[float, float] | None = None  # random gamma range, e.g. (0.6, 1.6); None = off
    gamma_p: float = 0.5
    channel_gain: float = 0.0  # each channel times 1 +- this (colour balance); 0 = off
    channel_gain_p: float = 0.5
    haze: float = 0.0  # blend towards a bright grey-blue veil by up to this fraction; 0 = off
    haze_p: float = 0.3
    jpeg: tuple[float, float] | None = None  # JPEG quality range, e.g. (30, 95); None = off
    jpeg_p: float = 0.3
    # the U-Net paper's key augmentation for microscopy: a smooth random displacement field, the same for
    # image and mask (kornia's RandomElasticTransform: Gaussian-smoothed noise, sigma px, times alpha)
    elastic_p: float = 0.0  # 0 = off
    elastic_sigma: float = 8.0
    elastic_alpha: float = 2.0  # in kornia's units (half the image = 1): about 2.6 px RMS on 128 px chips


@dataclass
class ModelConfig:
    """What to build: a registry name and its hyper-parameters."""

    name: str = "unet"
    in_channels: int = 3
    num_classes: int = 1  # 1 = binary (sigmoid); >1 = softmax over classes (or sigmoids, if multilabel)
    multilabel: bool = False  # classes may overlap: a sigmoid per class, class maps are bit sets
    base_width: int = 32
    depth: int = 5  # levels, the deepest without pooling; inputs are padded to a multiple of 2**(depth-1)
    batch_norm: bool = False
    dropout: float = 0.0
    encoder_weights: str | None = None  # a local torchvision VGG11 state dict, for ternausnet

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.depth - 1)


@dataclass
class SplitConfig:
    """A split by a seeded hash of each file name: the expected fractions in test and validation.
    The defaults expect the seed's 300 test and 250 validation files out of 2841."""

    test: float = 0.1056
    val: float = 0.088
    seed: int = 42


@dataclass
class Recipe:
    """How to train."""

    name: str = "seed"
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 18
    minutes: float = 0.0  # wall-clock budget for training; the epochs are cut to what fits (0 = no budget)
    batch_size: int = 32
    image_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "bce"  # bce | bce+dice (binary); ce | ce+dice (several classes)
    schedule: str = "plateau"  # plateau | onecycle | cosine | none
    plateau_factor: float = 0.3
    plateau_patience: int = 3
    early_stopping_patience: int = 5  # 0 switches it off
    monitor: str = "val_loss"  # which validation figure picks best.safetensors and drives the schedule
    seed: int = 42  # weights, data order, augmentation, scene crops
    split_seed: int = 42  # which files (and scenes) are test and validation: fixed, so --seed N compares models
    mask_threshold: int = 128
    augment: AugmentConfig | None = None
    chip_augment: AugmentConfig | None = None  # with scene crops: the chips' own augmentation (None: `augment`)
    # scenes beside the chips (`train --scenes`): random crops at a stated ground scale, mixed into every epoch
    scene_ratio: float = 0.0  # scene crops per training chip in each epoch; 0 = chips only
    model_gsd: float | None = None  # metres on the ground per model pixel in the scene crops
    scene_scale: tuple[float, float] = (1.0, 1.0)  # random factor on that ground scale (log-uniform)
    scene_val: float = 0.25  # fraction of the scenes held out for validation (by scene, never by crop)
    scene_gsd: float = 10.0  # metres per pixel of scene images that carry no georeferencing
    # large slices (microscopy): chips cut on a grid at the images' own resolution, not whole images resized
    chips: str = "resize"  # resize | grid
    chip_stride: int = 0  # grid: px between chips; 0 = half the chip size
    border_weight: float = 0.0  # the U-Net paper's w0: loss weight added at thin gaps between objects; 0 = off
    border_sigma: float = 5.0  # ...falling off over this many px
    split_val: float = 0.088  # validation fraction of the files not in a fixed part
    dataset: dict | None = None  # the dataset description (as dataset.yaml) when the data folder has none

    def check(self) -> None:
        """The numbers a user can override, each in its range (one line naming the option, before any work)."""
        for option, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 1),
                                   ("--image-size", self.image_size, 16), ("--base-width", self.model.base_width, 1)):
            if value < low:
                raise ValueError(f"{option} {value}: must be at least {low}")
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr}: must be a positive number")
        if not (self.minutes >= 0 and math.isfinite(self.minutes)):
            raise ValueError(f"--minutes {self.minutes}: must be a number of minutes (0 = no time budget)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = False) -> "Recipe":
        """The recipe of a run.json. Model settings this version lacks would change the network: refused. Other
        settings it lacks (a newer version's training options) are left out, or refused when `strict` (resuming
        a run without them would train it differently)."""
        d = dict(d)
        model = d.pop("model", {})
        if unknown := sorted(set(model) - _names(ModelConfig)):
            raise DataError(f"run.json: model setting(s) {', '.join(unknown)} unknown to unetseg {__version__} "
                            f"(a run made by another version?)")
        augs = {part: d.pop(part, None) for part in ("augment", "chip_augment")}
        if strict and (unknown := sorted(set(d) - _names(cls)) + [
                f"{part}.{k}" for part, a in augs.items() if isinstance(a, dict)
                for k in sorted(set(a) - _names(AugmentConfig))]):
            raise DataError(f"run.json: training setting(s) {', '.join(unknown)} unknown to unetseg {__version__}; "
                            "resuming here would train without them (resume it with the version that started it)")
        augs = {part: AugmentConfig(**_known(AugmentConfig, a)) if isinstance(a, dict) else a
                for part, a in augs.items()}
        return cls(model=ModelConfig(**model), **augs, **_known(cls, d))


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _known(cls, d: dict[str, Any]) -> dict[str, Any]:
    """The items of d that are fields of the dataclass cls."""
    names = _names(cls)
    return {k: v for k, v in d.items() if k in names}


def _seed() -> Recipe:
    """SEED.md: Keras U-Net, BCE, Adam 1e-3, batch 32, 18 epochs, 128 px, plateau 0.3/3, early stop 5."""
    return Recipe(name="seed")


def _quick() -> Recipe:
    """A small U-Net with batch norm for a few minutes on 2 cores: the `make run` demo."""
    return Recipe(
        name="quick",
        model=ModelConfig(name="unet-bn", base_width=16, batch_norm=True),
        epochs=3,
        batch_size=16,
        image_size=96,  # about 5 min on 2 fp32 cores for 2290 chips; half that with native bf16
        early_stopping_patience=0,
        monitor="val_miou",
    )


def _improved() -> Recipe:
    """Beats the seed within 60 min on a 2-core fp32 CPU: a half-width U-Net with batch norm, augmentation,
    BCE + Dice, AdamW with a one-cycle schedule, more epochs, early stopping on validation mean IoU."""
    return Recipe(
        name="improved",
        model=ModelConfig(name="unet-bn", base_width=16, batch_norm=True),
        epochs=19,  # 19 x 2290 chips: about 28 min at 26 img/s in fp32 on 2 cores (bench/train_throughput.py)
        batch_size=16,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        loss="bce+dice",
        schedule="onecycle",
        early_stopping_patience=10,
        monitor="val_miou",
        augment=AugmentConfig(),
    )


def _ternausnet() -> Recipe:
    """The improved recipe's training with TernausNet (VGG11 encoder), from scratch unless --encoder-weights."""
    r = _improved()
    r.name = "ternausnet"
    r.model = ModelConfig(name="ternausnet", base_width=32, batch_norm=True)
    r.epochs = 8
    return r


def _general() -> Recipe:
    """Water on real imagery, not just the chips' look: the improved recipe's model and schedule, trained on the
    chips and on as many random crops of real scenes (at 20 m per model pixel, times 0.5 to 2), with
    augmentation aimed at other sensors, renderings and atmospheres."""
    r = _improved()
    r.name = "general"
    r.epochs = 25  # 25 x (2313 chips + 2313 crops): ~45-53 min in bf16 (2-core AMX Xeon), 1.6-2.9 h in fp32 (AVX2),
    #                where --minutes 60 fits 10 of them
    r.scene_ratio, r.model_gsd, r.scene_scale = 1.0, 20.0, (0.5, 2.0)
    r.augment = AugmentConfig(brightness=0.3, contrast=0.3, saturation=0.4, hue=0.05, gamma=(0.6, 1.7),
                              channel_gain=0.15, haze=0.45, blur_p=0.2, blur_sigma=(0.1, 1.5), jpeg=(30, 95),
                              noise_std=0.02)
    r.chip_augment = AugmentConfig()  # the chips keep the improved recipe's milder colour changes
    return r


ISBI_DATASET = {"channels": ["grey"], "task": "membranes",
                "classes": [{"name": "membrane", "value": 0}, {"name": "cell", "value": 255}],
                # the last five slices held out (serial sections: neighbours look alike), three before them validate
                "split": {"test": [f"slice_{i:02d}" for i in range(25, 30)],
                          "val": [f"slice_{i:02d}" for i in range(22, 25)]}}


def _microscopy(name: str, epochs: int, loss: str, stride: int, elastic_p: float) -> Recipe:
    """What the EM recipes share: a half-width U-Net with batch norm on 256 px chips cut at the slices' own
    resolution, AdamW one-cycle, elastic deformation and grey gain/offset, best checkpoint by validation IoU."""
    return Recipe(
        name=name, model=ModelConfig(name="unet-bn", base_width=16, batch_norm=True), epochs=epochs, batch_size=8,
        image_size=256, optimizer="adamw", lr=3e-3, weight_decay=1e-4, loss=loss, schedule="onecycle",
        early_stopping_patience=0, monitor="val_miou", chips="grid", chip_stride=stride,
        augment=AugmentConfig(scale=(0.6, 1.0), brightness=0.15, contrast=0.15, elastic_p=elastic_p,
                              elastic_sigma=10.0, elastic_alpha=1.0, noise_std=0.02))


def _isbi2012() -> Recipe:
    """The ISBI 2012 membrane stack (the U-Net paper's data): 9 chips per 512 px slice, the paper's border weights
    (w0 10, sigma 5) on cross-entropy + Dice; the last 5 of the 30 slices held out for test, 3 for validation."""
    r = _microscopy("isbi2012", epochs=60, loss="ce+dice", stride=128, elastic_p=0.7)  # 60 x 198 chips: ~18 min
    r.border_weight, r.border_sigma, r.dataset = 10.0, 5.0, ISBI_DATASET  # at 11 img/s (bf16, 2-core Xeon, AMX)
    return r


def _epfl_em() -> Recipe:
    """The EPFL CA1 stack with six overlapping structures, multi-label (a sigmoid each, BCE + Dice): 20 chips
    per 1024 x 768 slice; its own 5 test slices, 4 of the 27 training slices for validation."""
    r = _microscopy("epfl-em", epochs=25, loss="bce+dice", stride=192, elastic_p=0.5)  # 25 x 460 chips: ~20 min
    r.split_val = 0.15
    return r


RECIPES = {"seed": _seed, "quick": _quick, "improved": _improved, "ternausnet": _ternausnet, "general": _general,
           "isbi2012": _isbi2012, "epfl-em": _epfl_em}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]()
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


def parse_scale(text: str) -> str | float:
    """--scale: 'auto', 'fit' or a number (checked by PredictConfig.check)."""
    if text in ("auto", "fit"):
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--scale {text!r}: auto, fit or a positive number") from None


# unet: the run's model; ndwi, mndwi: a water index with Otsu's threshold, no model; unet+ndwi, unet+mndwi: the
# model and the index on the same raster, water where either finds it (docs/scenes.md)
METHODS = ("unet", "ndwi", "mndwi", "unet+ndwi", "unet+mndwi")


def index_of(method: str) -> str | None:
    """The water index a method uses (ndwi, mndwi), or None for the model alone."""
    return method.removeprefix("unet+") if method != "unet" else None


def uses_model(method: str) -> bool:
    """Whether a method runs the trained model (unet, unet+INDEX) rather than an index alone."""
    return method == "unet" or method.startswith("unet+")


@dataclass
class PredictConfig:
    """How to run a trained model over images and rasters (`unetseg predict`).

    tile and overlap are in model pixels, i.e. after the input is resized by `scale`.
    scale: 'auto' (the median factor by which the training chips were resized; see docs/predict.md),
    'fit' (each image resized to the training chip size, exactly as in training), or a number.
    """

    tile: int = 256
    overlap: int = 32
    batch_size: int = 8
    blend: str = "cosine"  # cosine | linear | average | none (hard cut at the middle of each overlap)
    scale: str | float = "auto"
    threshold: float = 0.5
    tta: str = "none"
    bands: list[int] | None = None  # 1-based raster bands in the model's channel order
    value_range: str | tuple[float, float] = "auto"  # auto | percentile | (lo, hi)
    nodata: float | None = None  # a value that marks no-data (in every band) besides what the file declares
    probabilities: bool = False  # a probability PNG / a second GeoTIFF band
    quicklook: bool = False  # rasters: also NAME_overlay.jpg, the water over the image, at most 2048 px a side
    overlay: bool = True  # plain images: NAME_overlay.jpg beside the mask
    vectors: str = "geojson"  # geojson | gpkg | none (raster inputs only)
    vector_crs: str = "auto"  # auto (GeoJSON: WGS84 as RFC 7946 wants; GeoPackage: the raster's) | wgs84 | raster
    min_area: float = 0.0  # drop polygons smaller than this (square metres; pixels when there is no CRS)
    simplify: float = 0.0  # Douglas-Peucker tolerance in CRS units (pixels when there is no CRS)
    checkpoint: str = "best"
    engine: str = "torch"  # torch | onnxruntime (RUN/<checkpoint>.onnx, made by `unetseg export`)
    compile: bool = False  # torch.compile the model (torch engine; warm-up once per tile shape)
    method: str = "unet"  # one of METHODS: the run's model, a water index (no model), or both (water where either)
    gsd: float | None = None  # metres per pixel of inputs without georeferencing (for --scale auto)
    recursive: bool = False  # folders given as inputs: their subfolders' images too (outputs stay flat in OUT)

    def check(self) -> None:
        """Every option on its own, before any file is looked at."""
        from .inference import TTA_VIEWS
        from .predict.tiling import BLENDS

        if self.tta not in TTA_VIEWS:
            raise ValueError(f"--tta {self.tta!r}: choose one of {', '.join(TTA_VIEWS)}")
        if self.blend not in BLENDS:
            raise ValueError(f"--blend {self.blend!r}: choose one of {', '.join(BLENDS)}")
        if self.vector_crs not in ("auto", "wgs84", "raster"):
            raise ValueError(f"--vector-crs {self.vector_crs!r}: choose auto, wgs84 or raster")
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r}: choose {', '.join(METHODS)}")
        if self.gsd is not None and not self.gsd > 0:
            raise ValueError(f"--gsd {self.gsd}: must be a positive number of metres")
        if self.nodata is not None and not math.isfinite(self.nodata):
            raise ValueError(f"--nodata {self.nodata}: give a finite number (NaN and infinities are no-data in "
                             "float rasters already)")
        if self.checkpoint not in ("best", "last"):
            raise ValueError(f"--checkpoint {self.checkpoint!r}: choose best or last")
        if self.engine not in ("torch", "onnxruntime"):
            raise ValueError(f"--engine {self.engine!r}: choose torch or onnxruntime")
        if self.compile and self.engine != "torch":
            raise ValueError("--compile applies to --engine torch (onnxruntime optimises its own graph)")
        if self.tile < 16:
            raise ValueError(f"--tile {self.tile}: must be at least 16 model pixels")
        if not 0 <= self.overlap <= self.tile // 2:
            raise ValueError(f"--overlap {self.overlap}: must be between 0 and half the tile ({self.tile // 2})")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: must be at least 1")
        if not 0 < self.threshold < 1:
            raise ValueError(f"--threshold {self.threshold}: must be between 0 and 1")
        if self.vectors not in ("geojson", "gpkg", "none"):
            raise ValueError(f"--vectors {self.vectors!r}: choose geojson, gpkg or none")
        if self.min_area < 0 or self.simplify < 0:
            raise ValueError("--min-area and --simplify must not be negative")
        if isinstance(self.scale, str) and self.scale not in ("auto", "fit"):
            raise ValueError(f"--scale {self.scale!r}: auto, fit or a positive number")
        if not isinstance(self.scale, str) and not 0.01 <= self.scale <= 16:
            raise ValueError(f"--scale {self.scale}: must be between 0.01 and 16")
