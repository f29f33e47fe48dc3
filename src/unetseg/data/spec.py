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


@dataclass(frozen=True)
class DatasetSpec:
    channels: tuple[str, ...] = ("red", "green", "blue")
    classes: tuple[ClassSpec, ...] = field(default_factory=tuple)  # empty: binary water mask by threshold
    threshold: int = 128
    value_range: tuple[float, float] | None = None  # None: by data type (pixels.default_range)
    color_tolerance: int = 0
    gsd: float | None = None  # metres per image pixel, when the images share one ground resolution

    @property
    def binary(self) -> bool:
        return not self.classes

    @property
    def class_names(self) -> list[str]:
        return ["background", "water"] if self.binary else [c.name for c in self.classes]

    @property
    def model_classes(self) -> int:
        """Output channels: 1 (sigmoid) for the binary case, else one per class (softmax)."""
        return 1 if self.binary else len(self.classes)

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetSpec":
        classes = tuple(ClassSpec(c["name"], c.get("value"), tuple(c["color"]) if c.get("color") else None)
                        for c in d.get("classes") or ())
        return cls(channels=tuple(d.get("channels") or ("red", "green", "blue")), classes=classes,
                   threshold=int(d.get("threshold", 128)), value_range=_value_range(d),
                   color_tolerance=int(d.get("color_tolerance", 0)),
                   gsd=float(d["gsd"]) if d.get("gsd") is not None else None)


def _value_range(d: dict) -> tuple[float, float] | None:
    if d.get("value_range") is not None:
        lo, hi = (float(v) for v in d["value_range"])
        if not hi > lo:
            raise ValueError(f"value_range {d['value_range']}: the second value must be greater")
        return lo, hi
    return (0.0, float(d["max_value"])) if d.get("max_value") is not None else None


def load_spec(root: Path, threshold: int = 128) -> DatasetSpec:
    """DATA/dataset.yaml if there is one, else the binary RGB default with `threshold`."""
    path = Path(root) / SPEC_FILE
    if not path.exists():
        return DatasetSpec(threshold=threshold)
    import yaml

    try:
        d = yaml.safe_load(path.read_text()) or {}
        spec = DatasetSpec.from_dict(d)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not a valid dataset description ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    for c in spec.classes:
        if (c.value is None) == (c.color is None):
            raise DataError(f"{path}: class {c.name!r} needs exactly one of 'value' or 'color'")
    if spec.gsd is not None and not spec.gsd > 0:
        raise DataError(f"{path}: gsd (metres per pixel) must be a positive number")
    if len(spec.classes) == 1:
        raise DataError(f"{path}: a dataset needs at least two classes")
    return spec


def mask_to_classes(raw: np.ndarray, spec: DatasetSpec, path: Path) -> np.ndarray:
    """Map a decoded mask ((H, W) values or (H, W, 3) colours) to class indices; unknown entries are an error."""
    if spec.binary:
        grey = raw if raw.ndim == 2 else raw.mean(axis=2)
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
