"""Scenes: scene sets and their label conventions, evaluate --scenes (checked against predict's own masks),
training with scene crops, the water-index yardstick, and the unlike-the-training-data score."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from helpers import shared_dataset, unetseg
from test_predict import write_tif

REPO = Path(__file__).resolve().parents[1]


def lake_scene(seed: int, h: int = 300, w: int = 340) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB with dark blue lakes on green-brown land, and the (H, W) bool water mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    water = np.zeros((h, w), bool)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(25, 70)
        water |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    land = np.stack([110 + 30 * rng.random((h, w)), 120 + 30 * rng.random((h, w)), 70 + 20 * rng.random((h, w))], -1)
    lake = np.stack([30 + 10 * rng.random((h, w)), 60 + 10 * rng.random((h, w)), 110 + 20 * rng.random((h, w))], -1)
    return np.where(water[..., None], lake, land).astype(np.uint8), water


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory) -> Path:
    """Images/ and Masks/ of 6 synthetic scenes (0/255 masks), like the Earth Surface Water renders."""
    root = tmp_path_factory.mktemp("scenes") / "esw"
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    for i in range(6):
        rgb, water = lake_scene(i)
        Image.fromarray(rgb).save(root / "Images" / f"s{i}.png")
        Image.fromarray((water * 255).astype(np.uint8)).save(root / "Masks" / f"s{i}.png")
    return root


# --- scene sets and labels -----------------------------------------------------------------------------------


def test_a_scenes_yaml_reads_label_values_ignore_values_and_a_label_band_by_name(tmp_path):
    from unetseg.data.scenes import load_scene_set, read_label

    rgb, water = lake_scene(1, 40, 50)
    label = np.where(water, 1, 0).astype(np.int16)
    label[:5] = -1  # no label
    write_tif(tmp_path / "img.tif", np.moveaxis(rgb, -1, 0))
    write_tif(tmp_path / "lab.tif", label[None])
    stacked = np.concatenate([np.moveaxis(rgb, -1, 0), np.where(water, 6, 4)[None]]).astype(np.uint16)
    path = write_tif(tmp_path / "l2a.tif", stacked)
    with rasterio.open(path, "r+") as ds:
        for i, n in enumerate(["B04", "B03", "B02", "SCL"], 1):
            ds.set_band_description(i, n)
    (tmp_path / "set.yaml").write_text("""name: mine
value_range: percentile
scenes:
  - {image: img.tif, label: lab.tif, water: 1, ignore: -1}
  - {name: l2a, image: l2a.tif, label_band: SCL, water: [6], value_range: [0, 255]}
""")
    s = load_scene_set(tmp_path / "set.yaml")
    assert s.name == "mine" and [x.name for x in s.scenes] == ["img", "l2a"]
    w, scored = read_label(s.scenes[0], (40, 50))
    assert (~scored[:5]).all() and scored[5:].all() and (w == (water & scored)).all()
    w2, scored2 = read_label(s.scenes[1], (40, 50))
    assert scored2.all() and (w2 == water).all() and s.scenes[1].value_range == (0.0, 255.0)
    assert s.scenes[0].value_range == "percentile"  # the set's, where a scene gives none


def test_a_scenes_no_data_value_is_left_out_of_training_crops_and_scores(tiny_run, tmp_path):
    """`nodata: 0` in a scenes yaml (an 8-bit render with black fill) is predict's --nodata for that scene:
    its fill is neither trained on nor scored."""
    from unetseg.data.scenes import load_scene, load_scene_set

    rgb, water = lake_scene(2, 60, 70)
    rgb = np.maximum(rgb, 1)
    rgb[(rgb == 7).all(axis=-1)] = 8  # the second scene's no-data value: nowhere
    rgb[:, :20] = 0
    Image.fromarray(rgb).save(tmp_path / "img.png")
    Image.fromarray((water * 255).astype(np.uint8)).save(tmp_path / "lab.png")
    (tmp_path / "set.yaml").write_text("nodata: 0\nscenes:\n  - {image: img.png, label: lab.png}\n"
                                       "  - {name: as-is, image: img.png, label: lab.png, nodata: 7}\n")
    s = load_scene_set(tmp_path / "set.yaml")
    assert [x.nodata for x in s.scenes] == [0.0, 7.0]
    labels = load_scene(s.scenes[0]).labels
    assert (labels[:, :20] == 255).all() and (labels[:, 20:] != 255).all()
    r = unetseg("evaluate", tiny_run, "--scenes", tmp_path / "set.yaml", "--out", tmp_path / "scores", "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["scene"]: row for row in csv.DictReader(open(tmp_path / "scores" / "per_scene.csv"))}
    assert int(rows["img"]["scored_pixels"]) == 60 * 50 and int(rows["as-is"]["scored_pixels"]) == 60 * 70


@pytest.mark.parametrize("text,expected", [
    ("scenes: []", "not a valid scene description"),
    ("scenes:\n  - {image: nowhere.tif}", "nowhere.tif does not exist"),
    ("scenes:\n  - {image: img.tif, water: deep}", "water must be a number or a list of numbers"),
    ("scenes:\n  - {image: img.tif, nodata: [0, 255]}", "nodata must be one finite number"),
])
def test_bad_scene_descriptions_are_one_line(tiny_run, tmp_path, text, expected):
    write_tif(tmp_path / "img.tif", np.zeros((3, 20, 20), np.uint8))
    (tmp_path / "bad.yaml").write_text(text)
    r = unetseg("evaluate", tiny_run, "--scenes", tmp_path / "bad.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert expected in r.stderr.strip().splitlines()[-1]


def test_a_label_of_another_size_names_the_file(tiny_run, tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Masks").mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "Images" / "a.png")
    Image.fromarray(np.zeros((41, 50), np.uint8)).save(tmp_path / "Masks" / "a.png")
    r = unetseg("evaluate", tiny_run, "--scenes", tmp_path)
    assert r.returncode == 2 and "a.png: label is 50x41 px but its image is 50x40 px" in r.stderr


# --- evaluate --scenes, checked against predict ----------------------------------------------------------------


@pytest.mark.slow
def test_scene_scores_equal_an_independent_count_over_predicts_own_masks(tiny_run, scene_folder, tmp_path):
    out = tmp_path / "eval"
    r = unetseg("evaluate", tiny_run, "--scenes", scene_folder, "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["scenes"] == 6 and {p.name for p in out.glob("*.png")} == {f"s{i}.png" for i in range(6)}
    pr = unetseg("predict", tiny_run, scene_folder / "Images", "--out", tmp_path / "pred", "-q")
    assert pr.returncode == 0, pr.stderr
    total = np.zeros((2, 2), np.int64)
    for row in m["per_scene"]:
        pred = np.asarray(Image.open(tmp_path / "pred" / f"{row['scene']}_mask.png")) == 255
        truth = np.asarray(Image.open(scene_folder / "Masks" / f"{row['scene']}.png")) > 127
        cm = np.array([[np.sum(~truth & ~pred), np.sum(~truth & pred)], [np.sum(truth & ~pred), np.sum(truth & pred)]])
        assert row["confusion_matrix"] == cm.tolist()
        iou_w = cm[1, 1] / (cm[1, 1] + cm[0, 1] + cm[1, 0])
        iou_b = cm[0, 0] / (cm[0, 0] + cm[0, 1] + cm[1, 0])
        assert row["water_iou"] == pytest.approx(iou_w, abs=1e-4) and row["mean_iou"] == pytest.approx(
            (iou_w + iou_b) / 2, abs=1e-4)
        total += cm
    assert m["confusion_matrix"] == total.tolist()
    csv = (out / "per_scene.csv").read_text().splitlines()
    assert csv[0].startswith("scene,mean_iou,water_iou") and len(csv) == 7


# --- training with scene crops ---------------------------------------------------------------------------------


def test_scene_crops_are_deterministic_at_the_stated_ground_scale(scene_folder):
    from unetseg.data.scenes import LoadedScene, ScenePool, load_scene, load_scene_set

    scenes = [load_scene(s, default_gsd=10) for s in load_scene_set(scene_folder).scenes]
    pool = ScenePool(scenes, 32, model_gsd=20, scale_range=(0.5, 2.0))
    a, b = pool.crops(12, seed=3), pool.crops(12, seed=3)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and not (pool.crops(12, seed=4)[0] == a[0]).all()
    assert set(np.unique(a[1])) <= {0, 1}
    # a ramp scene: a crop of 32 model pixels at 20 m covers 64 native pixels of 10 m
    ramp = np.tile((np.arange(400) % 256).astype(np.uint8)[None, :, None], (400, 1, 3))
    fixed = ScenePool([LoadedScene("ramp", ramp, np.zeros((400, 400), np.uint8), 10.0)], 32, model_gsd=20)
    images, _ = fixed.crops(5, seed=0)
    steps = np.diff(images[:, 0, :, 0].astype(int), axis=1)
    assert (steps[(steps > 0) & (steps < 10)] == 2).all()  # every model pixel is 2 native pixels apart


@pytest.mark.slow
def test_training_with_scenes_splits_by_scene_records_it_and_evaluate_leaves_those_scenes_out(
        synth_data, scene_folder, tmp_path):
    from unetseg.config import ModelConfig, Recipe
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    recipe = Recipe(name="tiny-scenes", model=ModelConfig(name="unet-bn", base_width=4, depth=3, batch_norm=True),
                    epochs=1, batch_size=16, image_size=32, early_stopping_patience=0, scene_ratio=0.5,
                    model_gsd=20.0, scene_val=0.34)
    run = tmp_path / "run"
    logs = []
    run_train(synth_data, run, recipe, select_runtime("auto"), progress=False, log=logs.append, scenes=scene_folder)
    info = json.loads((run / "run.json").read_text())
    split = info["scenes"]
    assert sorted(split["train"] + split["val"]) == [f"s{i}" for i in range(6)] and split["val"]
    assert not set(split["train"]) & set(split["val"]) and info["model_gsd"] == 20.0
    assert any("scene crops per epoch" in m for m in logs) and info["input_stats"]["threshold"] > 0
    r = unetseg("evaluate", run, "--scenes", scene_folder, "--out", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert sorted(m["left_out"]) == sorted(split["train"]) and m["scenes"] == len(split["val"])
    assert f"{len(split['train'])} scene(s) left out: the run trained on them" in r.stdout


# --- the water-index yardstick ---------------------------------------------------------------------------------


def four_band_scene(tmp_path, offset=0):
    rng = np.random.default_rng(9)
    _, water = lake_scene(5, 120, 150)
    green = np.where(water, 900, 700) + rng.integers(0, 100, water.shape)
    nir = np.where(water, 200, 2600) + rng.integers(0, 300, water.shape)
    swir = np.where(water, 100, 1900) + rng.integers(0, 200, water.shape)
    blue, red = green - 100, green + 50
    bands = np.stack([blue, green, red, nir, swir]).astype(np.uint16) + offset
    path = write_tif(tmp_path / "s2.tif", bands)
    with rasterio.open(path, "r+") as ds:
        for i, n in enumerate(["B02", "B03", "B04", "B08", "B11"], 1):
            ds.set_band_description(i, n)
    return path, water


@pytest.mark.parametrize("method", ["ndwi", "mndwi"])
def test_water_index_with_otsu_finds_the_water_of_a_multiband_scene(tmp_path, method):
    path, water = four_band_scene(tmp_path, offset=1000)
    out = tmp_path / "out"
    r = unetseg("predict", "--method", method, path, "--out", out, "--value-range", "1000,5000", "-q")
    assert r.returncode == 0, r.stderr
    with rasterio.open(out / "s2_mask.tif") as m:
        pred = m.read(1) == 1
    iou = (pred & water).sum() / (pred | water).sum()
    assert iou > 0.97, iou
    rgb = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(rgb)
    bad = unetseg("predict", "--method", method, rgb, "--out", tmp_path / "o2")
    assert bad.returncode == 2 and "needs green and" in bad.stderr and "Traceback" not in bad.stderr


def test_an_index_threshold_never_falls_below_zero_so_a_scene_without_water_stays_dry(tmp_path):
    """Otsu splits any histogram in two: on dry land (two kinds of field, every MNDWI below 0) the floor at 0
    keeps the index from calling half of it water."""
    rng = np.random.default_rng(3)
    half = np.arange(150)[None, :] < 75
    green = np.where(half, 800, 1200) + rng.integers(0, 100, (120, 150))
    swir = np.where(half, 1500, 2600) + rng.integers(0, 200, (120, 150))
    path = write_tif(tmp_path / "dry.tif", np.stack([green - 100, green, green + 50, swir]).astype(np.uint16))
    with rasterio.open(path, "r+") as ds:
        for i, n in enumerate(["B02", "B03", "B04", "B11"], 1):
            ds.set_band_description(i, n)
    from unetseg.predict.index import otsu_threshold, water_index

    raw = np.stack([green, swir], -1)
    assert water_index(raw, 0).max() < 0 < (water_index(raw, 0) < otsu_threshold(water_index(raw, 0))).mean()
    r = unetseg("predict", "--method", "mndwi", path, "--out", tmp_path / "out", "-q")
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"][0]
    assert row["water_fraction"] == 0 and row["index_threshold"] == 0


def test_unet_plus_index_is_water_where_either_the_model_or_the_index_finds_it(tiny_run, tmp_path):
    path, water = four_band_scene(tmp_path, offset=1000)
    masks, thresholds = {}, {}
    for method in ("unet", "mndwi", "unet+mndwi"):
        out = tmp_path / method
        args = (tiny_run,) if method != "mndwi" else ()
        r = unetseg("predict", "--method", method, *args, path, "--out", out, "--value-range", "1000,5000", "-q")
        assert r.returncode == 0, r.stderr
        assert "--method unet+" not in r.stdout  # --quiet: no hint
        with rasterio.open(out / "s2_mask.tif") as m:
            masks[method] = m.read(1) == 1
            if method != "mndwi":
                assert m.tags()["unetseg_method"] == method
        row = json.loads((out / "predictions.json").read_text())["inputs"][0]
        assert (row["index_threshold"] == "") == (method == "unet")
        if method != "unet":
            thresholds[method] = row["index_threshold"]
    assert thresholds["mndwi"] == thresholds["unet+mndwi"] >= 0  # one rule: the same (floored) Otsu threshold
    fused, unet, index = masks["unet+mndwi"], masks["unet"], masks["mndwi"]
    assert (fused == (unet | index)).all()
    assert (index & ~unet).any() and (fused != unet).any()  # the index adds water the model missed
    rgb = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(rgb)
    bad = unetseg("predict", tiny_run, rgb, "--method", "unet+mndwi", "--out", tmp_path / "o2")
    assert bad.returncode == 2 and "needs green and swir1 bands" in bad.stderr and "Traceback" not in bad.stderr
    other = tmp_path / "s2b.tif"
    other.write_bytes(path.read_bytes())
    two = unetseg("predict", tiny_run, path, other, "--out", tmp_path / "hint")
    assert two.returncode == 0, two.stderr
    hints = [line for line in two.stdout.splitlines() if "adds the water a water index finds" in line]
    assert len(hints) == 1 and "s2.tif has green and infrared bands: --method unet+ndwi or unet+mndwi" in hints[0]
    from unetseg import load
    from unetseg.errors import DataError

    with pytest.raises(DataError, match="needs green and swir1 bands.*not an array"):
        load(tiny_run, method="unet+mndwi").predict(np.zeros((40, 40, 3), np.uint8))


# --- unlike the training data ----------------------------------------------------------------------------------


def test_an_input_unlike_the_training_images_is_scored_and_warned_about(tiny_run, synth_data, tmp_path):
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["input_stats"]["threshold"] > 0
    like = next((synth_data / "Images").iterdir())
    odd = tmp_path / "magenta.png"
    Image.fromarray(np.tile(np.array([255, 0, 255], np.uint8), (64, 64, 1))).save(odd)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, like, odd, "--out", out)
    assert r.returncode == 0, r.stderr
    rows = {Path(row["input"]).name: row for row in json.loads((out / "predictions.json").read_text())["inputs"]}
    assert rows["magenta.png"]["unlike_training"] > info["input_stats"]["threshold"]
    assert rows[like.name]["unlike_training"] < info["input_stats"]["threshold"]
    assert 0 <= rows[like.name]["mean_entropy"] <= 1
    warnings = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "magenta.png looks unlike the images the model was trained on" in warnings[0]


def test_the_unlike_warning_shows_its_distance_and_threshold_as_different_numbers():
    """A distance just above the threshold is never printed as 'distance 4.9 > 4.9'."""
    from unetseg.ood import unlike_note

    assert unlike_note(4.9, 4.9) is None and unlike_note(3.0, 4.9) is None
    assert "(distance 6.6 > 5.8," in unlike_note(6.61, 5.83)
    assert "(distance 4.93 > 4.91," in unlike_note(4.931, 4.912)
    assert "(distance 4.9001 > 4.9000," in unlike_note(4.90012, 4.9)


# --- the shared validation scenes ------------------------------------------------------------------------------


def esw_scenes() -> Path:
    return shared_dataset("esw-scenes", "UNETSEG_SCENES")


@pytest.mark.realdata
def test_the_esw_validation_yaml_is_the_general_recipes_scene_split():
    import yaml

    from unetseg.config import get_recipe
    from unetseg.data.scenes import load_scene_set, split_scenes

    r = get_recipe("general")
    names = [s.name for s in load_scene_set(esw_scenes()).scenes]
    val = split_scenes(names, r.scene_val, r.split_seed)["val"]
    listed = yaml.safe_load((REPO / "configs" / "esw-val.yaml").read_text())["scenes"]
    assert sorted(Path(s["image"]).stem for s in listed) == sorted(val)


@pytest.mark.realdata
def test_the_shipped_model_with_mndwi_finds_the_flooded_fields_the_model_alone_misses(tmp_path):
    """The three real Sentinel-2 scenes (validation only): the RGB model misses Spain's flooded fields; with
    MNDWI beside it (unet+mndwi) every scene reaches issue 13's goal. Scored independently of evaluate's
    metrics: the mask GeoTIFFs of predict against the label rasters."""
    import yaml

    root = shared_dataset("real-scenes", "UNETSEG_REAL_SCENES")
    listed = yaml.safe_load((REPO / "configs" / "real-scenes.yaml").read_text())["scenes"]
    goals = {"Spain_7370579": 0.5, "accra": 0.85, "limassol": 0.6}
    iou = {}
    for s in listed:
        vr = ",".join(str(v) for v in s.get("value_range", [])) or "auto"
        out = tmp_path / s["name"]
        for method in ("unet", "unet+mndwi"):
            r = unetseg("predict", "water", root / s["image"], "--method", method, "--value-range", vr,
                        "--vectors", "none", "--out", out / method, "-q")
            assert r.returncode == 0, r.stderr
            with rasterio.open(out / method / (Path(s["image"]).stem + "_mask.tif")) as m:
                pred = m.read(1)
            with rasterio.open(root / s["label"]) as lab:
                band = lab.descriptions.index(s["label_band"]) + 1 if "label_band" in s else 1
                label = lab.read(band)
            scored = (label != s.get("ignore", -999)) & (pred != 255)
            truth, found = label[scored] == s["water"], pred[scored] == 1
            iou[s["name"], method] = (truth & found).sum() / (truth | found).sum()
    print({k: round(float(v), 3) for k, v in iou.items()})
    for name, goal in goals.items():
        assert iou[name, "unet+mndwi"] >= goal, (name, iou[name, "unet+mndwi"])


# --- the shipped model -----------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_the_shipped_water_model_is_pinned_small_documented_and_runs_offline(tmp_path):
    from unetseg.atomic import sha256_file
    from unetseg.zoo import MAX_BYTES, SHIPPED, resolve_run

    folder = resolve_run("water")
    weights = folder / "best.safetensors"
    assert weights.stat().st_size <= MAX_BYTES and sha256_file(weights) == SHIPPED["water"][1]
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Known failure modes" in card and "licence" in card.lower() and "mask" in card
    info = json.loads((folder / "run.json").read_text())
    assert info["model_gsd"] and info["input_stats"]["threshold"] > 0
    # a held-out Earth Surface Water scene (never trained on), cut to a corner with lake and land, at its 10 m
    scenes = shared_dataset("esw-scenes", "UNETSEG_SCENES")
    image = np.asarray(Image.open(scenes / "Images" / "tif64.jpg").convert("RGB"))[:480, :480]
    truth = np.asarray(Image.open(scenes / "Masks" / "tif64.png").convert("L"))[:480, :480] > 127
    assert 0.2 < truth.mean() < 0.8
    Image.fromarray(image).save(tmp_path / "lakes.png")
    r = unetseg("predict", "water", tmp_path / "lakes.png", "--gsd", "10", "--out", tmp_path / "out", "-q",
                env={"UNETSEG_DATA": str(tmp_path / "nowhere")})
    assert r.returncode == 0, r.stderr
    row = json.loads((tmp_path / "out" / "predictions.json").read_text())["inputs"][0]
    pred = np.asarray(Image.open(tmp_path / "out" / "lakes_mask.png")) == 255
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.7, iou  # the whole scene scores 0.93 water IoU (water v2)
    assert row["unlike_training"] != ""


def test_evaluating_the_shipped_model_never_writes_into_the_package(tmp_path):
    """The package folder may be read-only: scenes need --out (then score as for a run), the chips say where its
    chip scores are; nothing is written beside the shipped weights."""
    from unetseg.zoo import resolve_run

    folder = resolve_run("water")
    before = sorted(p.name for p in folder.rglob("*"))
    rgb, water = lake_scene(4, 64, 80)
    Image.fromarray(rgb).save(tmp_path / "lake.png")
    (tmp_path / "set.yaml").write_text("name: one\ngsd: 20\nscenes:\n  - {image: lake.png, label: mask.png}\n")
    Image.fromarray(np.where(water, 255, 0).astype(np.uint8)).save(tmp_path / "mask.png")
    r = unetseg("evaluate", "water", "--scenes", tmp_path / "set.yaml")
    assert r.returncode == 2 and "water: a shipped model's folder is part of the installed package: give --out" \
        in r.stderr
    r = unetseg("evaluate", "water", "--scenes", tmp_path / "set.yaml", "--out", tmp_path / "scores")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "scores" / "metrics.json").read_text())["scenes"] == 1
    r = unetseg("evaluate", "water")
    assert r.returncode == 2 and "water: a shipped model has no test split of its own here" in r.stderr
    import unetseg as package

    assert package.evaluate("water", tmp_path / "set.yaml", out=tmp_path / "api")["scenes"] == 1
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_a_tampered_shipped_model_is_refused(tmp_path, monkeypatch):
    import unetseg.zoo as zoo

    monkeypatch.setitem(zoo.SHIPPED, "water", (zoo.SHIPPED["water"][0], "0" * 64))
    with pytest.raises(Exception, match="SHA-256 differs from the one released"):
        zoo.resolve_run("water")


@pytest.mark.realdata
def test_the_shipped_model_does_not_call_dry_land_water():
    """Crops of the validation scenes whose hand-drawn mask has no water at all (deserts, snow, mountains,
    fields): the shipped model must leave them dry (< 5% water)."""
    import yaml

    import unetseg

    root = esw_scenes()
    listed = yaml.safe_load((REPO / "configs" / "esw-val.yaml").read_text())["scenes"]
    crops = []
    for s in listed:
        img = np.asarray(Image.open(root / s["image"]).convert("RGB"))
        mask = np.asarray(Image.open(root / s["label"]).convert("L")) > 127
        found = 0
        for y in range(0, img.shape[0] - 256, 128):
            for x in range(0, img.shape[1] - 256, 128):
                if not mask[y:y + 256, x:x + 256].any() and found < 3:
                    crops.append((Path(s["image"]).stem, img[y:y + 256, x:x + 256]))
                    found += 1
    assert len(crops) >= 10
    model = unetseg.load("water")
    fractions = {f"{name}#{i}": float((model.predict(c, gsd=10)[1] == 1).mean()) for i, (name, c) in enumerate(crops)}
    print({k: round(v, 3) for k, v in fractions.items()})
    assert np.mean(list(fractions.values())) < 0.05


@pytest.mark.slow
def test_the_demo_segments_a_scene_with_the_shipped_model_even_without_the_shared_data(tmp_path):
    r = unetseg("demo", "--out", tmp_path / "demo", env={"UNETSEG_REAL_SCENES": str(tmp_path / "nowhere")})
    assert r.returncode == 0, r.stderr
    assert "the package's synthetic sample" in r.stdout and "the picture:" in r.stdout
    picture = tmp_path / "demo" / "sample_scene_overlay.jpg"
    assert picture.exists() and Image.open(picture).size == (768, 768)
    row = json.loads((tmp_path / "demo" / "predictions.json").read_text())["inputs"][0]
    assert 0.02 < row["water_fraction"] < 0.9 and row["area_unit"] == "m2"


def test_the_shared_data_sets_are_found_beside_the_one_data_setting(tmp_path, monkeypatch):
    """UNETSEG_DATA=/somewhere/water-bodies finds esw-scenes and real-scenes beside it (the demo's real scene,
    the general recipe's scenes); their own settings win; with neither, ../shared/data."""
    from pathlib import Path

    from unetseg.workflow import default_scenes_dir, shared_dataset_dir

    for name in ("water-bodies", "esw-scenes", "real-scenes"):
        (tmp_path / "data" / name).mkdir(parents=True)
    monkeypatch.delenv("UNETSEG_SCENES", raising=False)
    monkeypatch.delenv("UNETSEG_REAL_SCENES", raising=False)
    monkeypatch.setenv("UNETSEG_DATA", str(tmp_path / "data" / "water-bodies"))
    assert default_scenes_dir() == tmp_path / "data" / "esw-scenes"
    assert shared_dataset_dir("real-scenes", "UNETSEG_REAL_SCENES") == tmp_path / "data" / "real-scenes"
    monkeypatch.setenv("UNETSEG_REAL_SCENES", str(tmp_path / "mine"))
    assert shared_dataset_dir("real-scenes", "UNETSEG_REAL_SCENES") == tmp_path / "mine"
    (tmp_path / "data" / "esw-scenes").rmdir()
    assert default_scenes_dir() == Path("../shared/data/esw-scenes")


def test_unlike_summary_is_strict_json_where_the_correlation_is_undefined():
    """Spearman's rho is null in metrics.json, not NaN (invalid JSON) and no SciPy warning, where it is undefined:
    every image's IoU the same (a model that finds no water), or under 3 images; a number in [-1, 1] otherwise."""
    import warnings

    from unetseg.evaluation import unlike_summary

    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 6, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for iou in (np.zeros(20), np.full(20, np.nan), np.r_[0.5, 0.7, np.full(18, np.nan)]):
            s = unlike_summary(distance, iou, threshold=4.0)
            assert s["spearman_distance_vs_iou"] is None
            json.dumps(s, allow_nan=False)
        s = unlike_summary(distance, distance / 6 + rng.normal(0, 0.05, 20), threshold=4.0)
    assert 0.5 < s["spearman_distance_vs_iou"] <= 1 and s["fires"] == int((distance > 4).sum())
