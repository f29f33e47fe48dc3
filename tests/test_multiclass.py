"""Multi-class, multi-channel data: dataset.yaml, colour masks, .npy and multi-band TIFF inputs."""

import json

import numpy as np
import pytest
from PIL import Image

from unetseg.config import ModelConfig, Recipe
from unetseg.data import DataError, load_chips, scan_folder
from unetseg.data.spec import load_spec
from unetseg.data.synth import SynthConfig, write_synthetic
from unetseg.runtime import select_runtime
from unetseg.workflow import run_evaluate, run_train

TINY = Recipe(name="tiny-mc", model=ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True), epochs=8,
              batch_size=8, image_size=32, lr=3e-3, loss="ce+dice", early_stopping_patience=0, monitor="val_miou",
              schedule="none")


@pytest.fixture(scope="module")
def mc_data(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("mc") / "data",
                           SynthConfig(n=80, min_size=32, max_size=96, seed=3, multiclass=True), progress=False)


@pytest.fixture(scope="module")
def mc_run(mc_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcrun") / "run"
    run_train(mc_data, out, TINY, select_runtime("fp32"), progress=False, log=lambda s: None)
    return out


def test_synthetic_multiclass_set_has_four_channels_and_four_classes(mc_data):
    spec = load_spec(mc_data)
    assert len(spec.channels) == 4 and spec.class_names == ["land", "water", "vegetation", "built-up"]
    chips = load_chips(scan_folder(mc_data).pairs, 32, spec, progress=False)
    assert chips.images.shape[-1] == 4 and set(np.unique(chips.masks)) == {0, 1, 2, 3}


def test_model_learns_every_class_well_above_chance(mc_run):
    m = run_evaluate(mc_run, select_runtime("fp32"), progress=False)
    cm = np.array(m["confusion_matrix"])
    freq = cm.sum(axis=1) / cm.sum()
    # chance: guessing each class with its frequency gives IoU p / (2 - p); the majority class alone gives max(p) / K
    chance = freq / (2 - freq)
    assert set(m["per_class_iou"]) == {"land", "water", "vegetation", "built-up"}
    for (name, iou), c in zip(m["per_class_iou"].items(), chance):
        assert iou > c + 0.25, (name, iou, c)
    assert m["mean_iou"] > freq.max() / 4 + 0.4
    assert (mc_run / "confusion_matrix.png").stat().st_size > 1000
    assert json.loads((mc_run / "run.json").read_text())["recipe"]["model"]["in_channels"] == 4


def test_channel_count_mismatch_between_data_and_checkpoint(mc_run, synth_data):
    with pytest.raises(DataError, match=r"data has 3 channel\(s\) and 2 classes, but .* trained on 4 channel\(s\) "
                                        r"and 4 classes"):
        run_evaluate(mc_run, select_runtime("fp32"), data=synth_data)


def test_unknown_mask_colour_names_file_and_colour(mc_data, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(mc_data, data)
    mask = data / "Masks" / "synth_5.png"
    a = np.asarray(Image.open(mask)).copy()
    a[3, 7] = (255, 0, 255)
    Image.fromarray(a).save(mask)
    pairs = [p for p in scan_folder(data).pairs if p.stem == "synth_5"]
    with pytest.raises(DataError) as e:
        load_chips(pairs, 32, load_spec(data), progress=False)
    msg = str(e.value)
    assert str(mask) in msg and "(255, 0, 255)" in msg and "x=7, y=3" in msg and "water=[0, 0, 255]" in msg


def test_value_masks_multiband_tiffs_and_npy_stacks(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    root = tmp_path / "d"
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    (root / "dataset.yaml").write_text(
        "channels: [b1, b2, b3, b4, b5]\nmax_value: 10000\nclasses:\n"
        "  - {name: other, value: 0}\n  - {name: water, value: 1}\n  - {name: ice, value: 7}\n")
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 10000, (5, 20, 24), dtype=np.uint16)
    with rasterio.open(root / "Images" / "a.tif", "w", driver="GTiff", width=24, height=20, count=5,
                       dtype="uint16") as dst:
        dst.write(bands)
    np.save(root / "Images" / "b.npy", np.moveaxis(bands, 0, -1))
    m = np.zeros((20, 24), np.uint8)
    m[:5] = 1
    m[-5:] = 7
    for stem in ("a", "b"):
        Image.fromarray(m).save(root / "Masks" / f"{stem}.png")
    chips = load_chips(scan_folder(root).pairs, 10, load_spec(root), progress=False, cache_dir=tmp_path / "c")
    assert chips.images.shape == (2, 10, 10, 5)
    assert np.array_equal(chips.images[0], chips.images[1])  # TIFF and .npy give the same chip
    assert set(np.unique(chips.masks)) == {0, 1, 2}  # value 7 -> class index 2
    expected = round(float(bands[0, 1, 1]) * 255 / 10000)
    assert abs(int(chips.images[0, 0, 0, 0]) - expected) <= 1
    np.save(root / "Images" / "b.npy", np.moveaxis(bands[:3], 0, -1))
    with pytest.raises(DataError, match=r"b.npy: has 3 channel\(s\) but the (dataset expects|model needs) 5"):
        load_chips(scan_folder(root).pairs, 10, load_spec(root), progress=False, cache_dir=tmp_path / "c")


def test_bad_dataset_descriptions(tmp_path):
    (tmp_path / "dataset.yaml").write_text("classes:\n  - {name: a, value: 0, color: [1, 2, 3]}\n  - {name: b, value: 1}\n")
    with pytest.raises(DataError, match="class 'a' needs exactly one of 'value' or 'color'"):
        load_spec(tmp_path)
    (tmp_path / "dataset.yaml").write_text("classes: [\n")
    with pytest.raises(DataError, match="dataset.yaml: not a valid dataset description"):
        load_spec(tmp_path)


def test_runs_table_lists_and_sorts(mc_run, tmp_path):
    import shutil

    from unetseg.atomic import write_json_atomic
    from unetseg.runs import format_table, list_runs

    shutil.copytree(mc_run, tmp_path / "a")
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    info["train_seconds"] = 600
    (tmp_path / "a" / "run.json").write_text(json.dumps(info))
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({"mean_iou": 0.9}))  # whether or not mc_run was scored
    shutil.copytree(mc_run, tmp_path / "b")
    # undefined figures (a model that finds no water) are null in the file, strict JSON, and "-" in the table
    write_json_atomic(tmp_path / "b" / "metrics.json",
                      {"mean_iou": 0.123, "water_iou": float("nan"), "more": [float("inf"), {"x": float("nan")}]})
    strict = json.loads((tmp_path / "b" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert strict == {"mean_iou": 0.123, "water_iou": None, "more": [None, {"x": None}]}
    rows = list_runs(tmp_path)
    assert {r["run"] for r in rows} == {"a", "b"}
    table = format_table(rows, "test_miou").splitlines()
    assert table[0].split()[:3] == ["run", "model", "recipe"] and table[-1].startswith("b")
    assert table[-1].split()[6:8] == ["0.1230", "-"]
    assert format_table(rows, "train_min").splitlines()[1].startswith("a")
    assert "| 10.0 |" in format_table(rows, "run", markdown=True)
    info["recipe"] = {**info["recipe"], "minutes": 1, "epochs": info["epochs_run"] + 5}  # a time budget cut it short
    (tmp_path / "a" / "run.json").write_text(json.dumps(info))
    cut = format_table(list_runs(tmp_path), "run").splitlines()[1].split()
    assert cut[0] == "a" and cut[4] == f"{info['epochs_run']}/{info['epochs_run'] + 5}"
    with pytest.raises(ValueError, match="cannot sort by 'x'"):
        format_table(rows, "x")
    (tmp_path / "b" / "scenes-esw-val").mkdir()  # a run scored on scenes: a column of its own
    (tmp_path / "b" / "scenes-esw-val" / "metrics.json").write_text(json.dumps({"pooled_mean_iou": 0.5}))
    table = format_table(list_runs(tmp_path), "scenes:esw-val").splitlines()
    assert table[0].split()[-1] == "scenes:esw-val"
    assert table[1].startswith("b") and table[1].split()[-1] == "0.5000" and table[2].split()[-1] == "-"
    (tmp_path / "c").mkdir()  # training under way (or stopped): run.json without its totals, two epochs done
    (tmp_path / "c" / "run.json").write_text(json.dumps({"recipe": info["recipe"]}))
    (tmp_path / "c" / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    row = next(r for r in list_runs(tmp_path) if r["run"].startswith("c"))
    assert row["run"] == "c (unfinished)" and row["epochs"] == 2
    line = next(t for t in format_table(list_runs(tmp_path), "epochs").splitlines() if t.startswith("c"))
    assert line.split()[4] == "-" and line.split()[5] == "2"  # no parameter count yet, not 0


@pytest.mark.slow
def test_water_that_is_not_class_1_is_water_in_predict_serve_and_the_api(mc_data, tmp_path):
    """run.json keeps the dataset's classes; predict, serve and the API must find "water" by name (here class 2),
    never assume class 1."""
    import shutil

    import rasterio
    from fastapi.testclient import TestClient
    from rasterio.transform import from_origin

    import unetseg as package
    from helpers import unetseg
    from unetseg.serve.app import create_app

    data = tmp_path / "reordered"
    shutil.copytree(mc_data, data)
    spec = (data / "dataset.yaml").read_text().splitlines()
    head, classes = spec[:3], spec[3:]
    (data / "dataset.yaml").write_text("\n".join(head + [classes[0], classes[2], classes[1], classes[3]]) + "\n")
    run = tmp_path / "run"
    run_train(data, run, TINY, select_runtime("fp32"), progress=False, log=lambda s: None)
    img = np.load(next((data / "Images").glob("*.npy")))
    tif = tmp_path / "scene.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=img.shape[1], height=img.shape[0], count=4, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(400000, 5200000, 10, 10), photometric="MINISBLACK") as ds:
        ds.write(np.moveaxis(img, -1, 0))  # not RGBA: GDAL would make a 4-band byte GeoTIFF's last band alpha
        for i, name in enumerate(["red", "green", "blue", "nir"], 1):
            ds.set_band_description(i, name)
    r = unetseg("predict", run, tif, "--out", tmp_path / "out", "--scale", "fit", "-q")
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "out" / "scene_mask.tif") as m:
        classes_map = m.read(1)
    row = json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"][0]
    assert (classes_map == 2).sum() > 0 and row["water_pixels"] == int((classes_map == 2).sum())
    fc = json.loads((tmp_path / "out" / "scene_water.geojson").read_text())
    assert row["polygons"] == len(fc["features"]) > 0
    model = package.load(run, scale="fit")
    assert model.classes == ["land", "vegetation", "water", "built-up"]
    assert model.predict_file(tif, out=tmp_path / "api")["water_pixels"] == row["water_pixels"]
    from unetseg.config import PredictConfig

    client = TestClient(create_app(run, select_runtime("auto"), PredictConfig(scale="fit"), log=lambda m: None))
    reply = client.post("/v1/segment", files={"image": ("scene.tif", tif.read_bytes(), "image/tiff")}).json()
    assert reply["water_pixels"] == row["water_pixels"]
    fused = client.post("/v1/segment", params={"method": "unet+mndwi"},
                        files={"image": ("scene.tif", tif.read_bytes(), "image/tiff")})
    assert fused.status_code == 422 and "joins a binary water model" in fused.json()["detail"]
