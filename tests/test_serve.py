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
from schemathesis.checks import not_a_server_error

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from unetseg.config import PredictConfig  # noqa: E402
from unetseg.runtime import select_runtime  # noqa: E402
from unetseg.serve.app import Limits, create_app  # noqa: E402
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
    r = client.post("/v1/segment", files={"image": ("chip.png", data, "image/png")})
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
    thresholds out of range, missing fields): never a 5xx. Driven through hypothesis directly."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/health", "/v1/model", "/v1/segment"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(checks=[not_a_server_error])

        check()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
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
    return webdriver.Chrome(service=Service(driver), options=options)


def test_web_page_segments_a_real_chip_in_headless_chromium(real_run, real_data):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chip = next(p for p in sorted((real_data / "Images").iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    test_stems = set(json.loads((real_run / "split.json").read_text())["test"])
    chip = next((p for p in sorted((real_data / "Images").iterdir()) if p.stem in test_stems), chip)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "unetseg.cli", "serve", str(real_run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        api = httpx.post(f"{url}/v1/segment", files={"image": (chip.name, chip.read_bytes())}, timeout=120).json()
        driver = _browser()
        try:
            driver.get(url)
            driver.find_element(By.ID, "file").send_keys(str(chip.resolve()))  # chromedriver wants a canonical path
            wait = WebDriverWait(driver, 120)
            wait.until(lambda d: d.find_element(By.ID, "fraction").get_attribute("data-value"))
            overlay = driver.find_element(By.ID, "overlay")
            assert overlay.is_displayed() and int(overlay.get_attribute("width")) == api["width"]
            shown = driver.find_element(By.ID, "fraction")
            assert float(shown.get_attribute("data-value")) == pytest.approx(api["water_fraction"], abs=1e-6)
            assert shown.text == f"{100 * api['water_fraction']:.2f}%"
            assert driver.find_element(By.ID, "error").text == ""
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
            # the slider redraws the mask in the browser, without a new upload
            slider = driver.find_element(By.ID, "threshold")
            driver.execute_script("arguments[0].value = 0.1; arguments[0].dispatchEvent(new Event('input'))", slider)
            lower = float(shown.get_attribute("data-value"))
            assert lower >= api["water_fraction"]
            assert driver.find_element(By.ID, "download").get_attribute("href").startswith("data:image/png")
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000


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
