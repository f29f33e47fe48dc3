"""The Python API: every example in docs/api.md runs, and the API gives what the CLI gives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import unetseg
from test_predict import write_tif

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light():
    """`import unetseg` must not import torch, kornia or rasterio (the CLI's --help and scripts start fast)."""
    code = "import sys, unetseg; print(sorted(m for m in ('torch', 'kornia', 'rasterio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_every_example_in_docs_api_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)
    assert blocks
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 260, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    write_tif(tmp_path / "scene.tif", rng.integers(200, 3000, (3, 150, 170), dtype=np.uint16))
    for code in blocks:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "scene" / "scene_mask.tif").exists()


def test_api_array_prediction_equals_the_cli_on_the_same_image(tiny_run, tmp_path):
    import unetseg as package

    img = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    r = unetseg("predict", tiny_run, tmp_path / "a.png", "--out", tmp_path / "out", "--threshold", "0.45", "-q")
    assert r.returncode == 0, r.stderr
    model = package.load(tiny_run, threshold=0.45)
    probs, mask = model.predict(img)
    assert probs.shape == (120, 90) and mask.dtype == np.uint8
    assert (np.asarray(Image.open(tmp_path / "out" / "a_mask.png")) == mask * 255).all()
    assert model.classes == ["background", "water"] and model.info["recipe"]["name"] == "tiny"
    row = model.predict_file(tmp_path / "a.png", out=tmp_path / "api-out")
    cli_row = json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"][0]
    assert row["water_pixels"] == cli_row["water_pixels"]
    with pytest.raises(ValueError, match="--tta 'x'"):
        package.load(tiny_run, tta="x")


def test_api_predicts_a_file_as_predict_reads_it_and_names_itself(tiny_run, tmp_path):
    """A path (str or Path) is read as `unetseg predict` reads it (a GeoTIFF's nodata and ground resolution),
    not turned into a 0-d array; the model's repr says what it is."""
    import unetseg as package
    from unetseg.errors import DataError

    pixels = np.random.default_rng(2).integers(200, 3000, (3, 80, 100), dtype=np.uint16)
    pixels[:, :10] = 0  # no-data rows
    write_tif(tmp_path / "s.tif", pixels, nodata=0)
    model = package.load(tiny_run)
    probs, mask = model.predict(str(tmp_path / "s.tif"))
    assert probs.shape == mask.shape == (80, 100)
    assert (mask[:10] == 255).all() and (mask[10:] != 255).all()
    r = unetseg("predict", tiny_run, tmp_path / "s.tif", "--out", tmp_path / "out", "-q")
    assert r.returncode == 0, r.stderr
    import rasterio

    with rasterio.open(tmp_path / "out" / "s_mask.tif") as ds:
        assert np.array_equal(ds.read(1)[10:] > 0, mask[10:] == 1)
    assert np.array_equal(model.predict(tmp_path / "s.tif")[1], mask)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg: empty file"):
        model.predict(tmp_path / "empty.jpg")
    assert repr(model).startswith(f"<unetseg.Model {str(tiny_run)!r}: unet") and "'water'" in repr(model)


def test_build_model_comes_from_the_registry():
    import unetseg as package

    model = package.build_model("unet", base_width=8, depth=3)
    assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ValueError, match="unknown model"):
        package.build_model("nope")
