"""DistributedDataParallel through torchrun on CPU (gloo): 2 processes train like 1 with the same global batch."""

import csv
import json
import subprocess
import sys

import pytest


def torchrun(nproc: int, data, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "unetseg", "train", "--data", str(data), "--out", str(out), "--model", "unet", "--base-width", "8",
           "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--precision", "fp32", "--quiet", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def losses(run):
    with open(run / "history.csv") as f:
        return [(float(row["train_loss"]), float(row["val_loss"])) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch_and_write_one_run(synth_data, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    torchrun(1, synth_data, one)
    r = torchrun(2, synth_data, two)
    assert r.stdout.count("epoch   1/2") == 1  # rank 0 alone logs
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 2
    for (ta, va), (tb, vb) in zip(a, b):
        assert tb == pytest.approx(ta, rel=1e-3) and vb == pytest.approx(va, rel=1e-3)
    files = sorted(p.name for p in two.iterdir())
    assert files == ["best.json", "best.safetensors", "curves.png", "history.csv", "last.json",
                     "last.safetensors", "run.json", "split.json"]  # one checkpoint of each, nothing per rank
    assert json.loads((two / "run.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_nproc_flag_starts_torchrun_and_refuses_an_uneven_batch(synth_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "unetseg.cli", "train", "--data", str(synth_data), "--out",
                        str(tmp_path / "run"), "--model", "unet", "--base-width", "4", "--epochs", "1",
                        "--batch-size", "7", "--image-size", "32", "--nproc", "2", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert "running: torchrun" in r.stderr and "--nproc-per-node=2" in r.stderr
    assert r.returncode != 0 and "batch size 7 does not split evenly over 2 processes" in r.stderr


def _predict(nproc: int, run, inputs, out):
    cmd = [sys.executable, "-m", "unetseg.cli", "predict", str(run), str(inputs), "--out", str(out), "--scale", "1",
           "--tile", "64", "--nproc", str(nproc), "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_predict_on_two_processes_writes_what_one_does_and_reports_a_bad_input_once(tiny_run, synth_data,
                                                                                      tmp_path):
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from unetseg.predict.pipeline import shard

    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted((synth_data / "Images").iterdir())[:9]:
        (folder / p.name).write_bytes(p.read_bytes())
    pixels = np.asarray(Image.open(sorted((synth_data / "Images").iterdir())[9]).convert("RGB").resize((150, 120)))
    with rasterio.open(folder / "scene.tif", "w", driver="GTiff", width=150, height=120, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 20, 20)) as ds:
        ds.write(np.moveaxis(pixels, -1, 0))
    (folder / "broken.png").write_bytes(b"not an image")
    files = sorted(folder.iterdir())
    shares = [shard(files, r, 2) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == files and shares[0] and shares[1]  # a split, both busy

    one, two = _predict(1, tiny_run, folder, tmp_path / "one"), _predict(2, tiny_run, folder, tmp_path / "two")
    assert one.returncode == two.returncode == 2
    assert (two.stderr + two.stdout).count("broken.png: not a readable image") == 1  # once, not per process
    assert "Traceback" not in two.stderr and "ChildFailedError" not in two.stderr
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert "scene_mask.tif" in names and "scene_water.geojson" in names
    for name in names:
        if name.endswith((".png", ".geojson")):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
        elif name.endswith(".tif"):
            with rasterio.open(tmp_path / "one" / name) as a, rasterio.open(tmp_path / "two" / name) as b:
                assert np.array_equal(a.read(), b.read()) and a.crs == b.crs and a.transform == b.transform
    rows = [json.loads((tmp_path / d / "predictions.json").read_text())["inputs"] for d in ("one", "two")]
    keep = ("input", "water_pixels", "valid_pixels", "water_area", "polygons", "error")
    assert [{k: r.get(k) for k in keep} for r in rows[0]] == [{k: r.get(k) for k in keep} for r in rows[1]]
    assert [r["input"] for r in rows[1]] == [str(f) for f in files]  # one summary, in input order


@pytest.mark.slow
def test_two_processes_follow_rank_zeros_time_budget(synth_data, tmp_path):
    """Each process times its own steps; rank 0's plan goes to all, at the first epoch's probe (24 steps of one
    image per process) and at every epoch's end, or the processes would disagree on the last epoch and hang."""
    run = tmp_path / "run"
    r = torchrun(2, synth_data, run, "--epochs", "200", "--batch-size", "2", "--minutes", "0.15")
    info = json.loads((run / "run.json").read_text())
    assert 1 <= info["epochs_run"] < 200 and len(losses(run)) == info["epochs_run"]
    assert r.stdout.count("time budget 0.15 min:") >= 1 and "of 200 epochs fit" in r.stdout
