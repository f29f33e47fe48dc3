"""`unetseg serve`: the API gives what predict gives, refuses bad requests with a clear 4xx and keeps serving,
survives schemathesis without a 500, and the web page works in a real (headless Chromium) browser."""

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import not_a_server_error, response_schema_conformance

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from unetseg.config import PredictConfig  # noqa: E402
from unetseg.runtime import select_runtime  # noqa: E402
from unetseg.serve.app import Access, Limits, create_app  # noqa: E402
from helpers import png_header_only  # noqa: E402

ARTIFACTS = Path(os.environ.get("UNETSEG_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def client(tiny_run):
    app = create_app(tiny_run, select_runtime("fp32"), limits=Limits(max_bytes=300_000, max_pixels=400 * 400),
                     log=lambda m: None)
    return TestClient(app)


def png_bytes(h=70, w=90, seed=0, flat=False) -> bytes:
    pixels = np.full((h, w, 3), 90, np.uint8) if flat else \
        np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_segment_gives_what_predict_gives(client, tiny_run, tmp_path):
    from unetseg.predict.pipeline import predict

    data = png_bytes()
    r = client.post("/v1/segment?outputs=mask,overlay,image,probability",
                    files={"image": ("chip.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    (tmp_path / "chip.png").write_bytes(data)
    rows = predict(tiny_run, [tmp_path / "chip.png"], tmp_path / "out", PredictConfig(), select_runtime("fp32"),
                   progress=False, log=lambda m: None)
    assert (body["width"], body["height"]) == (90, 70)
    assert body["water_fraction"] == pytest.approx(rows[0]["water_fraction"], abs=1e-6)
    mask = decode(body["mask_png"])
    assert np.array_equal(mask, np.asarray(Image.open(tmp_path / "out" / "chip_mask.png")))
    assert (mask == 255).sum() == body["water_pixels"] and body["water_area_m2"] is None
    assert decode(body["overlay_png"]).shape == (70, 90, 3) and decode(body["image_png"]).shape == (70, 90, 3)
    prob = decode(body["probability_png"])  # grey + alpha (valid)
    assert prob.shape == (70, 90, 2) and (prob[..., 1] == 255).all()
    assert ((prob[..., 0] > 127.5) == (mask == 255)).mean() > 0.99
    lower = client.post("/v1/segment?threshold=0.05", files={"image": ("chip.png", data, "image/png")}).json()
    assert lower["water_pixels"] >= body["water_pixels"] and lower["threshold"] == 0.05


def test_health_model_and_schema(client):
    assert client.get("/health").json()["status"] == "ok"
    m = client.get("/v1/model").json()
    assert m["model"] == "unet-bn" and m["in_channels"] == 3 and m["limits"]["max_pixels"] == 160_000
    schema = client.get("/openapi.json").json()
    assert {"/health", "/v1/model", "/v1/segment"} <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "<canvas id=\"overlay\">" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from outside


def test_georeferenced_upload_gets_its_water_area(client):
    import rasterio
    from rasterio.transform import from_origin

    buf = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 3000, (3, 60, 80), dtype=np.uint16)
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=80, height=60, count=3, dtype="uint16", crs="EPSG:32633",
                      transform=from_origin(500_000, 5_000_000, 10, 10)) as ds:
            ds.write(pixels)
        buf.write(mem.read())
    r = client.post("/v1/segment", files={"image": ("scene.tif", buf.getvalue(), "image/tiff")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["crs"] == "EPSG:32633"
    # true ground area: on UTM's central meridian a 10 m grid pixel covers 100 / 0.9996^2 m2
    assert body["water_area_m2"] == pytest.approx(body["water_pixels"] * 100 / 0.9996 ** 2, rel=1e-5)


@pytest.mark.parametrize("name,data,status,expected", [
    ("empty.png", b"", 422, "empty.png: empty upload"),
    ("notes.txt", b"just some words", 415, "notes.txt: not a PNG, JPEG or TIFF"),
    ("bomb.png", png_header_only(50_000, 50_000), 422, "bomb.png: 50000x50000 = 2,500,000,000 pixels is over this "
                                                       "server's limit of 160,000"),
    ("big.png", png_bytes(500, 500, flat=True), 422, "250,000 pixels is over this server's limit"),
    ("huge.bin", b"\x89PNG\r\n\x1a\n" + os.urandom(400_000), 413, "over the limit of 300,000 bytes"),
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 422, "broken.png: not a readable image"),
    ("../../etc/passwd", png_bytes(), 200, ""),  # a path as a name is only a name
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, name, data, status, expected):
    r = client.post("/v1/segment", files={"image": (name, data, "application/octet-stream")})
    assert r.status_code == status, r.text
    if expected:
        assert expected in r.json()["detail"]
        assert "/tmp" not in r.json()["detail"]  # the server's own paths are not shown
    assert client.post("/v1/segment", files={"image": ("ok.png", png_bytes(), "image/png")}).status_code == 200


def test_concurrent_requests_share_one_model(client):
    from concurrent.futures import ThreadPoolExecutor

    data = [png_bytes(seed=i) for i in range(4)]
    alone = [client.post("/v1/segment", files={"image": ("c.png", d, "image/png")}).json()["water_pixels"]
             for d in data]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda d: client.post("/v1/segment", files={"image": ("c.png", d, "image/png")})
                                 .json()["water_pixels"], data * 2))
    assert together == alone * 2


def test_schemathesis_finds_no_server_error(client):
    """Every operation of the OpenAPI schema, with cases schemathesis generates from it (random uploads,
    thresholds out of range, missing fields): never a 5xx, and every reply, errors included, as the schema
    declares it. Driven through hypothesis directly."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/health", "/v1/model", "/v1/segment"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        check()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(downloads: Path | None = None):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are needed for the browser test (make test installs them)")
        pytest.skip("chromium / chromedriver not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    if downloads:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_web_page_segments_a_real_chip_in_headless_chromium(real_run, real_data, tmp_path):
    """The page with a token server: it asks for the token once, segments a real chip, redraws at another
    threshold, and for a GeoTIFF upload downloads the mask GeoTIFF with the upload's CRS."""
    import httpx
    import rasterio
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chip = next(p for p in sorted((real_data / "Images").iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    test_stems = set(json.loads((real_run / "split.json").read_text())["test"])
    chip = next((p for p in sorted((real_data / "Images").iterdir()) if p.stem in test_stems), chip)
    scene = tmp_path / "scene.tif"
    rgb = np.asarray(Image.open(chip).convert("RGB"))
    with rasterio.open(scene, "w", driver="GTiff", width=rgb.shape[1], height=rgb.shape[0], count=3, dtype="uint8",
                       crs="EPSG:32631", transform=rasterio.transform.from_origin(300000, 4000000, 20, 20)) as ds:
        ds.write(np.moveaxis(rgb, -1, 0))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "unetseg.cli", "serve", str(real_run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "UNETSEG_TOKEN": "tok-123"})
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer tok-123"}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert httpx.post(f"{url}/v1/segment", files={"image": (chip.name, chip.read_bytes())}).status_code == 401
        api = httpx.post(f"{url}/v1/segment", files={"image": (chip.name, chip.read_bytes())}, headers=auth,
                         timeout=120).json()
        driver = _browser(downloads)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 120)
            prompt = wait.until(lambda d: _alert(d))  # /v1/model answered 401: the page asks once
            prompt.send_keys("tok-123")
            prompt.accept()
            wait.until(lambda d: d.find_element(By.ID, "model").text)
            driver.find_element(By.ID, "file").send_keys(str(chip.resolve()))  # chromedriver wants a canonical path
            wait.until(lambda d: d.find_element(By.ID, "fraction").get_attribute("data-value"))
            overlay = driver.find_element(By.ID, "overlay")
            assert overlay.is_displayed() and int(overlay.get_attribute("width")) == api["width"]
            shown = driver.find_element(By.ID, "fraction")
            assert float(shown.get_attribute("data-value")) == pytest.approx(api["water_fraction"], abs=1e-6)
            assert shown.text == f"{100 * api['water_fraction']:.2f}%"
            assert driver.find_element(By.ID, "error").text == ""
            assert not driver.find_element(By.ID, "geotiff").is_displayed()  # a JPEG has no georeferencing
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
            # the slider redraws the mask in the browser, without a new upload
            slider = driver.find_element(By.ID, "threshold")
            driver.execute_script("arguments[0].value = 0.1; arguments[0].dispatchEvent(new Event('input'))", slider)
            lower = float(shown.get_attribute("data-value"))
            assert lower >= api["water_fraction"]
            assert driver.find_element(By.ID, "download").get_attribute("href").startswith("data:image/png")
            driver.execute_script("arguments[0].value = 0.5; arguments[0].dispatchEvent(new Event('input'))", slider)
            driver.find_element(By.ID, "file").send_keys(str(scene.resolve()))
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("scene.tif: done"))
            notes = httpx.post(f"{url}/v1/segment?outputs=none", headers=auth, timeout=60,
                               files={"image": ("scene.tif", scene.read_bytes())}).json()["notes"]
            assert notes and driver.find_element(By.ID, "status").text == f"scene.tif: done ({'; '.join(notes)})"
            driver.find_element(By.ID, "geotiff").click()
            wait.until(lambda d: (downloads / "scene_mask.tif").exists())
            assert _alert(driver) is None and driver.find_element(By.ID, "error").text == ""  # asked only once
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000
    time.sleep(0.5)  # the browser renames its partial download when done
    with rasterio.open(downloads / "scene_mask.tif") as got:
        assert got.crs.to_epsg() == 32631 and got.width == rgb.shape[1] and set(np.unique(got.read(1))) <= {0, 1}


def _alert(driver):
    """The open prompt/alert, or None."""
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        alert.text  # noqa: B018 (raises when there is none)
        return alert
    except NoAlertPresentException:
        return None


def test_a_chunked_upload_without_length_is_stopped_at_the_limit(client):
    """No Content-Length (a streamed body): counted while it arrives, refused once over the limit."""
    def chunks():
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
        yield boundary + b"\x89PNG\r\n\x1a\n"
        for _ in range(50):
            yield os.urandom(20_000)  # 1 MB in all, over the 300 kB (+ framing) limit
        yield b"\r\n--b--\r\n"

    r = client.post("/v1/segment", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["detail"] == "upload is over the limit of 300,000 bytes"
    assert client.get("/health").status_code == 200


def test_a_request_beyond_the_queue_gets_503_with_retry_after_and_the_next_one_succeeds(tiny_run):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(tiny_run, select_runtime("fp32"), limits=Limits(max_queue=1), log=lambda m: None)
    predictor, entered, release = app.state.predictor, threading.Event(), threading.Event()
    segment = predictor.segment

    def held(*args, **kwargs):  # the first request holds the model until the test lets it go
        entered.set()
        assert release.wait(30)
        return segment(*args, **kwargs)

    predictor.segment = held
    client = TestClient(app)
    post = lambda: client.post("/v1/segment", files={"image": ("c.png", png_bytes(), "image/png")})  # noqa: E731
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post)
        assert entered.wait(30)
        busy = post()
        release.set()
        assert first.result().status_code == 200
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
    assert "--max-queue 1" in busy.json()["detail"]
    predictor.segment = segment
    assert post().status_code == 200  # the queue has room again
    assert client.get("/health").status_code == 200


# --- issue 16: predict's options, GIS outputs, one error shape, logs, metrics, a token ------------------------


def _geotiff(path, bands, crs="EPSG:32633"):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=bands.dtype, crs=crs, transform=from_origin(500_000, 5_000_000, 10, 10)) as ds:
        ds.write(bands)
    return path


@pytest.fixture(scope="module")
def logged(tiny_run):
    lines: list[str] = []
    app = create_app(tiny_run, select_runtime("fp32"), log=lines.append)
    return TestClient(app), lines


@pytest.mark.parametrize("params,cli", [
    ({"bands": "4,3,2", "value_range": "1000,5000"}, ["--bands", "4,3,2", "--value-range", "1000,5000"]),
    ({"bands": "3,2,1", "scale": "1.5", "threshold": "0.3"}, ["--bands", "3,2,1", "--scale", "1.5",
                                                              "--threshold", "0.3"]),
    ({"bands": "2,3,4", "tta": "flips", "value_range": "percentile"}, ["--bands", "2,3,4", "--tta", "flips",
                                                                       "--value-range", "percentile"]),
])
def test_each_parameter_gives_predicts_mask_for_the_same_file(logged, tiny_run, tmp_path, params, cli):
    import rasterio

    from helpers import unetseg

    client, _ = logged
    rng = np.random.default_rng(5)
    bands = (1000 + rng.integers(0, 3000, (4, 48, 64))).astype(np.uint16)  # 4 bands, L2A-like offset
    tif = _geotiff(tmp_path / "l2a.tif", bands)
    r = unetseg("predict", tiny_run, tif, "--out", tmp_path / "cli", "--vectors", "none", "--precision", "fp32", "-q",
                *cli)
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "cli" / "l2a_mask.tif") as ds:
        expected = ds.read(1)
    reply = client.post("/v1/segment", params=params, files={"image": ("l2a.tif", tif.read_bytes(), "image/tiff")})
    assert reply.status_code == 200, reply.text
    assert np.array_equal(decode(reply.json()["mask_png"]), np.where(expected == 1, 255, 0))
    geotiff = client.post("/v1/segment", params={**params, "format": "geotiff"},
                          files={"image": ("l2a.tif", tif.read_bytes(), "image/tiff")})
    assert geotiff.status_code == 200 and geotiff.headers["content-type"] == "image/tiff"
    assert 'filename="l2a_mask.tif"' in geotiff.headers["content-disposition"]
    (tmp_path / "got.tif").write_bytes(geotiff.content)
    with rasterio.open(tmp_path / "got.tif") as got, rasterio.open(tif) as src:
        assert np.array_equal(got.read(1), expected)
        assert got.crs == src.crs and got.transform == src.transform  # georeferencing kept


def test_a_request_can_mark_a_no_data_value_as_predict_does(logged, tmp_path):
    """nodata=0: an upload's black fill is left out of the valid pixels and the water, as with predict --nodata."""
    client, _ = logged
    pixels = np.random.default_rng(3).integers(1, 255, (40, 60, 3), dtype=np.uint8)
    pixels[:, :15] = 0
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    upload = {"image": ("edge.png", buf.getvalue(), "image/png")}
    plain = client.post("/v1/segment", files=upload)
    marked = client.post("/v1/segment", params={"nodata": "0"}, files=upload)
    assert plain.status_code == marked.status_code == 200, marked.text
    assert plain.json()["valid_pixels"] == 40 * 60 and marked.json()["valid_pixels"] == 40 * 45
    assert (decode(marked.json()["mask_png"])[:, :15] == 0).all()
    bad = client.post("/v1/segment", params={"nodata": "300"}, files=upload)
    assert bad.status_code == 422 and "edge.png: nodata=300 cannot occur in its uint8 values" in bad.text


def test_a_request_can_add_a_water_index_to_the_model_as_predict_does(logged, tiny_run, tmp_path):
    import rasterio

    from helpers import unetseg

    client, _ = logged
    rng = np.random.default_rng(8)
    water = np.zeros((48, 64), bool)
    water[10:30, 5:40] = True
    green = np.where(water, 900, 700) + rng.integers(0, 100, water.shape)
    swir = np.where(water, 100, 1900) + rng.integers(0, 200, water.shape)
    tif = _geotiff(tmp_path / "s2.tif", np.stack([green - 100, green, green + 50, swir]).astype(np.uint16))
    with rasterio.open(tif, "r+") as ds:
        for i, n in enumerate(["B02", "B03", "B04", "B11"], 1):
            ds.set_band_description(i, n)
    r = unetseg("predict", tiny_run, tif, "--method", "unet+mndwi", "--out", tmp_path / "cli", "--vectors", "none",
                "--precision", "fp32", "-q")
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path / "cli" / "s2_mask.tif") as ds:
        expected = ds.read(1)
    assert (expected[water] == 1).all()  # the index finds the water whatever the tiny model says
    upload = {"image": ("s2.tif", tif.read_bytes(), "image/tiff")}
    reply = client.post("/v1/segment", params={"method": "unet+mndwi"}, files=upload)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert np.array_equal(decode(body["mask_png"]), np.where(expected == 1, 255, 0))
    assert body["method"] == "unet+mndwi" and body["index_threshold"] >= 0
    alone = client.post("/v1/segment", files=upload).json()  # the server's own method is unchanged
    assert alone["method"] == "unet" and alone["index_threshold"] is None
    photo = client.post("/v1/segment", params={"method": "unet+mndwi"},
                        files={"image": ("photo.png", png_bytes(), "image/png")})
    assert photo.status_code == 422 and "needs green and swir1 bands" in photo.json()["detail"]


def test_a_geotiff_upload_returns_polygons_and_the_page_offers_the_downloads(logged, tmp_path):
    client, _ = logged
    tif = _geotiff(tmp_path / "s.tif", np.random.default_rng(2).integers(0, 255, (3, 40, 50), dtype=np.uint8))
    r = client.post("/v1/segment?format=geojson", files={"image": ("s.tif", tif.read_bytes(), "image/tiff")})
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    collection = r.json()
    assert collection["type"] == "FeatureCollection" and collection["name"] == "s_water"  # the upload's name
    odd = client.post("/v1/segment?format=geojson", files={"image": ("../a b/Lake Ünt 湖.tif", tif.read_bytes())})
    assert odd.status_code == 200 and odd.json()["name"] == "Lake_nt_water"  # a plain stem: no path, ASCII
    assert odd.headers["content-disposition"] == ('attachment; filename="Lake_nt_water.geojson"; '
                                                  "filename*=UTF-8''Lake%20%C3%9Cnt%20%E6%B9%96_water.geojson")
    assert all(f["properties"]["area_m2"] > 0 for f in collection["features"])
    png = client.post("/v1/segment?format=geotiff", files={"image": ("c.png", png_bytes(), "image/png")})
    assert png.status_code == 422 and "format=geotiff needs a TIFF" in png.json()["detail"]
    page = client.get("/").text
    assert "format=geotiff" in page and "format=geojson" in page


def test_outputs_choose_the_pngs_a_reply_carries(logged):
    client, _ = logged
    post = lambda q: client.post(f"/v1/segment{q}", files={"image": ("c.png", png_bytes(), "image/png")})  # noqa
    default = post("").json()
    assert default["mask_png"] and default["overlay_png"] is None and default["image_png"] is None
    none = post("?outputs=none").json()
    assert all(none[k] is None for k in ("mask_png", "overlay_png", "probability_png", "image_png"))
    both = post("?outputs=overlay,probability").json()
    assert both["overlay_png"] and both["probability_png"] and both["mask_png"] is None
    bad = post("?outputs=mask,thumbnail")
    assert bad.status_code == 422 and "choose from mask, overlay, probability, image" in bad.json()["detail"]


def test_every_error_has_one_shape_declared_in_the_schema(tiny_run):
    app = create_app(tiny_run, select_runtime("fp32"), limits=Limits(max_bytes=50_000), log=lambda m: None)
    client = TestClient(app)
    cases = [
        client.post("/v1/segment", files={"image": ("e.png", b"", "image/png")}),  # 422 from the handler
        client.post("/v1/segment?threshold=2", files={"image": ("c.png", png_bytes(), "image/png")}),  # validation
        client.post("/v1/segment"),  # missing field
        client.post("/v1/segment?scale=huge", files={"image": ("c.png", png_bytes(), "image/png")}),
        client.post("/v1/segment?bands=0", files={"image": ("c.png", png_bytes(), "image/png")}),
        client.post("/v1/segment", files={"image": ("t.txt", b"words", "text/plain")}),  # 415
        client.post("/v1/segment", files={"image": ("b.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 200_000)}),  # 413
        client.get("/nowhere"),  # 404
        client.get("/docs"),  # no CDN page: 404 in the same shape
        client.put("/v1/segment"),  # 405
    ]
    for r in cases:
        body = r.json()
        assert set(body) == {"status", "detail"} and body["status"] == r.status_code >= 400, body
        assert isinstance(body["detail"], str) and "\n" not in body["detail"] and body["detail"]
    assert [r.status_code for r in cases] == [422, 422, 422, 422, 422, 415, 413, 404, 404, 405]
    assert "scale=" in cases[3].json()["detail"] and "--" not in cases[3].json()["detail"]  # the API's words
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/segment"]["post"]["responses"]
    for code in ("401", "413", "415", "422", "500", "503"):
        assert responses[code]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem"), code
    assert "HTTPValidationError" not in json.dumps(schema)


def test_a_token_guards_the_api_and_the_log_and_metrics_follow_each_request(tiny_run):
    lines: list[str] = []
    app = create_app(tiny_run, select_runtime("fp32"), log=lines.append,
                     access=Access(token="s3cret", log_format="json"))
    client = TestClient(app)
    chip = {"image": ("c.png", png_bytes(), "image/png")}
    assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200  # open
    missing = client.post("/v1/segment", files=chip)
    wrong = client.post("/v1/segment", files=chip, headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"] and client.get("/v1/model").status_code == 401
    ok = client.post("/v1/segment", files=chip, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    seg = [e for e in entries if e["path"] == "/v1/segment"]
    assert [e["status"] for e in seg] == [401, 401, 200]
    assert seg[-1]["image"] == "90x70" and seg[-1]["bytes"] == len(ok.content) and seg[-1]["seconds"] > 0
    assert not any("iVBOR" in line for line in lines)  # never image content
    text = client.get("/metrics").text
    assert 'unetseg_requests_total{path="/v1/segment",status="401"} 2.0' in text
    assert 'unetseg_requests_total{path="/v1/segment",status="200"} 1.0' in text
    assert "unetseg_images_total 1.0" in text and "unetseg_pixels_total 6300.0" in text
    assert "unetseg_queue_depth 0.0" in text and "unetseg_request_seconds_bucket" in text


def test_text_access_log_line(logged):
    client, lines = logged
    client.post("/v1/segment", files={"image": ("c.png", png_bytes(), "image/png")})
    assert any(line.startswith("POST /v1/segment 200 ") and line.endswith(" 90x70") for line in lines), lines[-3:]


def test_single_band_inputs_are_answered_as_the_docs_say(logged, tmp_path):
    client, _ = logged
    grey = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 50), dtype=np.uint8), "L").save(grey, "PNG")
    assert client.post("/v1/segment", files={"image": ("g.png", grey.getvalue(), "image/png")}).status_code == 200
    one = _geotiff(tmp_path / "b.tif", np.random.default_rng(2).integers(0, 4000, (1, 40, 50), dtype=np.uint16))
    refused = client.post("/v1/segment", files={"image": ("b.tif", one.read_bytes(), "image/tiff")})
    assert refused.status_code == 422 and refused.json()["detail"].startswith("b.tif: has 1 colour band(s)")
    chosen = client.post("/v1/segment?bands=1,1,1", files={"image": ("b.tif", one.read_bytes(), "image/tiff")})
    assert chosen.status_code == 200, chosen.text
    doc = (Path(__file__).resolve().parents[1] / "docs" / "serve.md").read_text()
    assert "8-bit single-band TIFFs" in doc and "`bands=1,1,1`" in doc


def test_the_reply_says_what_reading_the_upload_took_and_warns_when_unlike_training(client, synth_data):
    """notes: the reader's conversions (as predict prints them) and the unlike-training warning when the score
    is above the threshold; one of the run's own training images has neither."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (50, 60, 3), dtype=np.uint8)).convert("CMYK").save(
        buf, "JPEG")
    body = client.post("/v1/segment", files={"image": ("c.jpg", buf.getvalue(), "image/jpeg")}).json()
    assert "CMYK converted to RGB" in body["notes"]
    own = sorted((synth_data / "Images").iterdir())[0]
    plain = client.post("/v1/segment", files={"image": (own.name, own.read_bytes(), "image/jpeg")}).json()
    assert plain["notes"] == [] and plain["unlike_training"] < plain["unlike_threshold"]
    magenta = np.zeros((60, 80, 3), np.uint8)
    magenta[..., 0] = magenta[..., 2] = 255
    out = io.BytesIO()
    Image.fromarray(magenta).save(out, "PNG")
    odd = client.post("/v1/segment", files={"image": ("m.png", out.getvalue(), "image/png")}).json()
    assert odd["unlike_training"] > odd["unlike_threshold"]
    assert [n for n in odd["notes"] if n.startswith("looks unlike the images the model was trained on")]


def test_a_port_out_of_range_or_taken_is_one_line_before_the_model_loads(tiny_run):
    from helpers import unetseg

    r = unetseg("serve", tiny_run, "--port", "99999")
    assert r.returncode == 2 and r.stderr.strip() == "error: --port 99999: must be between 1 and 65535"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = unetseg("serve", tiny_run, "--port", port)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: --port {port}: 127.0.0.1:{port} is in use (another server?); choose " \
                               "another --port"
    assert "serving" not in r.stdout
