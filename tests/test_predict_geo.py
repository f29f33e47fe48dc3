"""predict on ordinary real-world rasters: no water, true areas in every CRS, no-data, bands by meaning,
transparency, any GDAL raster, outputs GIS tools open, reruns after a failure, and --scale auto by resolution.

Every raster is made here (no network). Areas are checked by an independent route: pyproj's geodesic area of
each pixel, its edges densified so they follow the parallels and the projection's grid lines.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pyproj import Geod, Transformer
from rasterio.transform import from_origin

from helpers import unetseg
from test_predict import UTM, mosaic_of_test_chips, write_tif

GEOD = Geod(ellps="WGS84")


def noise(shape, seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=dtype)


def summary(out):
    return json.loads((out / "predictions.json").read_text())["inputs"]


def read_mask(path):
    with rasterio.open(path) as m:
        return m.read(1)


def pixel_ground_area(transform, crs, row, col, n=16) -> float:
    """The geodesic area of one pixel, its outline sampled n times per edge (independent of unetseg)."""
    t = np.linspace(0, 1, n, endpoint=False)
    x = np.r_[col + t, np.full(n, col + 1.0), col + 1 - t, np.full(n, float(col))]
    y = np.r_[np.full(n, float(row)), row + t, np.full(n, row + 1.0), row + 1 - t]
    a, b, c, d, e, f = tuple(transform)[:6]
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(a * x + b * y + c, d * x + e * y + f)
    return abs(GEOD.polygon_area_perimeter(lon, lat)[0])


def splitting_threshold(run, src, tmp_path, *args) -> str:
    """A threshold that leaves roughly half of the raster water, from a first pass's probabilities (the tiny
    test model's probabilities sit in a narrow band that no fixed threshold splits)."""
    out = tmp_path / "probe"
    r = unetseg("predict", run, src, "--out", out, "--probabilities", "--vectors", "none", *args, "-q")
    assert r.returncode == 0, r.stderr
    with rasterio.open(out / f"{src.stem}_mask.tif") as m:
        pct = m.read(2)
    shutil.rmtree(out)
    return f"{(np.median(pct[pct != 255]) + 0.5) / 100:.4f}"


# --- 1. no water is a result ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vectors", ["geojson", "gpkg"])
def test_a_scene_without_water_gives_an_empty_collection_a_zero_mask_and_a_zero_row(tiny_run, tmp_path, vectors):
    src = write_tif(tmp_path / "desert.tif", noise((3, 80, 90)))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, src, "--out", out, "--threshold", "0.9999", "--vectors", vectors, "-q")
    assert r.returncode == 0, r.stderr
    assert (read_mask(out / "desert_mask.tif") == 0).all()
    row = summary(out)[0]
    assert row["water_pixels"] == 0 and row["water_area"] == 0 and row["polygons"] == 0 and not row.get("error")
    if vectors == "geojson":
        fc = json.loads((out / "desert_water.geojson").read_text())
        assert fc["type"] == "FeatureCollection" and fc["features"] == []
    else:
        import pyogrio

        assert pyogrio.read_info(out / "desert_water.gpkg")["features"] == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary left


# --- 2. true ground areas in every CRS -------------------------------------------------------------------------


@pytest.mark.parametrize("crs,transform,shape", [
    ("EPSG:4326", from_origin(-180, 90, 1, 1), (180, 360)),  # the whole globe, 1 degree pixels
    ("EPSG:3857", from_origin(-400000, 4900000, 2000, 2000), (120, 150)),  # Web Mercator around 38-40 N
    (UTM, from_origin(400000, 5200000, 30, 30), (90, 110)),  # UTM: planar areas, scale factor aside
])
@pytest.mark.slow
def test_areas_are_true_ground_areas_in_every_crs_for_polygons_summary_and_serve(tiny_run, tmp_path, crs, transform,
                                                                                 shape):
    src = write_tif(tmp_path / "s.tif", noise((3, *shape), seed=1), crs=crs, transform=transform)
    out = tmp_path / "out"
    threshold = splitting_threshold(tiny_run, src, tmp_path, "--scale", "1")
    r = unetseg("predict", tiny_run, src, "--out", out, "--threshold", threshold, "--scale", "1", "-q")
    assert r.returncode == 0, r.stderr
    mask = read_mask(out / "s_mask.tif")
    water = mask == 1
    assert 0.05 < water.mean() < 0.95
    # independent: each water pixel's geodesic area (one per row in a geographic CRS, every pixel otherwise)
    rows, cols = np.nonzero(water)
    if crs == "EPSG:4326":
        per_row = np.array([pixel_ground_area(transform, crs, y, 0) for y in range(shape[0])])
        expected = float(per_row[rows].sum())
    else:
        expected = sum(pixel_ground_area(transform, crs, y, x, n=2) for y, x in zip(rows, cols))
    row = summary(out)[0]
    fc = json.loads((out / "s_water.geojson").read_text())
    polygons = sum(f["properties"]["area_m2"] for f in fc["features"])
    assert row["area_unit"] == "m2"
    assert row["water_area"] == pytest.approx(expected, rel=2e-4)
    assert polygons == pytest.approx(expected, rel=2e-4)
    # the same without polygons, and through serve
    r = unetseg("predict", tiny_run, src, "--out", tmp_path / "nv", "--threshold", threshold, "--scale", "1",
                "--vectors", "none", "-q")
    assert r.returncode == 0, r.stderr
    assert summary(tmp_path / "nv")[0]["water_area"] == row["water_area"]
    from fastapi.testclient import TestClient

    from unetseg.config import PredictConfig
    from unetseg.runtime import select_runtime
    from unetseg.serve.app import create_app

    client = TestClient(create_app(tiny_run, select_runtime("auto"), PredictConfig(scale=1.0), log=lambda m: None))
    reply = client.post("/v1/segment", params={"threshold": float(threshold)},
                        files={"image": ("s.tif", src.read_bytes(), "image/tiff")}).json()
    assert reply["water_pixels"] == int(water.sum())
    assert reply["water_area_m2"] == pytest.approx(row["water_area"], rel=1e-9)


def test_a_raster_without_crs_reports_pixels_whatever_its_transform(tiny_run, tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=70, height=50, count=3, dtype="uint8",
                       transform=from_origin(0, 0, 30, 30)) as ds:  # a transform but no CRS
        ds.write(noise((3, 50, 70), seed=2))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, path, "--out", out, "--threshold", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    row = summary(out)[0]
    fc = json.loads((out / "plain_water.geojson").read_text())
    assert row["area_unit"] == "px" and row["water_area"] == row["water_pixels"] > 0
    assert sum(f["properties"]["area_px"] for f in fc["features"]) == row["water_pixels"]


# --- 3. no-data does not change the valid pixels ----------------------------------------------------------------


@pytest.mark.realdata
def test_a_no_data_margin_leaves_the_valid_pixels_mask_unchanged(real_run, real_data, tmp_path):
    mosaic, _, _ = mosaic_of_test_chips(real_run, real_data, 6)
    bands = np.moveaxis(mosaic, -1, 0).astype(np.uint16) * 4000 // 255 + 1
    m = 300
    padded = np.zeros((3, bands.shape[1] + 2 * m, bands.shape[2] + 2 * m), np.uint16)
    padded[:, m:-m, m:-m] = bands
    t = from_origin(600000, 5200000, 10, 10)
    write_tif(tmp_path / "plain.tif", bands, transform=t, nodata=0)
    write_tif(tmp_path / "margin.tif", padded, transform=from_origin(600000 - m * 10, 5200000 + m * 10, 10, 10),
              nodata=0)
    out = tmp_path / "out"
    r = unetseg("predict", real_run, tmp_path / "plain.tif", tmp_path / "margin.tif", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    plain, margin = read_mask(out / "plain_mask.tif"), read_mask(out / "margin_mask.tif")
    assert (margin[:m] == 255).all() and (margin[:, :m] == 255).all()
    inner = margin[m:-m, m:-m]
    assert 0.02 < (plain == 1).mean() < 0.98  # water and land both present: the check means something
    agree = (inner == plain).mean()
    near = np.zeros(plain.shape, bool)
    near[:10], near[-10:], near[:, :10], near[:, -10:] = True, True, True, True
    print(f"valid pixels equal: {agree:.4f}; within 10 px of the margin: {(inner == plain)[near].mean():.4f}")
    assert agree >= 0.995


# --- 4, 5. bands by meaning, alpha, palettes, transparency ----------------------------------------------------


def test_rgba_geotiff_uses_rgb_and_alpha_as_its_mask_and_refuses_alpha_as_a_colour(tiny_run, tmp_path):
    rgba = np.concatenate([noise((3, 60, 80), seed=3), np.full((1, 60, 80), 255, np.uint8)])
    rgba[3, :, :20] = 0  # transparent strip
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=4, dtype="uint8", crs=UTM,
                       transform=from_origin(400000, 5200000, 10, 10), photometric="RGB", alpha="YES") as ds:
        ds.write(rgba)
    write_tif(tmp_path / "rgb.tif", rgba[:3])
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, path, tmp_path / "rgb.tif", "--out", out, "--threshold", "0.3")
    assert r.returncode == 0, r.stderr
    assert "rgba.tif: bands 1,2,3 of 4 by their names" in r.stdout
    a, b = read_mask(out / "rgba_mask.tif"), read_mask(out / "rgb_mask.tif")
    assert (a[:, :20] == 255).all() and summary(out)[0]["nodata_pixels"] == 60 * 20
    bad = unetseg("predict", tiny_run, path, "--out", tmp_path / "o2", "--bands", "4,3,2")
    assert bad.returncode == 2 and "band 4 is the alpha (transparency) band" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert ((a == b) | (a == 255)).mean() > 0.9  # the same colours where both are valid (context differs at the strip)


def test_sentinel2_bands_are_found_by_their_names(tiny_run, tmp_path):
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    data = noise((13, 50, 60), seed=4, dtype=np.uint16) * 15
    path = write_tif(tmp_path / "s2.tif", data)
    with rasterio.open(path, "r+") as ds:
        for i, n in enumerate(names, 1):
            ds.set_band_description(i, n)
    unnamed = write_tif(tmp_path / "unnamed.tif", data)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, path, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "bands 4,3,2 of 13 by their names (B4 as red, B3 as green, B2 as blue)" in r.stdout
    r2 = unetseg("predict", tiny_run, path, "--out", tmp_path / "explicit", "--bands", "4,3,2", "-q")
    assert r2.returncode == 0, r2.stderr
    assert (read_mask(out / "s2_mask.tif") == read_mask(tmp_path / "explicit" / "s2_mask.tif")).all()
    r3 = unetseg("predict", tiny_run, unnamed, "--out", tmp_path / "o3")
    assert r3.returncode == 2 and "choose them with --bands (e.g. --bands 1,2,3)" in r3.stderr


def test_paletted_geotiff_is_expanded_to_its_colours(tiny_run, tmp_path):
    rng = np.random.default_rng(5)
    colours = rng.integers(0, 255, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    pal = tmp_path / "pal.tif"
    with rasterio.open(pal, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8", crs=UTM,
                       transform=from_origin(400000, 5200000, 10, 10), photometric="palette") as ds:
        ds.write(index, 1)
        ds.write_colormap(1, {i: (*map(int, c), 255) for i, c in enumerate(colours)})
    rgb = write_tif(tmp_path / "rgb.tif", np.moveaxis(colours[index], -1, 0))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, pal, rgb, "--out", out, "--threshold", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    assert (read_mask(out / "pal_mask.tif") == read_mask(out / "rgb_mask.tif")).all()


@pytest.mark.parametrize("kind", ["palette", "colour-key"])
def test_png_transparency_in_a_palette_or_colour_key_is_no_data_in_predict_and_serve(tiny_run, tmp_path, kind):
    rgb = noise((40, 60, 3), seed=6)
    rgb[:, :15] = (1, 2, 3)  # the transparent colour
    path = tmp_path / "t.png"
    if kind == "palette":
        img = Image.fromarray(rgb).quantize(64)
        key = img.getpixel((0, 0))
        img.info["transparency"] = key
        img.save(path, transparency=key)
        transparent = np.asarray(img) == key
    else:
        Image.fromarray(rgb).save(path, transparency=(1, 2, 3))
        transparent = (rgb == (1, 2, 3)).all(-1)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, path, "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    row = summary(out)[0]
    assert row["nodata_pixels"] == int(transparent.sum()) >= 40 * 15
    from fastapi.testclient import TestClient

    from unetseg.runtime import select_runtime
    from unetseg.serve.app import create_app

    client = TestClient(create_app(tiny_run, select_runtime("auto"), log=lambda m: None))
    reply = client.post("/v1/segment", files={"image": ("t.png", path.read_bytes(), "image/png")}).json()
    assert reply["valid_pixels"] == row["valid_pixels"] == 40 * 60 - int(transparent.sum())


# --- 6. any raster GDAL reads --------------------------------------------------------------------------------


@pytest.mark.slow
def test_vrt_jpeg2000_and_the_sentinel2_recipe_with_rio_stack(tiny_run, tmp_path):
    bands = noise((3, 64, 72), seed=7)
    tif = write_tif(tmp_path / "base.tif", bands)
    vrt = tmp_path / "view.vrt"
    vrt.write_text(f"""<VRTDataset rasterXSize="72" rasterYSize="64">
  <SRS>{UTM}</SRS><GeoTransform>400000, 10, 0, 5200000, 0, -10</GeoTransform>
""" + "".join(f"""  <VRTRasterBand dataType="Byte" band="{i}"><SimpleSource>
    <SourceFilename relativeToVRT="1">base.tif</SourceFilename><SourceBand>{i}</SourceBand>
  </SimpleSource></VRTRasterBand>
""" for i in (1, 2, 3)) + "</VRTDataset>\n")
    # Sentinel-2 ships one JPEG 2000 file per band: B04, B03, B02 -> `rio stack` (installed with rasterio)
    singles = []
    for name, i in (("B04", 0), ("B03", 1), ("B02", 2)):
        p = tmp_path / f"T33_{name}.jp2"
        with rasterio.open(p, "w", driver="JP2OpenJPEG", width=72, height=64, count=1, dtype="uint8", crs=UTM,
                           transform=from_origin(400000, 5200000, 10, 10), QUALITY=100, REVERSIBLE="YES") as ds:
            ds.write(bands[i], 1)
        singles.append(p)
    import subprocess
    import sys
    from pathlib import Path

    rio = Path(sys.executable).parent / "rio"
    stacked = tmp_path / "stack.tif"
    subprocess.run([rio, "stack", *singles, stacked], check=True)
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, tif, vrt, singles[0], stacked, "--out", out, "--threshold", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    base = read_mask(out / "base_mask.tif")
    assert (read_mask(out / "view_mask.tif") == base).all()
    assert (read_mask(out / "stack_mask.tif") == base).all()  # lossless JPEG 2000: the same pixels
    assert read_mask(out / "T33_B04_mask.tif").shape == base.shape  # one grey band: as a grey image


# --- 7. outputs people can open ------------------------------------------------------------------------------


def test_mask_is_a_valid_cog_and_the_summary_lists_outputs_as_an_array(tiny_run, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    src = write_tif(tmp_path / "big.tif", noise((3, 1100, 1300), seed=8))
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, src, "--out", out, "--threshold", "0.3", "--probabilities", "-q")
    assert r.returncode == 0, r.stderr
    valid, errors, warnings = cog_validate(str(out / "big_mask.tif"))
    assert valid and not errors, (errors, warnings)
    with rasterio.open(out / "big_mask.tif") as m, rasterio.open(src) as s:
        assert (m.crs, m.transform, m.count, m.nodata) == (s.crs, s.transform, 2, 255)
        assert m.overviews(1) and m.block_shapes[0] == (512, 512) and m.tags()["unetseg_engine"] == "torch"
        assert m.descriptions[0].startswith("class")
    row = summary(out)[0]
    assert row["outputs"] == [str(out / "big_mask.tif"), str(out / "big_water.geojson")]
    # the listed outputs and the summary, nothing else (the tiled GeoTIFF behind the COG is a temporary)
    assert sorted(p.name for p in out.iterdir()) == ["big_mask.tif", "big_water.geojson", "predictions.csv",
                                                     "predictions.json"]
    csv_row = (out / "predictions.csv").read_text().splitlines()[1]
    assert f"{out / 'big_mask.tif'}; {out / 'big_water.geojson'}" in csv_row


# --- 8, 9. reruns and bad options ----------------------------------------------------------------------------


def test_a_failed_input_does_not_block_the_corrected_rerun_and_the_summary_keeps_both(tiny_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_tif(inputs / "good.tif", noise((3, 30, 30), seed=9))
    (inputs / "later.tif").write_bytes(b"II*\x00broken")
    out = tmp_path / "out"
    r = unetseg("predict", tiny_run, inputs / "good.tif", inputs / "later.tif", "--out", out, "-q")
    assert r.returncode == 2
    (inputs / "later.tif").unlink()  # the user fixes the file
    write_tif(inputs / "later.tif", noise((3, 30, 30), seed=10))
    r = unetseg("predict", tiny_run, inputs / "later.tif", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["input"]: row for row in summary(out)}
    assert set(rows) == {str(inputs / "good.tif"), str(inputs / "later.tif")}
    assert not any(row.get("error") for row in rows.values())
    assert (out / "later_mask.tif").exists()
    # a finished input is not predicted again without --overwrite
    again = unetseg("predict", tiny_run, inputs / "later.tif", "--out", out)
    assert again.returncode == 2 and "exists (use --overwrite" in again.stderr


def test_skip_done_goes_on_after_an_interruption_with_the_same_masks(tiny_run, tmp_path, monkeypatch):
    """Ctrl-C writes the summary of the inputs finished so far; `--skip-done` then leaves those out, replaces the
    outputs of an input that was begun but not finished, and ends with the masks of one uninterrupted run.
    Other settings than the earlier predict's are refused (their outputs would be mixed in one folder)."""
    from unetseg.config import PredictConfig
    from unetseg.predict import pipeline
    from unetseg.runtime import select_runtime

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(6):
        Image.fromarray(noise((40 + 4 * i, 36, 3), seed=20 + i)).save(inputs / f"img{i}.png")
    ref = tmp_path / "ref"
    assert unetseg("predict", tiny_run, inputs, "--out", ref, "-q").returncode == 0
    out, lines = tmp_path / "out", []
    many = pipeline.Predictor.many

    def interrupted_many(self, files, folder, on_row):  # Ctrl-C while the fourth input is being written
        many(self, files[:3], folder, on_row)
        (folder / "img3_mask.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.Predictor, "many", interrupted_many)
    with pytest.raises(KeyboardInterrupt):
        pipeline.predict(tiny_run, [inputs], out, PredictConfig(), select_runtime("fp32"), progress=False,
                         log=lines.append)
    monkeypatch.undo()
    assert [r["input"] for r in summary(out)] == [str(inputs / f"img{i}.png") for i in range(3)]
    assert "interrupted after 3 of 6 input(s)" in lines[-1] and "--skip-done" in lines[-1]
    again = unetseg("predict", tiny_run, inputs, "--out", out)  # without --skip-done: nothing is replaced
    assert again.returncode == 2 and "img0_mask.png: exists (use --overwrite" in again.stderr
    other = unetseg("predict", tiny_run, inputs, "--out", out, "--skip-done", "--threshold", "0.7")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "made with other settings (threshold 0.5 there, 0.7 now)" in other.stderr
    r = unetseg("predict", tiny_run, inputs, "--out", out, "--skip-done", "--batch-size", "3")  # speed only
    assert r.returncode == 0, r.stderr
    assert "3 of 6 input(s) already segmented" in r.stdout + r.stderr
    assert sorted(row["input"] for row in summary(out)) == sorted(row["input"] for row in summary(ref))
    for i in range(6):
        assert (out / f"img{i}_mask.png").read_bytes() == (ref / f"img{i}_mask.png").read_bytes(), i
    r = unetseg("predict", tiny_run, inputs, "--out", out, "--skip-done")
    assert r.returncode == 0 and "nothing left to segment" in r.stdout + r.stderr
    (out / "img4_mask.png").unlink()  # a finished input's mask deleted since: it is segmented again
    r = unetseg("predict", tiny_run, inputs, "--out", out, "--skip-done")
    assert r.returncode == 0, r.stderr
    assert "5 of 6 input(s) already segmented" in r.stdout + r.stderr
    assert (out / "img4_mask.png").read_bytes() == (ref / "img4_mask.png").read_bytes()
    assert sorted(row["input"] for row in summary(out)) == sorted(row["input"] for row in summary(ref))
    foreign = tmp_path / "foreign"  # a predictions.csv that predict did not write, and no predictions.json
    foreign.mkdir()
    (foreign / "predictions.csv").write_text("mine\n")
    r = unetseg("predict", tiny_run, inputs, "--out", foreign, "--skip-done")
    assert r.returncode == 2 and "predictions.csv: exists (use --overwrite" in r.stderr
    assert (foreign / "predictions.csv").read_text() == "mine\n"


@pytest.mark.parametrize("args,expected", [
    (["--tta", "bogus"], "--tta 'bogus': choose one of none, flips, d4"),
    (["--blend", "gauss"], "--blend 'gauss': choose one of cosine, linear, average, none"),
    (["--device", "gpu"], "--device 'gpu': choose auto, cpu, cuda or cuda:N"),
    (["--vector-crs", "utm"], "--vector-crs 'utm': choose auto, wgs84 or raster"),
    (["--nodata", "nan"], "--nodata nan: give a finite number (NaN and infinities are no-data in float rasters "
                          "already)"),
])
def test_bad_option_values_are_one_line_before_any_file_is_looked_at(tiny_run, tmp_path, args, expected):
    r = unetseg("predict", tiny_run, tmp_path / "missing.tif", "--out", tmp_path / "out", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {expected}"]


# --- 10. --scale auto from ground resolutions ----------------------------------------------------------------


def test_scale_auto_matches_each_raster_resolution_to_the_models(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / "run.json").read_text())
    info["model_gsd"] = 20.0
    (run / "run.json").write_text(json.dumps(info))
    write_tif(tmp_path / "s2.tif", noise((3, 60, 60), seed=11), transform=from_origin(400000, 5200000, 10, 10))
    write_tif(tmp_path / "landsat.tif", noise((3, 60, 60), seed=12), transform=from_origin(400000, 5200000, 300, 300))
    Image.fromarray(noise((40, 40, 3), seed=13)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    r = unetseg("predict", run, tmp_path / "s2.tif", tmp_path / "landsat.tif", tmp_path / "photo.png",
                "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    rows = {row["input"].rsplit("/", 1)[1]: row for row in summary(out)}
    for name, metres in (("s2.tif", 10), ("landsat.tif", 300)):  # true ground size: UTM's scale factor is in it
        assert rows[name]["ground_resolution_m"] == pytest.approx(metres, rel=1e-3)
        assert rows[name]["scale"] == pytest.approx(rows[name]["ground_resolution_m"] / 20, abs=1e-4)
    how = rows["landsat.tif"]["scale_from"]
    assert how.startswith("ground: 300") and "m per pixel / the model's 20 m" in how
    assert rows["photo.png"]["scale"] == info["chip_scale"]
    assert "training-chip factor" in rows["photo.png"]["scale_from"]


@pytest.mark.slow
def test_training_with_a_ground_resolution_records_the_model_pixel_size(synth_data, tmp_path):
    from unetseg.config import ModelConfig, Recipe
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    recipe = Recipe(name="t", model=ModelConfig(name="unet-bn", base_width=4, depth=2, batch_norm=True), epochs=1,
                    batch_size=16, image_size=32, early_stopping_patience=0)
    run_train(synth_data, tmp_path / "run", recipe, select_runtime("auto"), progress=False, log=lambda m: None,
              limit=40, gsd=10)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["model_gsd"] == pytest.approx(10 / info["chip_scale"], rel=1e-3)


# --- the pure pieces -----------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), h=st.integers(1, 30), w=st.integers(1, 30))
def test_no_data_is_filled_from_the_nearest_valid_pixel_and_valid_pixels_stay(seed, h, w):
    from unetseg.predict.tiling import fill_from_nearest

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    valid = rng.random((h, w)) > 0.5
    filled = fill_from_nearest(pixels, valid)
    assert (filled[valid] == pixels[valid]).all()
    if valid.any():
        vy, vx = np.nonzero(valid)
        for y, x in zip(*np.nonzero(~valid)):
            d = (vy - y) ** 2 + (vx - x) ** 2
            nearest = {tuple(pixels[a, b]) for a, b in zip(vy[d == d.min()], vx[d == d.min()])}
            assert tuple(filled[y, x]) in nearest


def test_valid_window_is_the_bounding_box_of_the_valid_pixels(tmp_path):
    from unetseg.data.sources import RasterSource

    data = np.zeros((3, 300, 200), np.uint16)
    data[:, 37:251, 11:150] = 500
    data[0, 37, 11] = 0  # one band's no-data alone does not make a pixel no-data (GDAL's rule)
    src = RasterSource(write_tif(tmp_path / "w.tif", data, nodata=0), 3)
    assert src.valid_window() == (37, 11, 214, 139)
    src.close()
    empty = RasterSource(write_tif(tmp_path / "e.tif", np.zeros((3, 20, 20), np.uint16), nodata=0), 3)
    assert empty.valid_window() is None
    empty.close()


def test_ellipsoid_areas_of_known_shapes():
    from unetseg.predict.areas import lonlat_polygon_areas, zone_area

    # a sphere's zone: R^2 sin(lat) per radian (flattening 0)
    assert zone_area(np.array([30.0]), a=6371000.0, f=1e-12)[0] == pytest.approx(6371000.0 ** 2 * 0.5, rel=1e-9)
    # the whole ellipsoid: 510,065,622 km2; a hole is subtracted; orientation does not matter
    globe = shapely.Polygon([(-180, -90), (180, -90), (180, 90), (-180, 90)])
    band = shapely.segmentize(globe, 10)
    ring = shapely.Polygon(shapely.segmentize(shapely.box(-10, -10, 10, 10), 1).exterior,
                           [shapely.box(-5, -5, 5, 5).exterior.coords[::-1]])
    got = lonlat_polygon_areas(np.array([band, ring, shapely.box(-5, -5, 5, 5).reverse()], dtype=object))
    assert got[0] / 1e6 == pytest.approx(510065621.7, rel=1e-8)
    assert got[1] == pytest.approx(lonlat_polygon_areas(np.array([shapely.box(-10, -10, 10, 10)]))[0] - got[2],
                                   rel=1e-12)


def reprojected_with_fill():
    """(bands, fill, transform): a reflectance-like raster (never 0) reprojected from UTM to lon/lat as gdalwarp
    does it, with 0 in every band outside the data and no no-data declared."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    src = (noise((3, 120, 120), 3, np.uint16) * 8 + 200).astype(np.uint16)
    src_transform = from_origin(400000, 5200000, 10, 10)
    transform, w, h = calculate_default_transform(UTM, "EPSG:4326", 120, 120, 400000, 5200000 - 1200, 401200,
                                                  5200000)  # left, bottom, right, top
    dst = np.zeros((3, h, w), np.uint16)
    for b in range(3):
        reproject(src[b], dst[b], src_transform=src_transform, src_crs=UTM, dst_transform=transform,
                  dst_crs="EPSG:4326", resampling=Resampling.nearest)
    fill = ~dst.any(axis=0)
    assert 100 < fill.sum() < 0.5 * fill.size  # the rotated grid leaves its corners empty
    return dst, fill, transform


def test_a_reprojected_reflectance_rasters_zero_fill_is_no_data_but_a_black_picture_pixel_is_not(tiny_run, tmp_path):
    """gdalwarp and rasterio.warp fill the corners outside a reprojected raster with 0 and declare no no-data
    value: above 8 bits such pixels are no-data (out of the counts and the mask); in an 8-bit picture black is
    data."""
    dst, fill, transform = reprojected_with_fill()
    rows = []
    for name, data in (("reflectance", dst), ("picture", (dst // 8).astype(np.uint8))):
        tif = write_tif(tmp_path / f"{name}.tif", data, crs="EPSG:4326", transform=transform)
        out = tmp_path / name
        r = unetseg("predict", tiny_run, tif, "--out", out, "--vectors", "none", "-q")
        assert r.returncode == 0, r.stderr
        rows.append(summary(out)[0])
    assert rows[0]["nodata_pixels"] == int(fill.sum()) and rows[0]["valid_pixels"] == int((~fill).sum())
    assert rows[1]["nodata_pixels"] == 0 and rows[1]["valid_pixels"] == fill.size
    assert (read_mask(tmp_path / "reflectance" / "reflectance_mask.tif")[fill] == 255).all()


def test_nodata_marks_an_8bit_scenes_undeclared_black_fill_and_predict_says_when_to_give_it(tiny_run, tmp_path):
    """The black fill around an 8-bit scene (a Sentinel-2 TCI at a swath edge, an 8-bit reprojection) is read as
    data, since black can be; predict notices black corners and suggests --nodata 0, which takes the fill out of
    the mask, the counts and the water index beside the model. A value the file cannot hold is one line."""
    dst, fill, transform = reprojected_with_fill()
    tif = write_tif(tmp_path / "tci.tif", (dst // 8).astype(np.uint8), crs="EPSG:4326", transform=transform)
    r = unetseg("predict", tiny_run, tif, "--out", tmp_path / "plain", "--vectors", "none")
    assert r.returncode == 0, r.stderr
    assert "tci.tif: 4 of 4 corners 0 in every band, and no no-data declared" in r.stdout and "--nodata 0" in r.stdout
    assert summary(tmp_path / "plain")[0]["nodata_pixels"] == 0
    r = unetseg("predict", tiny_run, tif, "--out", tmp_path / "nd", "--vectors", "none", "--nodata", "0")
    assert r.returncode == 0 and "corners" not in r.stdout, r.stderr
    row = summary(tmp_path / "nd")[0]
    assert row["nodata_pixels"] == int(fill.sum()) and row["valid_pixels"] == int((~fill).sum())
    mask = read_mask(tmp_path / "nd" / "tci_mask.tif")
    assert (mask[fill] == 255).all() and (mask[~fill] != 255).all()
    r = unetseg("predict", tiny_run, tif, "--out", tmp_path / "bad", "--nodata", "300", "-q")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: {tif}: --nodata 300 cannot occur in its uint8 values (0..255)" in r.stderr.splitlines()
    assert not list((tmp_path / "bad").glob("tci*"))


def test_nodata_applies_to_pictures_arrays_and_a_water_index_alike(tiny_run, tmp_path):
    from unetseg import load
    from unetseg.data.sources import ArraySource, open_source

    img = (noise((40, 50, 3), 7) // 2 + 1).astype(np.uint8)  # never 0
    img[:, :12] = 0
    Image.fromarray(img).save(tmp_path / "edge.png")
    model = load(tiny_run, precision="fp32", nodata=0)
    for image in (img, tmp_path / "edge.png"):
        _, classes = model.predict(image)
        assert (classes[:, :12] == 255).all() and (classes[:, 12:] != 255).all()
    # a percentile stretch leaves the fill out, as a raster's does
    assert ArraySource(img, 3, "percentile").lo == 0 and ArraySource(img, 3, "percentile", nodata=0).lo >= 1
    stack = np.concatenate([np.moveaxis(img, -1, 0), np.full((1, 40, 50), 9, np.uint8)])  # a 4th band, never 0
    stack[:, :, :12] = 0
    tif = write_tif(tmp_path / "gn.tif", stack)
    with rasterio.open(tif, "r+") as ds:
        for i, n in enumerate(["B04", "B03", "B02", "B08"], 1):
            ds.set_band_description(i, n)
    index = open_source(tif, 2, None, "auto", ("green", "nir"), nodata=0)
    assert (~index.read(0, 0, 40, 50)[1][:, :12]).all() and index.read(0, 0, 40, 50)[1][:, 12:].all()
    index.close()


def test_percentile_stretch_leaves_out_the_zero_fill_of_a_reflectance_raster(tmp_path):
    from unetseg.data.sources import RasterSource

    data = np.zeros((3, 100, 100), np.uint16)
    data[:, :, 40:] = np.linspace(1000, 2000, 60, dtype=np.uint16)  # 40% of the raster is fill
    src = RasterSource(write_tif(tmp_path / "r.tif", data), 3, value_range="percentile")
    assert src.lo >= 1000 and src.hi <= 2000
    assert src.valid_window() == (0, 40, 100, 60)
    src.close()
    declared = RasterSource(write_tif(tmp_path / "d.tif", data, nodata=65535), 3, value_range="percentile")
    assert declared.lo == 0 and declared.valid_window() == (0, 0, 100, 100)  # its no-data is 65535: 0 is data
    declared.close()


def test_reflectance_stored_with_a_declared_offset_or_as_floats_gives_the_masks_of_the_plain_integers(tiny_run, tmp_path):
    """Sentinel-2 L2A COGs from baseline 04.00 on store reflectance x 10000 + 1000 and say so in GDAL's metadata
    (scale 0.0001, offset -0.1); exports often store reflectance x 10000 as floats, or reflectance 0..1. Each is
    read as what it is: the masks of the same reflectance stored as plain integers, for the model and the index."""
    refl = (noise((4, 90, 110), 5, np.uint16) * 12 + 100).astype(np.uint16)  # reflectance x 10000
    variants = {"plain": (refl, None), "offset": (refl + 1000, (0.0001, -0.1)),
                "float10000": (refl.astype(np.float32), None), "float": (refl.astype(np.float32) / 10000, None)}
    paths = {}
    for name, (data, scaling) in variants.items():
        paths[name] = write_tif(tmp_path / f"{name}.tif", data)
        with rasterio.open(paths[name], "r+") as ds:
            ds.descriptions = ("B04", "B03", "B02", "B08")
            if scaling:
                ds.scales, ds.offsets = (scaling[0],) * 4, (scaling[1],) * 4
    for method in ("unet", "ndwi"):
        args = ["--method", "unet+ndwi"] if method == "ndwi" else []
        out = tmp_path / method
        r = unetseg("predict", tiny_run, *paths.values(), "--out", out, "--vectors", "none", *args)
        assert r.returncode == 0, r.stderr
        plain = read_mask(out / "plain_mask.tif")
        assert 0 < (plain == 1).mean() < 1
        for name in variants:
            assert np.array_equal(read_mask(out / f"{name}_mask.tif"), plain), name
        assert "values 1000..5000 -> 0..255 (the file's scale 0.0001 and offset -0.1: reflectance 0..0.4)" in r.stdout
        assert "float10000.tif: bands 1,2,3 of 4 by their names (B04 as red, B03 as green, B02 as blue), values " \
               "0..4000 -> 0..255 (float values up to 3" in r.stdout


def test_landsat_surface_reflectance_with_no_declared_scale_is_warned_about_and_its_range_gives_the_plain_mask(
        tiny_run, tmp_path):
    """Landsat Collection 2 surface reflectance is stored as (reflectance + 0.2) / 2.75e-05: 7273 at reflectance 0.
    Without its scale in the file, auto reads it as Sentinel-2's reflectance x 10000 and the model would see a
    white image: a warning says so (under --quiet too) and names the range, which gives the mask of the same
    reflectance stored as Sentinel-2 integers. A file that declares the scale, and an ordinary one, get no warning."""
    refl = (noise((3, 90, 110), 5, np.uint16) * 12 + 100).astype(np.uint16)  # reflectance x 10000, 0.01..0.31
    landsat = np.round((refl / 10000 + 0.2) / 2.75e-05).astype(np.uint16)
    paths = {"plain": write_tif(tmp_path / "plain.tif", refl), "landsat": write_tif(tmp_path / "landsat.tif", landsat),
             "declared": write_tif(tmp_path / "declared.tif", landsat)}
    with rasterio.open(paths["declared"], "r+") as ds:
        ds.scales, ds.offsets = (2.75e-05,) * 3, (-0.2,) * 3
    r = unetseg("predict", tiny_run, *paths.values(), "--out", tmp_path / "auto", "--vectors", "none", "-q")
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stdout.splitlines() if "above 4000, the top of the auto value range" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: landsat.tif: even its darkest values (1st percentile")
    assert "--value-range 7273,21818" in warned[0]
    plain = read_mask(tmp_path / "auto" / "plain_mask.tif")
    assert 0 < (plain == 1).mean() < 1
    assert np.array_equal(read_mask(tmp_path / "auto" / "declared_mask.tif"), plain)
    r = unetseg("predict", tiny_run, paths["landsat"], "--out", tmp_path / "ranged", "--vectors", "none", "-q",
                "--value-range", "7273,21818")
    assert r.returncode == 0 and "darkest values" not in r.stdout + r.stderr, r.stdout
    assert (read_mask(tmp_path / "ranged" / "landsat_mask.tif") == plain).mean() > 0.99  # 2.75e-05 steps round
