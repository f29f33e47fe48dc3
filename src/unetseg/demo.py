"""The end of `make run`: one real scene segmented by the shipped water model, and where the picture is."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def sample_scene(path: Path, size: int = 768, seed: int = 3) -> Path:
    """A synthetic Sentinel-2-like GeoTIFF (UTM 33N, 10 m, reflectance x 10000 in B04, B03, B02) made by the
    package, for machines without the shared data."""
    import rasterio
    from rasterio.transform import from_origin

    from .data.synth import make_scene
    from .atomic import atomic_path

    rgb, _ = make_scene(np.random.default_rng(seed), size, size, no_water_fraction=0.0)
    bands = (np.moveaxis(rgb, -1, 0).astype(np.float32) * 4000 / 255).astype(np.uint16) + 1
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3,
                                                 dtype="uint16", crs="EPSG:32633", nodata=0,
                                                 transform=from_origin(500000, 5100000, 10, 10)) as ds:
        ds.write(bands)
        for i, name in enumerate(["B04", "B03", "B02"], 1):
            ds.set_band_description(i, name)
    return path


def demo(out: Path, model: str = "water", log: Callable[[str], None] = print) -> Path:
    """Predict a real Sentinel-2 scene (accra.tif from UNETSEG_REAL_SCENES, or real-scenes beside the water-bodies
    data), or the package's synthetic sample, with the shipped model; returns the overlay picture."""
    from .config import PredictConfig
    from .predict.pipeline import predict
    from .runtime import select_runtime
    from .workflow import shared_dataset_dir

    real = shared_dataset_dir("real-scenes", "UNETSEG_REAL_SCENES") / "accra.tif"
    out.mkdir(parents=True, exist_ok=True)
    if real.exists():
        scene, value_range, what = real, (1000.0, 5000.0), f"a real Sentinel-2 L2A scene ({real})"
    else:
        scene, value_range, what = sample_scene(out / "sample_scene.tif"), "auto", "the package's synthetic sample"
    log(f"demo: the shipped model '{model}' on {what}")
    cfg = PredictConfig(value_range=value_range, quicklook=True)
    predict(Path(model), [scene], out, cfg, select_runtime("auto"), overwrite=True, progress=False, log=log)
    picture = out / f"{scene.stem}_overlay.jpg"
    log(f"the picture: {picture} (water tinted blue); the mask, polygons and summary are beside it in {out}")
    return picture
