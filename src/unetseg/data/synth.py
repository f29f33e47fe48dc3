"""Synthetic water scenes: satellite-like land textures with lakes, rivers and coastlines.

Deterministic for a given seed; written in the Kaggle layout (Images/, Masks/) with JPEG masks, so
the masks carry JPEG noise exactly like the real dataset's and must be thresholded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..atomic import atomic_dir, check_output_dir
from ..errors import DataError
from ..progress import bar as progress_bar

LAND_PALETTE = np.array([
    [62, 92, 44],     # vegetation
    [96, 110, 58],    # crops
    [128, 108, 76],   # bare soil
    [170, 152, 116],  # dry land / sand
    [120, 120, 118],  # urban grey
], dtype=np.float32)
WATER_PALETTE = np.array([
    [22, 38, 58],     # deep water
    [34, 62, 72],     # teal
    [52, 70, 58],     # green, algae
    [70, 72, 60],     # turbid
], dtype=np.float32)


@dataclass
class SynthConfig:
    n: int = 400
    min_size: int = 48
    max_size: int = 320
    seed: int = 0
    jpeg_quality: int = 90
    mask_quality: int = 75
    no_water_fraction: float = 0.08
    multiclass: bool = False  # 4 channels (R, G, B, NIR) as .npy, classes land/water/vegetation/built-up as PNG colours


def smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1] of shape (h, w); `scale` is the largest feature size in pixels."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        s = max(scale / 2**o, 2.0)
        gh, gw = int(h / s) + 2, int(w / s) + 2
        grid = rng.random((gh, gw), dtype=np.float32)
        up = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC))
        out += amp * up
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / (hi - lo + 1e-6)


def _lake(rng, h, w) -> np.ndarray:
    field = smooth_noise(rng, h, w, scale=rng.uniform(0.3, 0.9) * max(h, w), octaves=4)
    return field > np.quantile(field, 1 - rng.uniform(0.08, 0.55))


def _river(rng, h, w) -> np.ndarray:
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    period = rng.uniform(0.6, 2.0) * h
    centre = w * rng.uniform(0.3, 0.7) + rng.uniform(0.05, 0.25) * w * np.sin(2 * np.pi * y / period + rng.uniform(0, 6.3))
    centre = centre + (smooth_noise(rng, h, 1, scale=h / 3)[:, :1] - 0.5) * w * 0.2
    width = rng.uniform(0.04, 0.2) * w * (0.8 + 0.4 * smooth_noise(rng, h, 1, scale=h / 2)[:, :1])
    mask = np.abs(x - centre) < width / 2
    return mask if rng.random() < 0.5 else mask.T if h == w else np.ascontiguousarray(mask[::-1])


def _coast(rng, h, w) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (xx - w / 2) * np.cos(theta) + (yy - h / 2) * np.sin(theta)
    wobble = (smooth_noise(rng, h, w, scale=max(h, w) / 2, octaves=4) - 0.5) * max(h, w) * 0.5
    return d + wobble < rng.uniform(-0.3, 0.3) * max(h, w)


def make_scene(rng: np.random.Generator, h: int, w: int, no_water_fraction: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (RGB uint8 (h, w, 3), water mask bool (h, w))."""
    # land: a blend of palette colours driven by noise fields, plus rectangular fields
    weights = np.stack([smooth_noise(rng, h, w, scale=rng.uniform(20, 120)) ** 2 for _ in LAND_PALETTE], -1)
    weights /= weights.sum(-1, keepdims=True)
    land = weights @ LAND_PALETTE
    for _ in range(rng.integers(0, 8)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        fh, fw = rng.integers(8, max(9, h // 3)), rng.integers(8, max(9, w // 3))
        land[y0:y0 + fh, x0:x0 + fw] += rng.normal(0, 18, size=3)
    land += (smooth_noise(rng, h, w, scale=6, octaves=2)[..., None] - 0.5) * 30

    water = np.zeros((h, w), bool)
    if rng.random() >= no_water_fraction:
        for kind in rng.choice(["lake", "river", "coast"], size=rng.integers(1, 3), p=[0.45, 0.3, 0.25]):
            water |= {"lake": _lake, "river": _river, "coast": _coast}[kind](rng, h, w)

    tone = WATER_PALETTE[rng.integers(len(WATER_PALETTE))] + rng.normal(0, 6, size=3)
    water_rgb = tone + (smooth_noise(rng, h, w, scale=30)[..., None] - 0.5) * 18
    # soft shorelines, as in real 10 m imagery
    alpha = np.asarray(Image.fromarray((water * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2)),
                       dtype=np.float32)[..., None] / 255
    img = land * (1 - alpha) + water_rgb * alpha
    img *= rng.uniform(0.8, 1.25)  # scene brightness
    img += rng.normal(0, 3, size=img.shape)
    if rng.random() < 0.15:  # thin cloud haze
        haze = smooth_noise(rng, h, w, scale=max(h, w)) ** 3 * rng.uniform(60, 160)
        img += haze[..., None]
    return img.clip(0, 255).astype(np.uint8), water


# the multi-class set: (name, mask colour, mean R, G, B, NIR)
MULTICLASS = [
    ("land", (0, 0, 0), (150, 124, 92, 110)),
    ("water", (0, 0, 255), (30, 52, 66, 14)),
    ("vegetation", (0, 200, 0), (58, 98, 46, 205)),
    ("built-up", (200, 0, 0), (152, 150, 148, 92)),
]


def make_multiclass_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One 4-band scene (h, w, 4) uint8 and its class map (h, w): 0 land, 1 water, 2 vegetation, 3 built-up."""
    classes = np.zeros((h, w), np.uint8)
    veg = smooth_noise(rng, h, w, scale=rng.uniform(20, 80), octaves=3)
    classes[veg > np.quantile(veg, rng.uniform(0.5, 0.8))] = 2
    for _ in range(rng.integers(1, 6)):  # built-up blocks
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        classes[y0:y0 + rng.integers(6, max(7, h // 4)), x0:x0 + rng.integers(6, max(7, w // 4))] = 3
    kind = rng.choice(["lake", "river", "coast"])
    classes[{"lake": _lake, "river": _river, "coast": _coast}[kind](rng, h, w)] = 1
    means = np.array([m[2] for m in MULTICLASS], np.float32)
    img = means[classes] + rng.normal(0, 6, size=(len(MULTICLASS), 4)).astype(np.float32)[classes]
    img += (smooth_noise(rng, h, w, scale=8, octaves=2)[..., None] - 0.5) * 40
    img *= rng.uniform(0.85, 1.15)
    img += rng.normal(0, 4, size=img.shape)
    return img.clip(0, 255).astype(np.uint8), classes


def multiclass_spec_yaml() -> str:
    lines = ["# written by unetseg synth --multiclass", "channels: [red, green, blue, nir]", "classes:"]
    lines += [f"  - {{name: {n}, color: [{c[0]}, {c[1]}, {c[2]}]}}" for n, c, _ in MULTICLASS]
    return "\n".join(lines) + "\n"


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _jpeg(a: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_synthetic(out: str | Path, cfg: SynthConfig = SynthConfig(), overwrite: bool = False,
                    progress: bool = True) -> Path:
    """Write cfg.n chips as OUT/Images/synth_N.jpg and OUT/Masks/synth_N.jpg (built aside, then renamed)."""
    check_output_dir(out, overwrite)
    if cfg.n < 1 or cfg.min_size < 2 or cfg.max_size < cfg.min_size:
        raise DataError(f"synthetic data: need n >= 1 and 2 <= min_size <= max_size (got {cfg})")
    with atomic_dir(out) as tmp:
        (tmp / "Images").mkdir()
        (tmp / "Masks").mkdir()
        if cfg.multiclass:
            (tmp / "dataset.yaml").write_text(multiclass_spec_yaml())
        colours = np.array([m[1] for m in MULTICLASS], np.uint8)
        for i in progress_bar(range(cfg.n), enabled=progress, desc="synthetic scenes", unit="chip"):
            rng = np.random.default_rng([cfg.seed, i])
            h, w = (int(v) for v in rng.integers(cfg.min_size, cfg.max_size + 1, size=2))
            if cfg.multiclass:
                img, classes = make_multiclass_scene(rng, h, w)
                (tmp / "Images" / f"synth_{i}.npy").write_bytes(_npy(img))
                (tmp / "Masks" / f"synth_{i}.png").write_bytes(_png(colours[classes]))
                continue
            img, water = make_scene(rng, h, w, cfg.no_water_fraction)
            (tmp / "Images" / f"synth_{i}.jpg").write_bytes(_jpeg(img, cfg.jpeg_quality))
            (tmp / "Masks" / f"synth_{i}.jpg").write_bytes(_jpeg((water * 255).astype(np.uint8), cfg.mask_quality))
    return Path(out)
