"""Electron microscopy groundwork (issue 17): the field's metrics on real ISBI labels, elastic augmentation that
keeps image and mask aligned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import shared_dataset


@pytest.fixture(scope="module")
def isbi_mask():
    from PIL import Image

    root = shared_dataset("isbi2012-em", "UNETSEG_ISBI")
    return np.asarray(Image.open(root / "Masks" / "slice_00.png").convert("L")) > 127  # cell interior


@pytest.mark.realdata
def test_membrane_scores_on_real_isbi_labels(isbi_mask):
    from scipy.ndimage import binary_dilation, binary_erosion

    from unetseg.metrics import membrane_scores

    same = membrane_scores(isbi_mask, isbi_mask)
    assert same["pixel_error"] == 0 and same["rand_error"] == 0 and same["true_cells"] > 50
    thick = membrane_scores(binary_erosion(isbi_mask, iterations=2), isbi_mask)  # membranes 4 px thicker
    gaps = membrane_scores(binary_dilation(isbi_mask, iterations=2), isbi_mask)  # thin membranes vanish
    blank = membrane_scores(np.ones_like(isbi_mask), isbi_mask)  # the all-interior baseline
    assert thick["pixel_error"] == pytest.approx(np.mean(binary_erosion(isbi_mask, iterations=2) != isbi_mask))
    # Rand error punishes merged cells, not thick borders: the reason the field uses it beside pixel error
    assert thick["rand_error"] < 0.05 < gaps["rand_error"] and gaps["vi_merge"] > thick["vi_merge"]
    assert blank["rand_error"] > 0.9 and blank["predicted_cells"] == 1
    with pytest.raises(ValueError, match="differ in shape"):
        membrane_scores(isbi_mask[:10], isbi_mask)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([48, 64, 96]), channels=st.sampled_from([1, 3]))
def test_elastic_augmentation_moves_image_and_mask_together(seed, size, channels):
    from unetseg.augment import Augment
    from unetseg.config import AugmentConfig

    cfg = AugmentConfig(flips=False, rot90=False, scale=None, brightness=0, contrast=0, saturation=0, hue=0,
                        elastic_p=1.0, elastic_alpha=4.0, elastic_sigma=6.0)
    gen = np.random.default_rng(seed)
    y = np.zeros((2, size, size), np.int64)
    for _ in range(4):  # a few blobs and bars
        r, c = gen.integers(0, size - 12, 2)
        y[:, r:r + gen.integers(6, 12), c:c + gen.integers(6, 24)] = 1
    y = torch.from_numpy(y)
    x = y[:, None].float().repeat(1, channels, 1, 1)  # the image is the mask: alignment is checkable
    torch.manual_seed(seed)
    xa, ya = Augment(cfg, channels)(x, y)
    assert xa.shape == x.shape and ya.shape == y.shape and set(ya.unique().tolist()) <= {0, 1}
    sure = (xa[:, 0] > 0.95) | (xa[:, 0] < 0.05)  # pixels away from an edge after the warp
    assert ((xa[:, 0] > 0.5).long() == ya)[sure].float().mean() >= 0.99
    assert (xa != x).any()  # it did deform


# ---- layouts, labels, weights, recipes: issue 17 ------------------------------------------------------------------

def _save(path, a):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


ISBI_YAML = """channels: [grey]
task: membranes
classes:
  - {name: membrane, value: 0}
  - {name: cell, value: 255}
split: {test: [slice_08, slice_09], val: [slice_07]}
"""


@pytest.fixture(scope="module")
def isbi_crops(tmp_path_factory):
    """Ten 128 px crops of real ISBI slices (Kaggle layout) with a dataset.yaml: 7 train, 1 val, 2 test."""
    from PIL import Image

    src = shared_dataset("isbi2012-em", "UNETSEG_ISBI")
    root = tmp_path_factory.mktemp("isbi") / "data"
    for i in range(10):
        for part in ("Images", "Masks"):
            a = np.asarray(Image.open(src / part / f"slice_{i:02d}.png").convert("L"))
            _save(root / part / f"slice_{i:02d}.png", np.ascontiguousarray(a[200:328, 160:288]))
    (root / "dataset.yaml").write_text(ISBI_YAML)
    return root


def tiny_em_recipe():
    from unetseg.config import AugmentConfig, ModelConfig, Recipe

    return Recipe(name="tiny-em", model=ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True),
                  epochs=30, batch_size=8, image_size=64, optimizer="adamw", lr=5e-3, loss="ce+dice",
                  schedule="onecycle", early_stopping_patience=0, monitor="val_miou", chips="grid", chip_stride=32,
                  border_weight=10.0, augment=AugmentConfig(scale=None, brightness=0.1, contrast=0.1, elastic_p=0.5,
                                                            elastic_sigma=6.0, elastic_alpha=1.0))


@pytest.fixture(scope="module")
def isbi_run(isbi_crops, tmp_path_factory):
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    out = tmp_path_factory.mktemp("isbirun") / "run"
    run_train(isbi_crops, out, tiny_em_recipe(), select_runtime("fp32"), progress=False, log=lambda s: None)
    return out


@pytest.mark.realdata
@pytest.mark.slow
def test_a_tiny_model_learns_membranes_clearly_better_than_all_interior(isbi_crops, isbi_run):
    from PIL import Image

    from unetseg.metrics import membrane_scores
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_evaluate

    split = json.loads((isbi_run / "split.json").read_text())
    assert split["test"] == ["slice_08", "slice_09"] and split["val"] == ["slice_07"]
    assert split["fixed"] == {"test": ["slice_08", "slice_09"], "val": ["slice_07"]}
    m = run_evaluate(isbi_run, select_runtime("fp32"), progress=False)
    whole = m["whole_files"]
    assert whole["files"] == 2 and {"rand_error", "vi_split", "vi_merge", "pixel_error"} <= set(whole)
    baseline = [membrane_scores(np.ones((128, 128), bool),
                                np.asarray(Image.open(isbi_crops / "Masks" / f"{s}.png")) > 127)
                for s in split["test"]]
    base_pixel = np.mean([b["pixel_error"] for b in baseline])
    base_rand = np.mean([b["rand_error"] for b in baseline])
    assert whole["pixel_error"] < 0.75 * base_pixel, (whole["pixel_error"], base_pixel)
    assert whole["rand_error"] < base_rand - 0.2, (whole["rand_error"], base_rand)
    assert whole["per_class_iou"]["membrane"] > 0.3 and (isbi_run / "slice_slice_08.png").stat().st_size > 5000


@pytest.mark.realdata
@pytest.mark.slow
def test_a_grey_model_runs_end_to_end(isbi_run, isbi_crops, tmp_path):
    """Predict (grey and colour files), the API, serve and ONNX export, all on one grey channel."""
    from PIL import Image

    import unetseg
    from helpers import unetseg as cli

    grey = isbi_crops / "Images" / "slice_09.png"
    rgb = tmp_path / "rgb.png"
    Image.open(grey).convert("RGB").save(rgb)
    r = cli("predict", isbi_run, grey, rgb, "--out", tmp_path / "out", "--scale", "1")
    assert r.returncode == 0, r.stderr
    a, b = (np.asarray(Image.open(tmp_path / "out" / f"{n}_mask.png")) for n in ("slice_09", "rgb"))
    assert a.shape == (128, 128) and (a == b).all() and 0.05 < (a == 0).mean() < 0.6  # membranes: class 0
    assert "rgb.png: RGB converted to grey (the model reads one channel)" in r.stdout + r.stderr
    assert "slice_09.png: 128x128 px, 1 tiles" in r.stdout and "cell " in r.stdout  # the class it counts, by name
    model = unetseg.load(isbi_run, scale=1.0)
    probs, mask = model.predict(np.asarray(Image.open(grey)))
    assert probs.shape == (2, 128, 128) and (mask * 255 == a).all()
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from unetseg.runtime import select_runtime
    from unetseg.serve.app import create_app

    client = TestClient(create_app(isbi_run, select_runtime("fp32"), log=lambda m: None))
    reply = client.post("/v1/segment?scale=1", files={"image": ("s.png", grey.read_bytes(), "image/png")})
    assert reply.status_code == 200, reply.text
    from unetseg.export import export_onnx

    parity = export_onnx(isbi_run, tmp_path / "m.onnx")
    assert parity["max_abs_logit_diff"] <= 1e-3 and parity["mask_agreement"] >= 0.999


@pytest.fixture(scope="module")
def epfl_crops(tmp_path_factory):
    """The EPFL layout (a folder per class, train and test sub-folders) from 96 px crops of real slices, with
    three overlapping classes: mitochondria and their boundaries overlap by construction."""
    from PIL import Image

    src = shared_dataset("epfl-em", "UNETSEG_EPFL")
    root = tmp_path_factory.mktemp("epfl") / "em"
    classes = ["membranes", "mitochondrial boundaries", "mitochondrion"]
    for part, sub, names in [("epfl_train", "training", (0, 1, 2, 3, 13)), ("epfl_test", "testing", (0, 1))]:
        for i in names:
            name = f"{sub}{i:04d}.png"
            for folder in ["slices"] + classes:
                a = np.asarray(Image.open(src / part / folder / name).convert("L"))
                _save(root / part / folder / name, np.ascontiguousarray(a[300:396, 420:516]))
    return root, classes


@pytest.mark.realdata
def test_class_folders_load_natively_and_overlaps_round_trip(epfl_crops, tmp_path):
    from PIL import Image

    from unetseg.data import load_chips, scan_folder
    from unetseg.data.folder import read_mask
    from unetseg.data.spec import load_spec

    root, classes = epfl_crops
    spec = load_spec(root)  # no dataset.yaml: the layout itself says it
    assert spec.multilabel and spec.class_names == classes and spec.channels == ("grey",)
    assert dict(spec.parts) == {"train": "epfl_train", "test": "epfl_test"}
    scan = scan_folder(root, spec)
    assert len(scan.pairs) == 7 and scan.parts["testing0001"] == "test" and scan.parts["training0013"] == "train"
    chips = load_chips(scan.pairs, 96, spec, progress=False)
    assert chips.images.shape == (7, 96, 96, 1)
    overlap = 0
    for stem, bits in zip(chips.stems, np.asarray(chips.masks)):
        part = "epfl_test" if stem.startswith("testing") else "epfl_train"
        truth = [np.asarray(Image.open(root / part / c / f"{stem}.png")) > 128 for c in classes]
        for k, t in enumerate(truth):  # every class's mask comes back from its bit
            assert (((bits >> k) & 1) == t).all()
        overlap += int((np.sum(truth, axis=0) > 1).sum())
    assert overlap > 0  # the crops do hold overlapping labels
    # the same files folded into exclusive classes by a stated priority
    folded = tmp_path / "folded"
    import shutil

    shutil.copytree(root, folded)
    (folded / "dataset.yaml").write_text(
        "channels: [grey]\noverlap: priority\npriority: [mitochondrial boundaries, mitochondrion, membranes]\n"
        "parts: {train: epfl_train, test: epfl_test}\nclasses:\n"
        + "".join(f"  - {{name: {c}, folder: {c}}}\n" for c in classes))
    fspec = load_spec(folded)
    assert not fspec.multilabel and fspec.class_names == ["background", "mitochondrial boundaries",
                                                          "mitochondrion", "membranes"]
    pair = scan_folder(folded, fspec).pairs[0]
    classes_map = read_mask(pair.mask, fspec)
    bits = read_mask(pair.mask, spec)
    expect = np.zeros_like(classes_map)
    for value, k in [(3, 0), (2, 2), (1, 1)]:  # membranes (bit 0) lowest, boundaries (bit 1) win
        expect[(bits >> k) & 1 == 1] = value
    assert (classes_map == expect).all() and set(np.unique(classes_map)) <= {0, 1, 2, 3}


@pytest.mark.realdata
@pytest.mark.slow
def test_a_multilabel_run_scores_each_structure_and_predicts_bit_sets(epfl_crops, tmp_path):
    from PIL import Image

    from unetseg.config import ModelConfig, Recipe
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_evaluate, run_train
    from helpers import unetseg as cli

    root, classes = epfl_crops
    recipe = Recipe(name="tiny-ml", model=ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True),
                    epochs=3, batch_size=4, image_size=48, lr=3e-3, loss="bce+dice", schedule="none",
                    early_stopping_patience=0, monitor="val_miou", chips="grid", chip_stride=24, split_val=0.3)
    run = tmp_path / "run"
    run_train(root, run, recipe, select_runtime("fp32"), progress=False, log=lambda s: None)
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"]["model"]["multilabel"] and info["recipe"]["model"]["num_classes"] == 3
    m = run_evaluate(run, select_runtime("fp32"), progress=False)
    assert m["multilabel"] and set(m["per_class_dice"]) == set(classes)
    assert set(m["whole_files"]["per_class_iou"]) == set(classes) and m["whole_files"]["files"] == 2
    r = cli("predict", run, root / "epfl_test" / "slices" / "testing0000.png", "--out", tmp_path / "p", "-q",
            "--scale", "1")
    assert r.returncode == 0, r.stderr
    mask = np.asarray(Image.open(tmp_path / "p" / "testing0000_mask.png"))
    assert mask.shape == (96, 96) and mask.max() < 8  # bit sets of three classes


@pytest.mark.realdata
@pytest.mark.parametrize("break_it, where, what", [
    ("missing", "membranes/training0002.png", "no mask of class 'membranes' for the image training0002.png"),
    ("size", "mitochondrion/training0001.png", "mask is 50x40 px but the mask of class"),
    ("yaml", "dataset.yaml", "classes 'a' and 'b' name the same mask folder 'mitochondrion'"),
])
def test_bad_class_folder_data_gets_one_line_naming_the_file(epfl_crops, tmp_path, break_it, where, what):
    import shutil

    from helpers import unetseg as cli

    root = tmp_path / "em"
    shutil.copytree(epfl_crops[0], root)
    train = root / "epfl_train"
    if break_it == "missing":
        (train / where).unlink()
    elif break_it == "size":
        _save(train / where, np.zeros((40, 50), np.uint8))
    else:
        (root / where).write_text("channels: [grey]\nparts: {train: epfl_train, test: epfl_test}\nclasses:\n"
                                  "  - {name: a, folder: mitochondrion}\n  - {name: b, folder: mitochondrion}\n")
    r = cli("train", "--data", root, "--out", tmp_path / "run", "--recipe", "epfl-em", "--epochs", "1", "-q")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and what in lines[0] and str(root / ("" if break_it == "yaml" else "epfl_train") / where) \
        in lines[0], r.stderr
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_border_weights_equal_the_full_computation():
    from scipy import ndimage

    from unetseg.data.borders import border_weights

    gen = np.random.default_rng(3)
    objects = np.zeros((80, 90), bool)
    for _ in range(9):
        y, x = gen.integers(0, 70, 2)
        objects[y:y + gen.integers(4, 14), x:x + gen.integers(4, 14)] = True
    objects[60:75, 5:15] = objects[60:75, 17:27] = True  # two cells 2 px apart
    labels, n = ndimage.label(objects)
    dists = np.sort(np.stack([ndimage.distance_transform_edt(labels != i) for i in range(1, n + 1)]), axis=0)
    full = 1 + 10 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * 5.0 ** 2))
    got = border_weights(objects, 10, 5)
    assert np.abs(got - full).max() < 10 * np.exp(-8)  # beyond 4 sigma of an object it is not looked at
    assert got[67, 15] > 9 and got[67, 16] > 9  # the 2 px gap between two cells weighs nearly 1 + w0
    assert (border_weights(objects[:5, :5] & False) == 1).all()


def test_grid_chips_cover_the_image_and_fixed_parts_hold():
    from unetseg.config import SplitConfig
    from unetseg.data.borders import grid_cut, grid_starts
    from unetseg.data.split import make_split

    assert grid_starts(768, 256, 192) == [0, 192, 384, 512] and grid_starts(100, 256, 128) == [0]
    a = np.arange(100 * 70).reshape(100, 70)
    chips = grid_cut(a, 64, 48)
    assert len(chips) == 4 and (chips[-1] == a[36:100, 6:70]).all()
    assert grid_cut(a[:40], 64, 32, fill=255)[0][50, 0] == 255
    stems = [f"s{i}" for i in range(40)]
    split = make_split(stems, SplitConfig(test=0.1, val=0.2, seed=1), {"s0": "test", "s1": "test", "s5": "train"})
    assert split["test"] == ["s0", "s1"] and split["val"] and "s0" not in split["train"]
    assert len(split["val"]) + len(split["train"]) == 38


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_pixel_weights_move_with_image_and_mask(seed):
    from unetseg.augment import Augment
    from unetseg.config import AugmentConfig

    cfg = AugmentConfig(scale=(0.5, 1.0), crop_p=1.0, brightness=0.2, contrast=0.2, elastic_p=1.0,
                        elastic_alpha=4.0, elastic_sigma=6.0)
    gen = np.random.default_rng(seed)
    y = np.zeros((2, 64, 64), np.int64)
    for _ in range(4):
        r, c = gen.integers(0, 50, 2)
        y[:, r:r + 10, c:c + 14] = 1
    y = torch.from_numpy(y)
    x, w = torch.rand(2, 1, 64, 64), y.float() * 9 + 1  # weights 10 on the objects, 1 elsewhere
    torch.manual_seed(seed)
    xa, ya, wa = Augment(cfg, 1)(x, y, w)
    assert wa.shape == ya.shape == (2, 64, 64) and xa.shape == x.shape
    sure = (wa > 9.5) | (wa < 1.5)
    assert ((wa > 5.5).long() == ya)[sure].float().mean() >= 0.99
