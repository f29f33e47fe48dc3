"""Scenes: whole images or GeoTIFFs with a label raster each, for evaluation on real imagery and for training.

A scene set is a folder with Images/ and Masks/ (matched by name; water where the mask is above 127), or a
small yaml that says where the files are and how to read their labels:

    name: real-scenes                  # used for output names (default: the file's stem)
    root: ../../shared/data/real-scenes   # where the files are, relative to this yaml (default: its folder)
    gsd: 10                            # metres per pixel of images without georeferencing (optional)
    value_range: auto                  # every scene's, unless it gives its own (optional)
    scenes:
      - image: Spain_7370579_S2Hand.tif
        label: Spain_7370579_LabelHand.tif
        water: 1                       # label values that are water (a number or a list)
        ignore: -1                     # label values that are not scored
      - image: accra.tif
        label: accra.tif               # the label may be a band of the image itself...
        label_band: SCL                # ...named by its description, or numbered from 1
        water: 6                       # Sentinel-2's scene classification: 6 = water
        value_range: [1000, 5000]      # as predict's --value-range (L2A's +1000 offset)

Without `water`, a label pixel is water when its value is above `threshold` (default 127, for 0/255 masks).

For training, `ScenePool` holds a list of scenes in memory at a common ground scale and cuts random crops
from them, as torchgeo's random geo-samplers do, so large scenes mix with the chips in every batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, first_line

SCENES_FILE = "scenes.yaml"


@dataclass(frozen=True)
class Scene:
    name: str
    image: Path
    label: Path
    label_band: int | str = 1
    water: tuple[float, ...] | None = None  # label values that are water; None: above `threshold`
    ignore: tuple[float, ...] = ()  # label values left out of every score
    threshold: float = 127
    bands: tuple[int, ...] | None = None
    value_range: str | tuple[float, float] = "auto"
    gsd: float | None = None  # metres per pixel when the image itself has no georeferencing
    nodata: float | None = None  # as predict's --nodata: a value that marks no-data in every band


@dataclass
class SceneSet:
    name: str
    root: Path
    scenes: list[Scene] = field(default_factory=list)


def _values(v: Any, what: str, where: Path) -> tuple[float, ...] | None:
    if v is None:
        return None
    items = v if isinstance(v, (list, tuple)) else [v]
    try:
        return tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} must be a number or a list of numbers, not {v!r}") from None


def _nodata(v: Any, where: Path) -> float | None:
    """A scene's no-data value (as predict's --nodata), or None."""
    value = _values(v, "nodata", where)
    if value is not None and (len(value) != 1 or not np.isfinite(value[0])):
        raise DataError(f"{where}: nodata must be one finite number, not {v!r}")
    return None if value is None else value[0]


def load_scene_set(path: str | Path) -> SceneSet:
    """A folder (with scenes.yaml, or Images/ + Masks/) or a scenes yaml file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such scene folder or file")
    if path.is_dir() and not (path / SCENES_FILE).exists():
        return _image_mask_folder(path)
    yaml_path = path / SCENES_FILE if path.is_dir() else path
    import yaml

    try:
        d = yaml.safe_load(yaml_path.read_text()) or {}
        if not isinstance(d, dict) or not isinstance(d.get("scenes"), list) or not d["scenes"]:
            raise ValueError("expected a mapping with a non-empty list 'scenes'")
    except (yaml.YAMLError, ValueError, OSError) as e:
        raise DataError(f"{yaml_path}: not a valid scene description ({first_line(e)})") from None
    root = (yaml_path.parent / str(d.get("root", "."))).resolve() if not path.is_dir() else path
    default_gsd = d.get("gsd")
    scenes = []
    for i, s in enumerate(d["scenes"]):
        if not isinstance(s, dict) or "image" not in s:
            raise DataError(f"{yaml_path}: scene {i + 1} needs at least 'image' and 'label'")
        image = root / str(s["image"])
        label = root / str(s.get("label", s["image"]))
        vr = s.get("value_range", d.get("value_range", "auto"))
        scenes.append(Scene(
            name=str(s.get("name", Path(str(s["image"])).stem)), image=image, label=label,
            label_band=s.get("label_band", 1), water=_values(s.get("water"), "water", yaml_path),
            ignore=_values(s.get("ignore"), "ignore", yaml_path) or (), threshold=float(s.get("threshold", 127)),
            bands=tuple(s["bands"]) if s.get("bands") else None,
            value_range=tuple(float(v) for v in vr) if isinstance(vr, (list, tuple)) else str(vr),
            gsd=float(s["gsd"]) if s.get("gsd") is not None else (float(default_gsd) if default_gsd else None),
            nodata=_nodata(s.get("nodata", d.get("nodata")), yaml_path)))
    for sc in scenes:
        for p in {sc.image, sc.label}:
            if not p.exists():
                raise DataError(f"{yaml_path}: scene {sc.name!r}: {p} does not exist")
    return SceneSet(str(d.get("name", yaml_path.stem if not path.is_dir() else path.name)), root, scenes)


def _image_mask_folder(root: Path) -> SceneSet:
    from .folder import scan_folder

    scan = scan_folder(root)
    return SceneSet(root.name, root, [Scene(p.stem, p.image, p.mask) for p in scan.pairs])


def read_label(scene: Scene, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(water, scored): two (H, W) bool arrays from the scene's label raster, checked against the image's size."""
    path = scene.label
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        from .files import open_image

        img = open_image(path)
        values = np.asarray(img.convert("L") if img.mode not in ("L", "I", "I;16", "F") else img).astype(np.float64)
    else:
        import rasterio

        try:
            with rasterio.open(path) as ds:
                band = scene.label_band
                if isinstance(band, str):
                    names = [d or "" for d in ds.descriptions]
                    if band not in names:
                        raise DataError(f"{path}: no band named {band!r} (bands: {', '.join(names) or 'unnamed'})")
                    band = names.index(band) + 1
                if not 1 <= int(band) <= ds.count:
                    raise DataError(f"{path}: label band {band} out of range (the file has {ds.count})")
                values = ds.read(int(band)).astype(np.float64)
        except rasterio.errors.RasterioIOError as e:
            raise DataError(f"{path}: not a readable label raster ({first_line(e)})") from None
    if values.shape != tuple(shape):
        raise DataError(f"{path}: label is {values.shape[1]}x{values.shape[0]} px but its image is "
                        f"{shape[1]}x{shape[0]} px")
    water = np.isin(values, scene.water) if scene.water is not None else values > scene.threshold
    scored = ~np.isin(values, scene.ignore) if scene.ignore else np.ones(values.shape, bool)
    return water & scored, scored


def split_scenes(names: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Scenes into train and val by a seeded hash of each name (stable when scenes are added); at least one
    of each when there are two or more."""
    score = {n: int.from_bytes(hashlib.sha256(f"{seed}\0scene\0{n}".encode()).digest()[:8], "big") / 2**64
             for n in names}
    val = sorted(n for n in names if score[n] < val_fraction)
    if not val and len(names) > 1:
        val = [min(names, key=score.get)]
    if len(val) == len(names) and len(names) > 1:
        val.remove(max(val, key=score.get))
    return {"train": sorted(n for n in names if n not in val), "val": val}


@dataclass
class LoadedScene:
    """A scene's pixels (H, W, 3) uint8 and labels (H, W) uint8 (0 land, 1 water, 255 not scored) in memory,
    at its native resolution of `gsd` metres per pixel."""

    name: str
    pixels: np.ndarray
    labels: np.ndarray
    gsd: float


def load_scene(scene: Scene, channels: int = 3, default_gsd: float = 10.0) -> LoadedScene:
    """Read a whole scene the way predict reads it (bands by name, value range, no-data), with its labels."""
    from ..predict.areas import PixelAreas
    from .sources import open_source

    source = open_source(scene.image, channels, list(scene.bands) if scene.bands else None, scene.value_range,
                         nodata=scene.nodata)
    try:
        raw, valid = source.read(0, 0, source.height, source.width)
        pixels = source.to_uint8(raw)
        gsd = PixelAreas(source.height, source.width, source.transform, source.crs).ground_resolution
    finally:
        source.close()
    water, scored = read_label(scene, pixels.shape[:2])
    labels = np.where(scored & valid, water.astype(np.uint8), 255).astype(np.uint8)
    return LoadedScene(scene.name, np.ascontiguousarray(pixels), labels, gsd or scene.gsd or default_gsd)


class ScenePool:
    """Random crops of `size` model pixels at a ground scale of `model_gsd` metres per pixel (times a random
    factor in `scale_range`, log-uniform), from scenes picked in proportion to their area; the resize is
    nearest-neighbour, as for the chips. `crops(n, seed)` is deterministic, so a resumed run sees the same."""

    def __init__(self, scenes: list[LoadedScene], size: int, model_gsd: float,
                 scale_range: tuple[float, float] = (1.0, 1.0)):
        if not scenes:
            raise DataError("no scenes to sample crops from")
        self.scenes, self.size, self.model_gsd, self.scale_range = scenes, size, model_gsd, scale_range
        areas = np.array([s.labels.size for s in scenes], np.float64)
        self.weights = areas / areas.sum()

    def crops(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, S, S, 3) uint8 images and (n, S, S) uint8 labels (255 = not scored)."""
        from .files import resize_to

        rng = np.random.default_rng(seed)
        images = np.zeros((n, self.size, self.size, 3), np.uint8)
        labels = np.zeros((n, self.size, self.size), np.uint8)
        lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        for i in range(n):
            sc = self.scenes[rng.choice(len(self.scenes), p=self.weights)]
            native = self.size * self.model_gsd * float(np.exp(rng.uniform(lo, hi))) / sc.gsd
            side = int(min(max(round(native), 8), *sc.labels.shape))
            y = int(rng.integers(0, sc.labels.shape[0] - side + 1))
            x = int(rng.integers(0, sc.labels.shape[1] - side + 1))
            images[i] = resize_to(sc.pixels[y:y + side, x:x + side], self.size, self.size)
            labels[i] = resize_to(sc.labels[y:y + side, x:x + side], self.size, self.size)
        return images, labels

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Every scene cut into non-overlapping crops at the model scale (for validation: fixed, no overlap)."""
        from .files import resize_to

        images, labels = [], []
        for sc in self.scenes:
            side = max(8, round(self.size * self.model_gsd / sc.gsd))
            for y in range(0, max(1, sc.labels.shape[0] - side + 1), side):
                for x in range(0, max(1, sc.labels.shape[1] - side + 1), side):
                    images.append(resize_to(sc.pixels[y:y + side, x:x + side], self.size, self.size))
                    labels.append(resize_to(sc.labels[y:y + side, x:x + side], self.size, self.size))
        return np.stack(images), np.stack(labels)


def with_root(scene_set: SceneSet, names: list[str]) -> SceneSet:
    """The same set restricted to the named scenes (in that order)."""
    by_name = {s.name: s for s in scene_set.scenes}
    return replace(scene_set, scenes=[by_name[n] for n in names if n in by_name])
