"""ONNX export: dynamic sizes, parity with PyTorch, and predict --engine onnxruntime."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unetseg.checkpoint import load_checkpoint, resolve_checkpoint
from unetseg.export import OnnxModel, export_onnx


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(tiny_run, out), out


@pytest.mark.slow
def test_onnx_logits_match_pytorch_at_any_batch_and_size(tiny_run, exported):
    result, path = exported
    assert result["max_abs_logit_diff"] <= 1e-3 and result["mask_agreement"] >= 0.999
    assert [p.name for p in path.parent.iterdir()] == ["tiny.onnx"]  # one file: no external data, no temporaries
    model, _ = load_checkpoint(resolve_checkpoint(tiny_run))
    session = OnnxModel(path)
    for b, h, w in [(1, 33, 47), (5, 64, 64), (2, 130, 17)]:  # sizes never seen at export
        x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.inference_mode():
            ref = model.float()(x).numpy()
        got = session.run(x.numpy())
        assert got.shape == ref.shape == (b, 1, h, w)
        assert np.abs(got - ref).max() <= 1e-3
        assert ((got > 0) == (ref > 0)).mean() >= 0.999


@pytest.mark.slow
def test_export_refuses_to_overwrite_and_predict_runs_the_onnx_engine(tiny_run, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "unetseg.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)).save(img)
    r = cli("predict", tiny_run, img, "--out", tmp_path / "o1", "--engine", "onnxruntime")
    assert r.returncode == 2 and "no exported model (make it with `unetseg export RUN`)" in r.stderr
    r = cli("export", tiny_run)
    assert r.returncode == 0 and "masks agree on" in r.stdout, r.stderr
    assert "torch.onnx" not in r.stdout + r.stderr  # the exporter's chatter is not passed on
    again = cli("export", tiny_run)
    assert again.returncode == 2 and "exists (use --overwrite" in again.stderr
    for engine, out in (("onnxruntime", "o1"), ("torch", "o2")):
        r = cli("predict", tiny_run, img, "--out", tmp_path / out, "--engine", engine, "--precision", "fp32",
                "--threshold", "0.4")
        assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(tmp_path / "o1" / "scene_mask.png"))
    b = np.asarray(Image.open(tmp_path / "o2" / "scene_mask.png"))
    assert (a == b).mean() >= 0.999


@pytest.mark.slow
def test_the_shipped_model_exports_to_the_user_cache_where_predict_finds_it(tmp_path, monkeypatch):
    """`unetseg export water` by name (the package folder may be read-only): the file goes to
    $UNETSEG_CACHE/onnx/, and `predict water --engine onnxruntime` runs it, fp32 masks as PyTorch's."""
    from helpers import unetseg

    from unetseg.zoo import zoo_dir

    monkeypatch.setenv("UNETSEG_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(img)
    r = unetseg("export", "water")
    assert r.returncode == 0, r.stderr
    made = list((tmp_path / "cache" / "onnx").glob("water-*-best.onnx"))
    assert len(made) == 1 and str(made[0]) in r.stdout and not list(zoo_dir().rglob("*.onnx"))
    for engine, out in (("onnxruntime", "o1"), ("torch", "o2")):
        r = unetseg("predict", "water", img, "--out", tmp_path / out, "--engine", engine, "--precision", "fp32")
        assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(tmp_path / "o1" / "scene_mask.png"))
    b = np.asarray(Image.open(tmp_path / "o2" / "scene_mask.png"))
    assert (a == b).mean() >= 0.999
