"""A dataset description (DATA/dataset.yaml): input channels and how mask values or colours map to classes.

Without one, a dataset is the seed's: RGB images, water where the grey mask is above 128.

    channels: [red, green, blue, nir]     # names; their count is the model's input channels
    value_range: [0, 10000]               # raw values mapped to 0..1 (default: by data type, as predict does:
                                          # 8-bit as is, other integers 0..4000, floats 0..0.4); the older
                                          # `max_value: M` means [0, M]
    classes:                              # in order: class 0, 1, ...
      - {name: background, color: [0, 0, 0]}
      - {name: water, color: [0, 0, 255]}
      - {name: vegetation, value: 2}      # or a grey/palette index value
    color_tolerance: 0                    # max per-channel difference for a colour to match
    gsd: 10                               # metres on the ground per image pixel, if known (predict --scale auto)

Microscopy stacks often come with one folder of binary masks per class (the EPFL layout) instead of Masks/:

    channels: [grey]
    images: slices                        # the image folder (default Images, or slices/ or images/)
    classes:                              # one mask folder per class, a mask per image, same file name
      - {name: mitochondrion, folder: mitochondrion}
      - {name: membranes, folder: membranes}
    overlap: multilabel                   # masks may overlap: a sigmoid per class (the default), or
                                          # `priority`: folded into exclusive classes, background first,
                                          # then the classes, the earlier in `priority` winning a shared pixel
    priority: [membranes, mitochondrion]  # (default: the order of `classes`)
    parts: {train: epfl_train, test: epfl_test}   # sub-folders that are fixed parts (validation comes from train)
    split: {test: [slice_25, slice_26]}   # or: named files held out as fixed parts (the rest split by hash)
    task: membranes                       # binary cell interior (1) vs membrane (0): evaluate adds the ISBI
                                          # figures (pixel error, Rand error, variation of information)

Without a dataset.yaml, a folder with no Images/ but a slices/ (or images/) folder beside other folders is read
as that layout, every other folder a class, multi-label; a folder whose sub-folders are named *train* and *test*
is read as two fixed parts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

SPEC_FILE = "dataset.yaml"


@dataclass(frozen=True)
class ClassSpec:
    name: str
    value: int | None = None
    color: tuple[int, int, int] | None = None
    folder: str | None = None  # class-folders layout: the folder of this class's binary masks


@dataclass(frozen=True)
class DatasetSpec:
    channels: tuple[str, ...] = ("red", "green", "blue")
    classes: tuple[ClassSpec, ...] = field(default_factory=tuple)  # empty: binary water mask by threshold
    threshold: int = 128
    value_range: tuple[float, float] | None = None  # None: by data type (pixels.default_range)
    color_tolerance: int = 0
    gsd: float | None = None  # metres per image pixel, when the images share one ground resolution
    images: str | None = None  # the image folder (default: Images; class-folders: slices or images)
    overlap: str = "multilabel"  # class-folders: multilabel (a sigmoid per class) | priority (exclusive classes)
    priority: tuple[str, ...] = ()  # class-folders + priority: which class wins a shared pixel (default: classes)
    parts: tuple[tuple[str, str], ...] = ()  # (part, sub-folder): fixed parts, e.g. (("train", "a"), ("test", "b"))
    split: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (part, file stems): fixed test / val files
    task: str | None = None  # membranes: binary cell interior vs membrane, scored with the ISBI figures too

    @property
    def folders(self) -> bool:
        """The class-folders layout: a folder of binary masks per class."""
        return bool(self.classes) and self.classes[0].folder is not None

    @property
    def binary(self) -> bool:
        """One sigmoid output: the seed's water masks, or a single class folder."""
        return not self.classes or (self.folders and len(self.classes) == 1)

    @property
    def multilabel(self) -> bool:
        """A sigmoid per class, classes may overlap (class-folders layout); masks are bit sets (bit k = class k)."""
        return self.folders and len(self.classes) > 1 and self.overlap == "multilabel"

    @property
    def class_names(self) -> list[str]:
        names = [c.name for c in self.classes]
        if not self.classes:
            return ["background", "water"]
        if self.folders and not self.multilabel:
            return ["background"] + (names if len(names) == 1 else list(self.priority_order))
        return names

    @property
    def priority_order(self) -> tuple[str, ...]:
        return self.priority or tuple(c.name for c in self.classes)

    @property
    def model_classes(self) -> int:
        """Output channels: 1 (sigmoid) for the binary case; one per class (softmax, or sigmoids if multi-label)."""
        return 1 if self.binary else len(self.class_names)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        classes = tuple(ClassSpec(str(c["name"]), c.get("value"), tuple(c["color"]) if c.get("color") else None,
                                  str(c["folder"]) if c.get("folder") is not None else None)
                        for c in d.get("classes") or ())
        parts, split = d.get("parts") or {}, d.get("split") or {}
        parts, split = (dict(v) if isinstance(v, (list, tuple)) else v for v in (parts, split))  # to_dict's pairs
        if not isinstance(parts, dict) or not isinstance(split, dict):
            raise ValueError("'parts' and 'split' must be mappings of a part (train, val, test) to folders / names")
        return cls(channels=tuple(d.get("channels") or ("red", "green", "blue")), classes=classes,
                   threshold=int(d.get("threshold", 128)), value_range=_value_range(d),
                   color_tolerance=int(d.get("color_tolerance", 0)),
                   gsd=float(d["gsd"]) if d.get("gsd") is not None else None,
                   images=str(d["images"]) if d.get("images") else None, overlap=str(d.get("overlap", "multilabel")),
                   priority=tuple(str(n) for n in d.get("priority") or ()),
                   parts=tuple((str(k), str(v)) for k, v in parts.items()),
                   split=tuple((str(k), tuple(str(n) for n in v)) for k, v in split.items()),
                   task=str(d["task"]) if d.get("task") else None)


def _value_range(d: dict) -> tuple[float, float] | None:
    if d.get("value_range") is not None:
        lo, hi = (float(v) for v in d["value_range"])
        if not hi > lo:
            raise ValueError(f"value_range {d['value_range']}: the second value must be greater")
        return lo, hi
    return (0.0, float(d["max_value"])) if d.get("max_value") is not None else None


def load_spec(root: Path, threshold: int = 128, default: dict | None = None) -> DatasetSpec:
    """DATA/dataset.yaml if there is one; else `default` (a recipe's description of the dataset it was made
    for); else the layout the folder has: class folders or fixed parts (see above), or the binary RGB default."""
    path = Path(root) / SPEC_FILE
    if not path.exists():
        if default is not None:
            return check_spec(_parse(default, Path(root) / "(the recipe's dataset description)"),
                              Path(root) / "(the recipe's dataset description)")
        return detect_layout(Path(root), threshold)
    import yaml

    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not a valid dataset description (YAMLError: {str(e).splitlines()[0]})") from None
    return check_spec(_parse(d, path), path)


def _parse(d: dict, path: Path) -> DatasetSpec:
    try:
        return DatasetSpec.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path}: not a valid dataset description ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def check_spec(spec: DatasetSpec, path: Path) -> DatasetSpec:
    """Refuse descriptions that cannot mean one thing, naming the file."""
    folders = [c.folder for c in spec.classes if c.folder is not None]
    if folders and len(folders) != len(spec.classes):
        raise DataError(f"{path}: either every class names its mask 'folder' or none does")
    for folder in sorted(set(folders)):
        names = [c.name for c in spec.classes if c.folder == folder]
        if len(names) > 1:
            raise DataError(f"{path}: classes {' and '.join(map(repr, names))} name the same mask folder {folder!r}")
    names = [c.name for c in spec.classes]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class name {next(n for n in names if names.count(n) > 1)!r} is given twice")
    if spec.overlap not in ("multilabel", "priority"):
        raise DataError(f"{path}: overlap {spec.overlap!r}: choose multilabel or priority")
    if spec.priority and sorted(spec.priority) != sorted(names):
        raise DataError(f"{path}: priority must list every class once ({', '.join(names)})")
    if spec.multilabel and len(spec.classes) > 7:
        raise DataError(f"{path}: {len(spec.classes)} overlapping classes; at most 7 (masks are bit sets of a byte)")
    for part, _ in spec.parts + spec.split:
        if part not in ("train", "val", "test"):
            raise DataError(f"{path}: part {part!r}: choose train, val or test")
    if spec.task not in (None, "membranes"):
        raise DataError(f"{path}: task {spec.task!r}: the one known task is membranes")
    for c in spec.classes:
        if not folders and (c.value is None) == (c.color is None):
            raise DataError(f"{path}: class {c.name!r} needs exactly one of 'value' or 'color'")
    if spec.gsd is not None and not spec.gsd > 0:
        raise DataError(f"{path}: gsd (metres per pixel) must be a positive number")
    if len(spec.classes) == 1 and not folders:
        raise DataError(f"{path}: a dataset needs at least two classes")
    return spec


IMAGE_FOLDERS = ("Images", "images", "slices")


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _layout_of(folder: Path) -> dict | None:
    """class-folders when `folder` has an image folder (slices/ or images/) and other folders beside it, no Masks/."""
    names = {p.name for p in _subdirs(folder)}
    if "Images" in names or "Masks" in names or "masks" in names:
        return None
    image_dir = next((n for n in IMAGE_FOLDERS if n in names), None)
    others = sorted(names - {image_dir})
    if image_dir is None or not others:
        return None
    return {"images": image_dir, "classes": [{"name": n, "folder": n} for n in others]}


def detect_layout(root: Path, threshold: int = 128) -> DatasetSpec:
    """The description a folder without dataset.yaml implies: Images/ + Masks/ (the default), class folders,
    or sub-folders named *train* and *test* of either layout as fixed parts."""
    d = _layout_of(root) or {}
    if not d:
        subs = _subdirs(root)
        train = [p for p in subs if "train" in p.name.lower()]
        test = [p for p in subs if "test" in p.name.lower()]
        if len(train) == 1 and len(test) == 1 and not any(p.name in IMAGE_FOLDERS for p in subs):
            d = {**(_layout_of(train[0]) or {}), "parts": {"train": train[0].name, "test": test[0].name}}
    if not d:
        return DatasetSpec(threshold=threshold)
    d.setdefault("threshold", threshold)
    d.setdefault("channels", ["grey"] if d.get("classes") else None)
    return check_spec(DatasetSpec.from_dict(d), root)


LOSSLESS_MASKS = (".png", ".tif", ".tiff", ".npy")


def mask_to_classes(raw: np.ndarray, spec: DatasetSpec, path: Path, notes: list[str] | None = None) -> np.ndarray:
    """Map a decoded mask ((H, W) values or (H, W, 3) colours) to class indices; unknown entries are an error.
    A binary mask stored losslessly with the values 0 and 1 only is read as class indices (water where 1, which
    the grey threshold would miss), and said in `notes`."""
    if spec.binary:
        grey = raw if raw.ndim == 2 else raw.mean(axis=2)
        if spec.threshold >= 1 and path.suffix.lower() in LOSSLESS_MASKS and grey.max() == 1:
            if notes is not None:
                notes.append("masks with the values 0 and 1 only: read as water where 1 (not grey above "
                             f"{spec.threshold})")
            return (grey == 1).astype(np.uint8)
        return (grey > spec.threshold).astype(np.uint8)
    out = np.full(raw.shape[:2], 255, np.uint8)
    by_color = spec.classes[0].color is not None
    if by_color:
        rgb = (raw if raw.ndim == 3 else np.repeat(raw[..., None], 3, axis=2))[..., :3].astype(np.int16)
    else:
        values = raw if raw.ndim == 2 else raw[..., 0]
    for i, c in enumerate(spec.classes):
        if by_color:
            hit = (np.abs(rgb - np.array(c.color, np.int16)) <= spec.color_tolerance).all(-1)
        else:
            hit = values == c.value
        out[hit & (out == 255)] = i
    if (out == 255).any():
        y, x = map(int, np.argwhere(out == 255)[0])
        found = tuple(int(v) for v in raw[y, x]) if raw.ndim == 3 else int(raw[y, x])
        known = ", ".join(f"{c.name}={list(c.color) if by_color else c.value}" for c in spec.classes)
        raise DataError(f"{path}: mask {'colour' if by_color else 'value'} {found} at pixel (x={x}, y={y}) "
                        f"is not a class of dataset.yaml ({known})")
    return out
