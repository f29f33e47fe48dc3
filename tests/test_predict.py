"""`unetseg predict`: seams, georeferencing, polygons and areas, no-data, and every bad input it names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rasterio.features import shapes
from rasterio.transform import from_origin

from unetseg.checkpoint import load_for_inference, resolve_checkpoint
from unetseg.config import PredictConfig, Recipe
from unetseg.data import load_chips, scan_folder
from unetseg.inference import predict_chips, to_classes
from unetseg.predict.engine import Segmenter
from unetseg.data.sources import ImageSource, parse_bands, parse_value_range
from unetseg.pixels import to_model_range
from unetseg.predict.vectors import Polygonizer
from unetseg.runtime import select_runtime
from helpers import unetseg

UTM = "EPSG:32633"


def write_tif(path, bands: np.ndarray, crs=UTM, nodata=None, transform=None):
    """(C, H, W) array to a GeoTIFF; 10 m pixels in UTM 33N unless crs is None."""
    profile = dict(driver="GTiff", height=bands.shape[1], width=bands.shape[2], count=bands.shape[0],
                   dtype=bands.dtype, nodata=nodata)
    if crs is not None:
        profile.update(crs=crs, transform=transform or from_origin(400000, 5200000, 10, 10))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(bands)
    return path


def mosaic_of_test_chips(run, data, n=6):
    """n x n test chips of the run (at its training size) side by side, and the stems."""
    size = Recipe.from_dict(json.loads((run / "run.json").read_text())["recipe"]).image_size
    test = json.loads((run / "split.json").read_text())["test"][: n * n]
    pairs = {p.stem: p for p in scan_folder(data).pairs}
    chips = load_chips([pairs[s] for s in test], size, progress=False)
    grid = np.asarray(chips.images).reshape(n, n, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(n * size, n * size, 3)
    return grid, np.asarray(chips.images), size


def water_iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


# --- seams --------------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_tiled_mosaic_agrees_with_one_pass_and_chip_by_chip_and_seams_show_without_blending(real_run, real_data,
                                                                                             tmp_path):
    """A mosaic of 8 x 8 real test chips, predicted in overlapping tiles of 2.5 chips whose edges fall inside
    chips, against (a) the whole mosaic in one forward pass (what tiling approximates: the same context
    everywhere but at the mosaic's edge) and (b) each chip predicted on its own.

    (b) can never reach the one-pass answer's agreement: a chip alone has no neighbours, and these models
    use context (the training chips are whole images resized to 64-128 px). So the bar for (b) is that
    tiling loses no agreement beyond what the one-pass prediction already has.
    """
    n = 8
    mosaic, chips, size = mosaic_of_test_chips(real_run, real_data, n)
    rt = select_runtime("auto")
    model, _ = load_for_inference(resolve_checkpoint(real_run), rt)
    per_chip = to_classes(predict_chips(model, chips, rt)).astype(bool)
    chip_by_chip = per_chip.reshape(n, n, size, size).transpose(0, 2, 1, 3).reshape(n * size, n * size)
    path = tmp_path / "mosaic.png"
    Image.fromarray(mosaic).save(path)
    source = ImageSource(path, 3)

    def tiled(tile, overlap, blend):
        seg = Segmenter(model, rt, 1, tile=tile, overlap=overlap, batch_size=4, blend=blend)
        out = np.zeros(mosaic.shape[:2], bool)

        def sink(y0, probs, valid):
            out[y0:y0 + probs.shape[1]] = probs[0] > 0.5

        seg.run(source, (1.0, 1.0), sink, progress=False)
        return out

    one_pass = tiled(n * size, 0, "none")  # a single window: the whole mosaic at once
    tile = size * 5 // 2
    blended = tiled(tile, size, "cosine")
    pasted = tiled(tile, 0, "none")  # blending off: tiles side by side

    edges = np.zeros(mosaic.shape[:2], bool)  # 2 px either side of the pasted tiles' edges
    for e in range(tile, n * size, tile):
        edges[e - 2:e + 2, :] = True
        edges[:, e - 2:e + 2] = True
    seam_blended = (blended != one_pass)[edges].mean()
    seam_pasted = (pasted != one_pass)[edges].mean()
    iou = {"blended/one-pass": water_iou(blended, one_pass), "pasted/one-pass": water_iou(pasted, one_pass),
           "blended/chip-by-chip": water_iou(blended, chip_by_chip),
           "one-pass/chip-by-chip": water_iou(one_pass, chip_by_chip)}
    print(", ".join(f"{k} {v:.4f}" for k, v in iou.items()),
          f"; disagreement at tile edges: blended {seam_blended:.4f}, pasted {seam_pasted:.4f}")
    assert one_pass.mean() > 0.05  # there is water to agree on
    assert iou["blended/one-pass"] >= 0.98
    assert iou["blended/chip-by-chip"] >= iou["one-pass/chip-by-chip"] - 0.02
    assert seam_pasted > 3 * max(seam_blended, 1e-3)  # blending off: the tile edges show


# --- georeferenced rasters ----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_geotiff_keeps_crs_transform_size_and_polygons_measure_the_mask(real_run, real_data, tmp_path):
    mosaic, _, _ = mosaic_of_test_chips(real_run, real_data, 6)
    bands = (np.moveaxis(mosaic, -1, 0).astype(np.uint16) * 4000 // 255 + 1).astype(np.uint16)
    bands[:, :40, :60] = 0  # a no-data corner
    transform = from_origin(612340, 5123450, 10, 10)
    src = write_tif(tmp_path / "scene.tif", bands, nodata=0, transform=transform)
    out = tmp_path / "out"
    r = unetseg("predict", real_run, src, "--out", out, "--scale", "1", "--tile", "96", "--probabilities", "-q")
    assert r.returncode == 0, r.stderr

    with rasterio.open(out / "scene_mask.tif") as m, rasterio.open(src) as s:
        assert (m.crs, m.transform, m.width, m.height) == (s.crs, s.transform, s.width, s.height)
        assert m.count == 2 and m.nodata == 255 and m.compression is not None and m.block_shapes[0] == (512, 512)
        mask, prob = m.read(1), m.read(2)
    assert (mask[:40, :60] == 255).all() and (prob[:40, :60] == 255).all()  # no-data stays no-data
    assert set(np.unique(mask[40:])) <= {0, 1} and prob[40:].max() <= 100
    water = int((mask == 1).sum())
    assert water > 1000

    import shapely
    from rasterio.warp import transform_bounds

    # GeoJSON as RFC 7946 wants it: longitude/latitude, no "crs" member, exterior rings counter-clockwise
    fc = json.loads((out / "scene_water.geojson").read_text())
    assert "crs" not in fc
    geoms = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
    assert all(shapely.is_ccw(g.exterior) for g in geoms)
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", *rasterio.transform.array_bounds(*mask.shape,
                                                                                                  transform))
    assert all(west - 1e-6 <= g.bounds[0] and g.bounds[2] <= east + 1e-6 and south - 1e-6 <= g.bounds[1]
               and g.bounds[3] <= north + 1e-6 for g in geoms)
    total = sum(f["properties"]["area_m2"] for f in fc["features"])
    assert total == pytest.approx(water * 100, rel=0.01)  # UTM's scale factor is within 0.1% of 1 here

    # in the raster's CRS on request: pixel-exact polygons
    out2 = tmp_path / "out2"
    r = unetseg("predict", real_run, src, "--out", out2, "--scale", "1", "--tile", "96", "--vector-crs", "raster",
                "-q")
    assert r.returncode == 0, r.stderr
    fc2 = json.loads((out2 / "scene_water.geojson").read_text())
    assert "32633" in fc2["crs"]["properties"]["name"]
    geoms2 = [shapely.geometry.shape(f["geometry"]) for f in fc2["features"]]
    assert sum(g.area for g in geoms2) == pytest.approx(water * 100, rel=1e-6)
    assert [f["properties"]["area_m2"] for f in fc2["features"]] == [f["properties"]["area_m2"] for f in fc["features"]]

    row = json.loads((out / "predictions.json").read_text())["inputs"][0]
    assert row["water_pixels"] == water and row["crs"] == UTM and row["nodata_pixels"] == 40 * 60
    assert row["water_area"] == pytest.approx(water * 100, rel=0.01) and row["polygons"] == len(geoms)


def test_geopackage_min_area_and_simplify(tiny_run, tmp_path):
    import pyogrio

    rng = np.random.default_rng(0)
    bands = rng.integers(0, 255, (3, 150, 170), dtype=np.uint8)
    src = write_tif(tmp_path / "s.tif", bands)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, src, "--out", out, "--vectors", "gpkg", "--threshold", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    info = pyogrio.read_info(out / "s_water.gpkg")
    assert "32633" in info["crs"] and list(info["fields"]) == ["id", "area_m2"]
    _, _, _, fields = pyogrio.raw.read(out / "s_water.gpkg")
    areas = fields[1]
    assert len(areas) == info["features"] > 0
    r = unetseg("predict", tiny_run, src, "--out", out, "--vectors", "gpkg", "--threshold", "0.3", "-q",
                "--min-area", 500, "--simplify", 5, "--overwrite")
    assert r.returncode == 0, r.stderr
    _, _, _, fields2 = pyogrio.raw.read(out / "s_water.gpkg")
    assert len(fields2[1]) == (areas >= 500).sum() and (fields2[1] > 0).all()


# --- streaming polygons -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 40), h=st.integers(5, 90), w=st.integers(5, 90))
def test_band_by_band_polygons_equal_whole_image_polygons(seed, rows, h, w):
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 4 + 2, w // 4 + 2)) > 0.6
    water = np.kron(coarse, np.ones((4, 4), bool))[:h, :w] | (rng.random((h, w)) > 0.97)
    whole = [shapely_shape(g) for g, _ in shapes(water.view(np.uint8), mask=water, connectivity=4)]
    poly = Polygonizer(h, rows=rows)
    got = []
    for y0 in range(0, h, 7):
        got += poly.add(y0, water[y0:y0 + 7])
    got += poly.close()
    assert len(got) == len(whole)
    assert sum(p.area for p in got) == pytest.approx(water.sum())
    assert sorted(round(p.area) for p in got) == sorted(round(p.area) for p in whole)


def shapely_shape(g):
    from shapely.geometry import shape

    return shape(g)


# --- plain images -------------------------------------------------------------------------------------------


def test_plain_images_give_mask_overlay_probability_and_a_summary_row(tiny_run, tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (70, 130, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (300, 41, 3), dtype=np.uint8)).save(folder / "b.jpg")
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, folder, "--out", out, "--probabilities", "--threshold", "0.4")
    assert r.returncode == 0, r.stderr
    rows = {row["input"]: row for row in json.loads((out / "predictions.json").read_text())["inputs"]}
    for name, (h, w) in {"a": (70, 130), "b": (300, 41)}.items():
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(out / f"{name}_overlay.jpg").size == (w, h)
        assert Image.open(out / f"{name}_probability.png").size == (w, h)
        row = next(v for k, v in rows.items() if k.endswith(name + (".png" if name == "a" else ".jpg")))
        assert row["water_fraction"] == pytest.approx((mask == 255).mean(), abs=1e-6)
    assert (out / "predictions.csv").read_text().count("\n") == 3
    # outputs exist: a second run refuses to overwrite them, and --overwrite replaces them
    again = unetseg("predict", tiny_run, folder, "--out", out)
    assert again.returncode == 2 and "exists (use --overwrite" in again.stderr
    assert unetseg("predict", tiny_run, folder, "--out", out, "--overwrite").returncode == 0


def test_scale_fit_on_a_chip_at_training_size_equals_chip_prediction(tiny_run, tmp_path):
    rt = select_runtime("auto")
    model, _ = load_for_inference(resolve_checkpoint(tiny_run), rt)  # as evaluate loads it
    img = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "chip.png")
    expected = to_classes(predict_chips(model, img[None], rt))[0]
    r = unetseg("predict", tiny_run, tmp_path / "chip.png", "--out", tmp_path / "o", "--scale", "fit")
    assert r.returncode == 0, r.stderr
    assert (np.asarray(Image.open(tmp_path / "o" / "chip_mask.png")) == expected * 255).all()


def test_raw_values_map_to_the_model_range_by_table_and_by_formula():
    a = np.arange(0, 65536, 7, dtype=np.uint16)
    expected = np.clip(np.round((a.astype(np.float64) - 1000) * 255 / 4000), 0, 255)
    assert (to_model_range(a, 1000, 5000) == expected).all()
    f = np.array([np.nan, -0.1, 0.0, 0.2, 0.4, 1.0], np.float32)
    assert to_model_range(f, 0.0, 0.4).tolist() == [0, 0, 0, 128, 255, 255]
    assert parse_bands("4, 3,2") == [4, 3, 2] and parse_value_range("0,4000") == (0.0, 4000.0)
    for bad in ("4;3;2", "0,1,2"):
        with pytest.raises(ValueError, match="--bands"):
            parse_bands(bad)
    with pytest.raises(ValueError, match="HI must be greater"):
        parse_value_range("5,1")
    with pytest.raises(ValueError, match="--overlap"):
        PredictConfig(tile=64, overlap=40).check()


# --- bad inputs ---------------------------------------------------------------------------------------------


def test_tiff_without_crs_still_gives_a_mask_and_pixel_unit_polygons_with_a_warning(tiny_run, tmp_path):
    bands = np.random.default_rng(3).integers(0, 255, (3, 64, 80), dtype=np.uint8)
    src = write_tif(tmp_path / "plain.tif", bands, crs=None)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, src, "--out", out, "--threshold", "0.3")
    assert r.returncode == 0, r.stderr
    assert "plain.tif: no CRS" in r.stdout + r.stderr and "pixel units" in r.stdout + r.stderr
    assert "Warning" not in r.stderr  # said once, in predict's words, not as a library warning
    with rasterio.open(out / "plain_mask.tif") as m:
        assert m.crs is None and (m.width, m.height) == (80, 64)
        water = int((m.read(1) == 1).sum())
    fc = json.loads((out / "plain_water.geojson").read_text())
    assert "crs" not in fc
    assert sum(f["properties"]["area_px"] for f in fc["features"]) == pytest.approx(water)


@pytest.mark.parametrize("case,expected", [
    ("corrupt", "corrupt.tif: not a readable TIFF"),
    ("bands", "bands.tif: band 4 out of range (the file has 3 band(s))"),
    ("single", "single.tif: has 1 colour band(s) but the model needs red, green, blue"),
    ("nodata", "nodata.tif: every pixel is no-data"),
    ("empty", "empty: no images in this folder"),
    ("missing", "missing.png: no such file or folder"),
    ("text", "notes.txt: unsupported file type '.txt' (not a JPG or PNG, and GDAL cannot read it"),
])
def test_bad_inputs_are_one_clear_line_exit_2_and_write_nothing(tiny_run, tmp_path, case, expected):
    inputs, extra = tmp_path / "in", []
    inputs.mkdir()
    if case == "corrupt":
        target = inputs / "corrupt.tif"
        target.write_bytes(b"II*\x00" + os.urandom(2000))
    elif case == "bands":
        target = write_tif(inputs / "bands.tif", np.ones((3, 20, 20), np.uint8))
        extra = ["--bands", "4,3,2"]
    elif case == "single":
        target = write_tif(inputs / "single.tif", np.ones((1, 20, 20), np.uint16))  # not a grey image
    elif case == "nodata":
        target = write_tif(inputs / "nodata.tif", np.zeros((3, 40, 40), np.uint16), nodata=0)
    elif case == "empty":
        target = inputs / "empty"
        target.mkdir()
    elif case == "missing":
        target = inputs / "missing.png"
    else:
        target = inputs / "notes.txt"
        target.write_text("hello")
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, target, "--out", out, *extra)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors and expected in errors[0], r.stderr
    written = [p.name for p in out.rglob("*") if p.name not in ("predictions.csv", "predictions.json")] \
        if out.exists() else []
    assert written == []  # no mask, no polygons, no temporary files


def test_one_bad_file_among_good_ones_is_reported_and_the_good_ones_are_written(tiny_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_tif(inputs / "good.tif", np.random.default_rng(4).integers(0, 255, (3, 30, 30), dtype=np.uint8))
    (inputs / "bad.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, inputs, "--out", out, "-q")
    assert r.returncode == 2
    assert "bad.tif: not a readable TIFF" in r.stderr and "1 of 2 input(s) failed" in r.stderr
    assert (out / "good_mask.tif").exists() and not (out / "bad_mask.tif").exists()
    rows = json.loads((out / "predictions.json").read_text())["inputs"]
    assert [bool(row.get("error")) for row in rows] == [True, False]


def test_training_records_the_chip_scale_that_predict_uses(tiny_run, synth_data):
    from unetseg.data.files import image_shape

    info = json.loads((tiny_run / "run.json").read_text())
    train = set(json.loads((tiny_run / "split.json").read_text())["train"])
    shapes_ = [image_shape(p.image) for p in scan_folder(synth_data).pairs if p.stem in train]
    assert info["chip_scale"] == pytest.approx(np.median([32 / np.sqrt(h * w) for h, w in shapes_]), abs=1e-4)
    r = unetseg("predict", tiny_run, synth_data / "Images", "--out", tiny_run.parent / "p", "-q")
    assert r.returncode == 0, r.stderr
    assert f"scale auto: {info['chip_scale']:.3f} (the run's median training-chip resize factor" in r.stdout


def test_float_reflectance_with_nan_no_data_and_a_geographic_crs_get_geodesic_areas(tiny_run, tmp_path):
    from pyproj import Geod
    from rasterio.transform import from_origin as origin

    rng = np.random.default_rng(5)
    bands = rng.random((3, 60, 70)).astype(np.float32) * 0.4
    bands[:, :10, :] = np.nan  # float no-data
    res = 0.0001  # degrees: about 11 m at the equator
    src = write_tif(tmp_path / "geo.tif", bands, crs="EPSG:4326", transform=origin(10.0, 0.003, res, res))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, src, "--out", out, "--threshold", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    with rasterio.open(out / "geo_mask.tif") as m:
        mask = m.read(1)
    assert (mask[:10] == 255).all() and (mask[10:] != 255).all()
    # each water pixel's own geodesic area, summed, against the polygons' geodesic areas
    geod = Geod(ellps="WGS84")
    rows, _ = np.nonzero(mask == 1)
    assert len(rows) > 0
    lat = 0.003 - rows * res
    pixel = [abs(geod.polygon_area_perimeter([10, 10 + res, 10 + res, 10], [y, y, y - res, y - res])[0]) for y in lat]
    fc = json.loads((out / "geo_water.geojson").read_text())
    assert sum(f["properties"]["area_m2"] for f in fc["features"]) == pytest.approx(sum(pixel), rel=0.01)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), levels=st.sampled_from([2, 5, 256]), seed=st.integers(0, 99))
def test_grey_pngs_written_without_pillows_encoder_read_back_exactly(h, w, levels, seed):
    import io

    from unetseg.predict.outputs import png_bytes

    a = (np.random.default_rng(seed).integers(0, levels, (h, w)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    for picture in (a, Image.fromarray(a, "L")):
        back = Image.open(io.BytesIO(png_bytes(picture)))
        assert back.mode == "L" and np.array_equal(np.asarray(back), a)
    rgb = np.stack([a, a[::-1], a], axis=-1)  # other modes go through Pillow
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(Image.fromarray(rgb))))), rgb)


def test_binary_entropy_is_one_bit_for_a_coin_toss_and_zero_when_sure():
    import torch

    from unetseg.ood import binary_entropy_bits

    h = binary_entropy_bits(torch.tensor([0.0, 1.0, 0.5, 0.1, 0.9]))
    assert torch.allclose(h, torch.tensor([0.0, 0.0, 1.0, 0.4690, 0.4690]), atol=1e-4)


def test_the_overlay_tints_water_greys_no_data_and_leaves_the_rest_and_the_input_alone():
    from unetseg.predict.outputs import WATER_RGB, overlay_pixels

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    before = rgb.copy()
    water, valid = rng.random((50, 70)) < 0.3, rng.random((50, 70)) < 0.9
    out = overlay_pixels(rgb, water, valid).astype(int)
    assert np.array_equal(rgb, before)  # painted on a copy
    land = ~water & valid
    assert np.array_equal(out[land], rgb[land])
    half = lambda colour, where: rgb[where] * 0.5 + np.asarray(colour) * 0.5  # noqa: E731 - half-way, to the unit
    assert np.abs(out[water & valid] - half(WATER_RGB, water & valid)).max() <= 0.5
    assert np.abs(out[~valid] - half((128, 128, 128), ~valid)).max() <= 0.5
    grey = overlay_pixels(rgb[..., :1], water, np.ones_like(valid))  # a grey image: tinted as RGB
    assert grey.shape == (50, 70, 3) and np.array_equal(grey[~water], np.repeat(rgb[..., :1], 3, axis=-1)[~water])


def test_subfolders_are_searched_with_recursive_and_said_so_without(tiny_run, tmp_path):
    """A folder's subfolders: left alone by default with a note (or the hint, when only they have images);
    --recursive takes their images in path order, outputs side by side in OUT; hidden folders are skipped."""
    rng = np.random.default_rng(3)
    tree = tmp_path / "tree"
    for rel in ("top.png", "a/one.png", "a/b/two.png", ".cache/hidden.png"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tree / rel)
    r = unetseg("predict", tiny_run, tree, "--out", tmp_path / "flat", "-q")
    assert r.returncode == 0, r.stderr
    assert f"note: {tree}: images in its subfolders are not searched (--recursive searches them)" in r.stdout
    assert sorted(p.name for p in (tmp_path / "flat").glob("*_mask.png")) == ["top_mask.png"]
    r = unetseg("predict", tiny_run, tree, "--out", tmp_path / "deep", "--recursive", "-q")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "deep" / "predictions.json").read_text())["inputs"]
    assert [Path(row["input"]).relative_to(tree).as_posix() for row in rows] == ["a/b/two.png", "a/one.png",
                                                                                 "top.png"]  # as `sort` orders paths
    assert "not searched" not in r.stdout
    (tree / "top.png").unlink()
    r = unetseg("predict", tiny_run, tree, "--out", tmp_path / "none")
    assert r.returncode == 2 and "its subfolders have some: --recursive searches them" in r.stderr
