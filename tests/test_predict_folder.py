"""A folder of many small images: tiles of several images share the model's batches, with the same masks
as one image at a time and as `unetseg evaluate` on the same chips (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import unetseg


def _folder(synth_data, tmp_path, sizes):
    """Crops of the synthetic images at the given sizes, as PNGs (and their pixels)."""
    folder = tmp_path / "in"
    folder.mkdir()
    sources = sorted((synth_data / "Images").iterdir())
    pixels = {}
    for i, (h, w) in enumerate(sizes):
        img = np.asarray(Image.open(sources[i % len(sources)]).convert("RGB").resize((max(w, 96), max(h, 96))))
        crop = np.ascontiguousarray(img[:h, :w])
        Image.fromarray(crop).save(folder / f"c{i:02d}.png")
        pixels[f"c{i:02d}"] = crop
    return folder, pixels


def _masks(out, names):
    return {n: np.asarray(Image.open(out / f"{n}_mask.png")) for n in names}


def test_batched_folder_masks_equal_evaluate_on_chips_at_the_training_size(tiny_run, synth_data, tmp_path):
    from unetseg.checkpoint import load_for_inference
    from unetseg.inference import predict_chips, to_classes
    from unetseg.runtime import select_runtime

    size = json.loads((tiny_run / "run.json").read_text())["recipe"]["image_size"]
    folder, pixels = _folder(synth_data, tmp_path, [(size, size)] * 13)
    r = unetseg("predict", tiny_run, folder, "--out", tmp_path / "out", "--scale", "fit", "-q")
    assert r.returncode == 0, r.stderr
    rt = select_runtime("auto")
    model, _ = load_for_inference(tiny_run / "best.safetensors", rt)  # as evaluate loads it
    names = sorted(pixels)
    expected = to_classes(predict_chips(model, np.stack([pixels[n] for n in names]), rt, batch_size=32))
    got = _masks(tmp_path / "out", names)
    assert 0 < sum(int(m.sum()) for m in expected) < expected.size  # some water, some land
    for n, e in zip(names, expected):
        assert np.array_equal(got[n], e * 255), n
    # --no-overlay: the same masks, no overlays, and the summary lists the mask alone
    r = unetseg("predict", tiny_run, folder, "--out", tmp_path / "bare", "--scale", "fit", "--no-overlay", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "bare").glob("*_overlay.jpg")) == []
    assert all(np.array_equal(a, got[n]) for n, a in _masks(tmp_path / "bare", names).items())
    rows = json.loads((tmp_path / "bare" / "predictions.json").read_text())["inputs"]
    assert all(len(row["outputs"]) == 1 and row["outputs"][0].endswith("_mask.png") for row in rows)


@pytest.mark.parametrize("scale", ["fit", "1"])  # fit: one tile each; 1: several tiles of several shapes
def test_images_of_many_sizes_give_the_same_masks_batched_as_one_at_a_time(tiny_run, synth_data, tmp_path, scale):
    sizes = [(40, 40), (40, 40), (33, 57), (96, 80), (40, 40), (20, 130), (300, 90), (40, 40), (64, 64)]
    folder, pixels = _folder(synth_data, tmp_path, sizes)
    (folder / "broken.png").write_bytes(b"not a png")  # a bad file in the middle fails alone
    r = unetseg("predict", tiny_run, folder, "--out", tmp_path / "batched", "--scale", scale, "--tile", "64", "-q")
    assert r.returncode == 2 and "broken.png" in r.stderr + r.stdout
    one = tmp_path / "one"
    for n in sorted(pixels):  # each image alone, in its own batch
        single = tmp_path / "single" / n
        single.mkdir(parents=True)
        (single / f"{n}.png").write_bytes((folder / f"{n}.png").read_bytes())
        r = unetseg("predict", tiny_run, single, "--out", one, "--scale", scale, "--tile", "64",
                    "--batch-size", "1", "-q")
        assert r.returncode == 0, r.stderr
    a, b = _masks(tmp_path / "batched", sorted(pixels)), _masks(one, sorted(pixels))
    for n in sorted(pixels):
        assert a[n].shape == pixels[n].shape[:2] and np.array_equal(a[n], b[n]), n
    rows = json.loads((tmp_path / "batched" / "predictions.json").read_text())["inputs"]
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == sorted(p.name for p in folder.iterdir())  # in order
    assert [r for r in rows if r.get("error")][0]["input"].endswith("broken.png")


def test_a_loaded_predictor_writes_the_outputs_the_call_asks_for(tiny_run, synth_data, tmp_path):
    """predict(..., predictor=p) with other settings than p's: the call's settings decide the outputs."""
    from unetseg.config import PredictConfig
    from unetseg.predict.pipeline import Predictor, predict
    from unetseg.runtime import select_runtime

    folder, pixels = _folder(synth_data, tmp_path, [(64, 64)] * 3)
    rt = select_runtime("auto")
    loaded = Predictor(tiny_run, PredictConfig(scale="fit"), rt, progress=False, log=lambda m: None)
    bare = predict(tiny_run, [folder], tmp_path / "bare", PredictConfig(scale="fit", overlay=False), rt,
                   progress=False, log=lambda m: None, predictor=loaded)
    assert all(len(r["outputs"]) == 1 for r in bare) and not list((tmp_path / "bare").glob("*_overlay.jpg"))
    full = predict(tiny_run, [folder], tmp_path / "full", PredictConfig(scale="fit", probabilities=True), rt,
                   progress=False, log=lambda m: None, predictor=loaded)
    assert all(len(r["outputs"]) == 3 for r in full)
    for n in sorted(pixels):
        assert np.array_equal(_masks(tmp_path / "bare", [n])[n], _masks(tmp_path / "full", [n])[n])
