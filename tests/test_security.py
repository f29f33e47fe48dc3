"""Hostile and damaged input: checkpoints that were altered, pickles that would run code, decompression bombs,
absurd raster headers, file names that try to leave --out, names with spaces and unicode, a stable split."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from unetseg.checkpoint import load_checkpoint
from unetseg.config import SplitConfig
from unetseg.errors import DataError
from unetseg.data.split import make_split
from unetseg.atomic import output_file
from helpers import png_header_only, unetseg


def one_error(r, expected):
    """Exit 2, no traceback, and the first error line says `expected`."""
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors and expected in errors[0], r.stderr


def nothing_written(out: Path):
    assert not out.exists() or [p.name for p in out.rglob("*")
                                if p.name not in ("predictions.csv", "predictions.json")] == []


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst)
    return dst


@pytest.mark.parametrize("damage,expected", [
    ("flip", "SHA-256 does not match best.json (corrupt, truncated or altered)"),
    ("truncate", "SHA-256 does not match best.json (corrupt, truncated or altered)"),
    ("no-json", "best.json: checkpoint description missing"),
    ("bad-json", "best.json: not valid JSON"),
    ("no-hash", "no SHA-256 of the weights; refusing to load unverified weights"),
])
def test_damaged_checkpoints_are_refused_with_one_line(run_copy, image, tmp_path, damage, expected):
    weights, meta = run_copy / "best.safetensors", run_copy / "best.json"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # one byte inside the tensors
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) - 100]))
    elif damage == "no-json":
        meta.unlink()
    elif damage == "bad-json":
        meta.write_text("{not json")
    else:
        body = json.loads(meta.read_text())
        del body["sha256"]
        meta.write_text(json.dumps(body))
    out = tmp_path / "out"
    one_error(unetseg("predict", run_copy, image, "--out", out), expected)
    nothing_written(out)


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('pwned')",))


def test_pickles_that_would_run_code_are_never_executed(run_copy, image, tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"down.0.0.weight": RunsCode(marker)})
    # 1. disguised as the run's weights: refused before anything reads it as a pickle
    (run_copy / "best.safetensors").write_bytes(payload)
    one_error(unetseg("predict", run_copy, image, "--out", tmp_path / "o1"),
              "a pickled PyTorch file; unetseg loads safetensors only")
    # 2. a .pt given where a checkpoint goes
    evil = tmp_path / "evil.pt"
    evil.write_bytes(payload)
    one_error(unetseg("predict", evil, image, "--out", tmp_path / "o2"), "evil.pt: a pickled PyTorch file")
    # 3. the one command that reads pickles does it with weights_only=True: refused, not run
    one_error(unetseg("import", evil, "--out", tmp_path / "imported"), "evil.pt: not a plain PyTorch state dict")
    assert not marker.exists()
    assert not (tmp_path / "imported").exists()


@pytest.mark.slow
def test_import_turns_a_torch_save_state_dict_into_a_working_run(tiny_run, image, tmp_path):
    model, info = load_checkpoint(tiny_run / "best.safetensors")
    source = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, source)  # DDP-style
    m = info["recipe"]["model"]
    out = tmp_path / "imported"
    r = unetseg("import", source, "--out", out, "--recipe", "quick", "--model", m["name"], "--base-width",
                m["base_width"], "--depth", m["depth"], "--image-size", info["recipe"]["image_size"])
    assert r.returncode == 0, r.stderr
    back, _ = load_checkpoint(out / "best.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    r = unetseg("predict", out, image, "--out", tmp_path / "pred", "--scale", "1")
    assert r.returncode == 0, r.stderr
    r = unetseg("import", source, "--out", tmp_path / "wrong", "--recipe", "quick", "--model", m["name"],
                "--base-width", 2 * m["base_width"], "--depth", m["depth"])
    one_error(r, "weights.pth: does not fit")


@pytest.mark.slow
def test_decompression_bombs_are_refused_with_the_limit_and_how_to_raise_it(tiny_run, image, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, bomb, "--out", out)
    one_error(r, "bomb.png: 100000x100000 = 10,000,000,000 pixels, over the limit of 89,478,485")
    assert "UNETSEG_MAX_IMAGE_PIXELS=10000000000" in r.stderr
    nothing_written(out)
    # the limit can be lowered, and raised for a file one trusts
    r = unetseg("predict", tiny_run, image, "--out", tmp_path / "o2", env={"UNETSEG_MAX_IMAGE_PIXELS": "1000"})
    one_error(r, "in.png: 60x40 = 2,400 pixels, over the limit of 1,000")
    r = unetseg("predict", tiny_run, image, "--out", tmp_path / "o3", env={"UNETSEG_MAX_IMAGE_PIXELS": "2400"})
    assert r.returncode == 0, r.stderr


def test_absurd_raster_dimensions_are_refused_before_reading(tiny_run, tmp_path):
    import rasterio

    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=300_000, height=300_000, count=3, dtype="uint8", tiled=True,
                       blockxsize=4096, blockysize=4096, SPARSE_OK=True, crs="EPSG:32633",
                       transform=rasterio.transform.from_origin(500_000, 5_000_000, 10, 10)):
        pass  # nothing written: a header that claims 9e10 pixels
    assert huge.stat().st_size < 1_000_000
    out = tmp_path / "out"
    one_error(unetseg("predict", tiny_run, huge, "--out", out),
              "huge.tif: 300000x300000 = 90,000,000,000 pixels, over the limit of 40,000,000,000")
    nothing_written(out)


def test_names_with_spaces_and_unicode_and_a_dangling_link_at_an_output(tiny_run, image, tmp_path):
    inputs = tmp_path / "entrées"
    inputs.mkdir()
    for name in ("lac d'été 1.png", "水体 2.png"):
        shutil.copy(image, inputs / name)
    out = tmp_path / "sortie ü"
    out.mkdir()
    outside = tmp_path / "outside.txt"
    (out / "水体 2_mask.png").symlink_to(outside)  # a link planted where an output goes, pointing outside
    r = unetseg("predict", tiny_run, inputs, "--out", out)
    one_error(r, "水体 2_mask.png: exists (use --overwrite to replace it)")
    r = unetseg("predict", tiny_run, inputs, "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not outside.exists()  # the link itself was replaced; nothing was written outside --out
    assert not (out / "水体 2_mask.png").is_symlink()
    for stem in ("lac d'été 1", "水体 2"):
        assert (out / f"{stem}_mask.png").is_file() and (out / f"{stem}_overlay.jpg").is_file()
    rows = (out / "predictions.csv").read_text(encoding="utf-8")
    assert "lac d'été 1.png" in rows and "水体 2.png" in rows


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_output_names_never_leave_the_output_folder(name):
    folder = Path("/tmp/unetseg-out")
    try:
        path = output_file(folder, name)
    except DataError:
        return
    assert path.parent == folder and path.name == name
    assert os.path.normpath(path).startswith(str(folder) + os.sep)


names = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(old=st.sets(names, min_size=150, max_size=400), new=st.sets(names, max_size=200),
       seed=st.integers(0, 2**31))
def test_adding_files_never_moves_a_file_to_another_part(old, new, seed):
    cfg = SplitConfig(seed=seed)
    before = make_split(sorted(old), cfg)
    after = make_split(sorted(old | new), cfg)
    part = {s: p for p, stems in after.items() for s in stems}
    for p, stems in before.items():
        assert all(part[s] == p for s in stems)


@pytest.mark.parametrize("args,expected", [
    (["--tile", "8"], "--tile 8: must be at least 16 model pixels"),
    (["--overlap", "200"], "--overlap 200: must be between 0 and half the tile (128)"),
    (["--scale", "big"], "--scale 'big': auto, fit or a positive number"),
    (["--scale", "1000"], "--scale 1000.0: must be between 0.01 and 16"),
    (["--threshold", "1.5"], "--threshold 1.5: must be between 0 and 1"),
    (["--value-range", "5,1"], "--value-range '5,1': HI must be greater than LO"),
    (["--bands", "0,1,2"], "--bands '0,1,2': band numbers start at 1"),
    (["--vectors", "shp"], "--vectors 'shp': choose geojson, gpkg or none"),
    (["--compile", "--engine", "onnxruntime"], "--compile applies to --engine torch"),
    (["SAME"], "two inputs are named 'in'"),
])
def test_bad_predict_options_are_one_line_and_write_nothing(tiny_run, image, tmp_path, args, expected):
    if args == ["SAME"]:
        other = tmp_path / "other"
        other.mkdir()
        shutil.copy(image, other / "in.jpg")
        args = [other / "in.jpg"]
    out = tmp_path / "out"
    one_error(unetseg("predict", tiny_run, image, "--out", out, *args), expected)
    assert not out.exists()


@pytest.mark.slow
def test_an_export_made_from_other_weights_is_refused(run_copy, image, tmp_path):
    from unetseg.checkpoint import save_checkpoint

    assert unetseg("export", run_copy, "--overwrite").returncode == 0
    model, info = load_checkpoint(run_copy / "best.safetensors")
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    save_checkpoint(run_copy, "best", model, info)  # retrained after the export
    one_error(unetseg("predict", run_copy, image, "--out", tmp_path / "o", "--engine", "onnxruntime"),
              "best.onnx: exported from other weights than best.safetensors; export again")
