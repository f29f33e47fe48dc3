"""`unetseg serve`: a trained run over HTTP (FastAPI), and the web page at /.

POST /v1/segment takes the image bytes (multipart field `image`) and never a path: the bytes go to a
temporary file the server names, are checked (size, type by content, dimensions from the header) before
any pixel is decoded, and run through the same pipeline as `unetseg predict`, with predict's options as
query parameters. The model is shared by all requests; one forward pass runs at a time (the intra-op
threads already use every core), and at most --max-queue requests are in the server at once.

Every error, whoever raises it (validation, the handlers, the middlewares below), is one JSON shape:
{"status": int, "detail": "one line"}, declared in the OpenAPI document.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import PredictConfig, parse_scale
from ..data.files import image_shape
from ..data.sources import RasterSource, parse_bands, parse_value_range
from ..errors import DataError, first_line
from ..ood import unlike_note
from ..predict.outputs import png_bytes
from ..predict.pipeline import Predictor
from ..runfolder import RunFolder
from ..runtime import Runtime

# what the first bytes of an upload must be, and the suffix its temporary file gets
SIGNATURES = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif", b"MM\x00*": ".tif",
              b"II+\x00": ".tif", b"MM\x00+": ".tif"}
PICTURES = ("mask", "overlay", "probability", "image")  # the base64 PNGs a JSON reply can carry
FILES = {"geotiff": ("_mask.tif", "image/tiff"), "geojson": ("_water.geojson", "application/geo+json")}


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 32 * 1024 * 1024  # 32 MiB per upload
    max_pixels: int = 4096 * 4096  # whole-image decode: about 16.8 megapixels
    max_queue: int = 8  # segment requests in the server at once (running or waiting); 503 beyond


@dataclass(frozen=True)
class Access:
    """Who may call the API and what the server logs."""

    token: str | None = None  # required as `Authorization: Bearer TOKEN` on /v1/* when set
    cors_origin: str | None = None  # one origin allowed to call from a browser (CORS off by default)
    log_format: str = "text"  # access log: one text line or one JSON object per request


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    run: str


class ModelInfo(BaseModel):
    run: str
    model: str
    parameters: int | None
    in_channels: int
    num_classes: int
    image_size: int
    recipe: dict
    test_metrics: dict | None = Field(description="RUN/metrics.json from `unetseg evaluate`, if it was run")
    scale: float = Field(description="model pixels per input pixel (predict --scale auto)")
    limits: dict


class Segmentation(BaseModel):
    width: int
    height: int
    threshold: float
    water_fraction: float = Field(description="water pixels / valid (not no-data) pixels")
    water_pixels: int
    valid_pixels: int
    water_area_m2: float | None = Field(description="for georeferenced GeoTIFFs; null otherwise")
    crs: str | None
    unlike_training: float | None = Field(description="distance of the image's colour statistics from the training "
                                                      "images' (docs/scenes.md); above unlike_threshold: unlike them")
    unlike_threshold: float | None
    mean_entropy: float | None = Field(description="the model's doubt: mean binary entropy of the water "
                                                   "probability, 0..1 bit")
    scale: float | str = Field(description="model pixels per input pixel used (rows x columns when they differ)")
    method: str = Field(description="unet (the model alone), or unet+ndwi / unet+mndwi (with a water index)")
    index_threshold: float | None = Field(description="method unet+INDEX: the index's Otsu threshold (at least 0) "
                                                      "for this image")
    tiles: int
    seconds: float
    notes: list[str] = Field([], description="what reading the upload took (bands picked by name, the value "
                                             "range, a conversion, an EXIF turn not applied) and a warning when "
                                             "unlike_training is above unlike_threshold; the CLI prints the same")
    image_png: str | None = Field(None, description="base64 PNG (outputs=image): the image as the model saw it")
    mask_png: str | None = Field(None, description="base64 PNG (outputs=mask): water 255, land 0")
    overlay_png: str | None = Field(None, description="base64 PNG (outputs=overlay): water tinted blue")
    probability_png: str | None = Field(None, description="base64 PNG (outputs=probability), grey + alpha: water "
                                                          "probability x 255; alpha 0 = no-data")


class Problem(BaseModel):
    """Every error reply: the HTTP status again and one line that says what was wrong."""

    status: int = Field(examples=[422])
    detail: str = Field(examples=["chip.png: not a readable image"])


def safe_stem(name: str) -> str:
    """An upload's file name reduced to a plain stem for its temporary file (letters, digits, - and _ only)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:80].strip("_") or "upload"


def _problems(*codes: int) -> dict:
    words = {401: "missing or wrong bearer token (serve --token)", 413: "upload too large",
             415: "not a PNG, JPEG or TIFF", 422: "a bad parameter, or an empty, unreadable or too large image",
             500: "an error of the server itself", 503: "busy: --max-queue requests in progress; retry after the "
                                                        "Retry-After header's seconds"}
    return {c: {"model": Problem, "description": words[c]} for c in codes}


def problem_body(status: int, detail: str) -> bytes:
    return json.dumps({"status": status, "detail": detail}).encode()


async def send_problem(send, status: int, detail: str, headers: tuple = ()) -> None:
    """An error reply from a raw ASGI middleware, in the one shape."""
    body = problem_body(status, detail)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def api_words(message: str) -> str:
    """predict's messages in the API's words: `--value-range 1000,5000` -> `value_range=1000,5000`."""
    return re.sub(r"--([a-z][a-z-]*)[ =]?", lambda m: m.group(1).replace("-", "_") + "=", message)


def _b64png(img: Image.Image | np.ndarray) -> str:
    return base64.b64encode(png_bytes(img)).decode()


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, from its Content-Length before reading, or
    while it streams in (chunked uploads have no length), so an oversized body is never spooled whole."""

    def __init__(self, app, max_bytes: int, framing: int = 64 * 1024):
        self.app, self.max_bytes, self.allowed = app, max_bytes, max_bytes + framing  # multipart headers, boundary

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.allowed:
            return await send_problem(send, 413, f"upload of {int(length):,} bytes is over the limit of "
                                                 f"{self.max_bytes:,} bytes")
        seen, started = 0, False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.allowed:  # FastAPI passes an HTTPException from here on to its handler
                    raise _TooLarge(413, f"upload is over the limit of {self.max_bytes:,} bytes")
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge as e:
            if not started:
                await send_problem(send, 413, e.detail)


class _TooLarge(StarletteHTTPException):
    """A body over the limit, found while reading it."""


@dataclass
class Queue:
    """Requests to /v1/segment in the server now, and the recent mean seconds of one."""

    inside: int = 0
    mean_seconds: float = 1.0


class QueueLimit:
    """ASGI middleware: at most `max_queue` requests to `paths` in the server at once (running or waiting for
    the model); one more is answered 503 with Retry-After before its body is read, so memory stays bounded
    whatever the number of clients. Retry-After is the recent mean request time times the queue, in whole
    seconds."""

    def __init__(self, app, max_queue: int, queue: Queue, paths: tuple[str, ...] = ("/v1/segment",)):
        self.app, self.max_queue, self.queue, self.paths = app, max_queue, queue, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        q = self.queue
        if q.inside >= self.max_queue:
            wait = max(1, round(q.mean_seconds * self.max_queue))
            return await send_problem(send, 503, f"busy: {q.inside} request(s) in progress, the most this server "
                                                 f"queues (--max-queue {self.max_queue}); retry in {wait} s",
                                      ((b"retry-after", str(wait).encode()),))
        q.inside += 1  # the event loop is one thread: no lock needed
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            q.inside -= 1
            q.mean_seconds = 0.8 * q.mean_seconds + 0.2 * (time.perf_counter() - t0)


class TokenCheck:
    """ASGI middleware: with a token, /v1/* needs `Authorization: Bearer TOKEN` (compared in constant time);
    the page, /health, /metrics and /openapi.json stay open."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or self.token is None or not scope.get("path", "").startswith("/v1/")
                or scope.get("method") == "OPTIONS"):
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token):
            return await self.app(scope, receive, send)
        detail = "wrong bearer token" if given else "this server needs `Authorization: Bearer TOKEN` (serve --token)"
        await send_problem(send, 401, detail, ((b"www-authenticate", b"Bearer"),))


class AccessLog:
    """ASGI middleware: one line per request (method, path, status, bytes sent, seconds, image size; never
    image content), as text or JSON, and the request counters and latency histogram of /metrics."""

    def __init__(self, app, log, log_format: str, metrics: "Metrics"):
        self.app, self.log, self.json, self.metrics = app, log, log_format == "json", metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status, sent = time.perf_counter(), 500, 0

        async def watching_send(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            seconds = time.perf_counter() - t0
            image = (scope.get("state") or {}).get("image_size", "")
            path = scope.get("path", "")
            self.metrics.request(path, status, seconds)
            entry = {"method": scope.get("method", ""), "path": path, "status": status, "bytes": sent,
                     "seconds": round(seconds, 4), "image": image}
            self.log(json.dumps(entry) if self.json else
                     f"{entry['method']} {path} {status} {sent} B {seconds:.3f} s" + (f" {image}" if image else ""))


class Metrics:
    """Prometheus counters of this server (its own registry: no global state)."""

    PATHS = ("/", "/health", "/metrics", "/openapi.json", "/v1/model", "/v1/segment")

    def __init__(self, queue: Queue):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("unetseg_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("unetseg_request_seconds", "Request time, seconds", ["path"], registry=self.registry,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.images = Counter("unetseg_images", "Images segmented", registry=self.registry)
        self.pixels = Counter("unetseg_pixels", "Pixels segmented", registry=self.registry)
        depth = Gauge("unetseg_queue_depth", "Segment requests in the server now", registry=self.registry)
        depth.set_function(lambda: queue.inside)

    def request(self, path: str, status: int, seconds: float) -> None:
        path = path if path in self.PATHS else "other"  # no label per unknown path
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def request_settings(base: PredictConfig, threshold: float, tta: str | None, scale: str | None,
                     bands: str | None, value_range: str | None, fmt: str, method: str | None = None,
                     nodata: float | None = None) -> PredictConfig:
    """A request's parameters as predict settings (None: the server's), with predict's own parsing and checks
    (422 otherwise)."""
    try:
        changes = {"threshold": threshold, "tta": tta, "scale": None if scale is None else parse_scale(scale),
                   "bands": parse_bands(bands), "value_range": None if value_range is None else
                   parse_value_range(value_range), "method": method, "nodata": nodata}
        cfg = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None},
                                  vectors="geojson" if fmt == "geojson" else "none", probabilities=False,
                                  quicklook=False)
        cfg.check()
    except ValueError as e:
        raise HTTPException(422, api_words(str(e))) from None
    return cfg


def create_app(run_dir: Path, rt: Runtime, cfg: PredictConfig = PredictConfig(), limits: Limits = Limits(),
               log=print, access: Access = Access()) -> FastAPI:
    """The FastAPI app for one run (or a shipped model's name); the model is loaded once here."""
    from ..zoo import resolve_run

    run_dir = resolve_run(run_dir)
    predictor = Predictor(run_dir, cfg, rt, progress=False, log=log)
    model_lock = threading.Lock()
    metrics_file = RunFolder(run_dir).metrics()
    info = {"run": run_dir.name, "model": predictor.model_cfg.name,
            "parameters": predictor.run_info.get("parameters"),
            "in_channels": predictor.model_cfg.in_channels, "num_classes": predictor.model_cfg.num_classes,
            "image_size": predictor.image_size, "recipe": predictor.recipe.to_dict(),
            "test_metrics": {k: v for k, v in metrics_file.items() if isinstance(v, (int, float, str))}
            if metrics_file else None,
            "scale": predictor.auto_scale, "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                                                      "max_queue": limits.max_queue}}
    queue = Queue()
    metrics = Metrics(queue)

    app = FastAPI(title="unetseg", version="1", summary="Water segmentation with a trained U-Net",
                  description="Upload an image (PNG, JPEG, TIFF or GeoTIFF); get the water mask, an overlay, "
                              "the water fraction and, for georeferenced images, the water area, or the mask "
                              "GeoTIFF and the water polygons. Errors are all {status, detail}. With "
                              "`serve --token`, /v1/* needs `Authorization: Bearer TOKEN`.",
                  docs_url=None, redoc_url=None)  # Swagger UI and ReDoc load from a CDN: blank offline
    app.state.predictor = predictor

    # outermost first: log everything, then CORS, the token, the queue, the body size
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    app.add_middleware(QueueLimit, max_queue=limits.max_queue, queue=queue)  # a busy server reads no body
    app.add_middleware(TokenCheck, token=access.token)
    if access.cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[access.cors_origin], allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])
    app.add_middleware(AccessLog, log=log, log_format=access.log_format, metrics=metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        return JSONResponse({"status": e.status_code, "detail": str(e.detail)}, e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg', 'invalid')}"
                 for err in e.errors()]
        return JSONResponse({"status": 422, "detail": "; ".join(parts) or "invalid request"}, 422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):
        log(f"error: {request.url.path}: {type(e).__name__}: {first_line(e)}")
        return JSONResponse({"status": 500, "detail": f"internal error ({type(e).__name__})"}, 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("unetseg.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health", response_model=Health, responses=_problems(500))
    def health() -> Health:
        return Health(status="ok", run=run_dir.name)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelInfo, responses=_problems(401, 500))
    def model() -> ModelInfo:
        return ModelInfo(**info)

    files_200 = {200: {"description": "format=json: the figures and the chosen PNGs; geotiff: the mask GeoTIFF "
                                      "(Cloud-Optimized, the upload's CRS and transform; 0 land, 1 water, 255 "
                                      "no-data); geojson: the water polygons with their areas (RFC 7946)",
                       "content": {"image/tiff": {"schema": {"type": "string", "format": "binary"}},
                                   "application/geo+json": {"schema": {"type": "object"}}}}}

    @app.post("/v1/segment", response_model=Segmentation,
              responses={**files_200, **_problems(401, 413, 415, 422, 500, 503)})
    def segment(request: Request,
                image: UploadFile = File(..., description="PNG, JPEG or TIFF/GeoTIFF bytes"),
                threshold: float = Query(cfg.threshold, gt=0, lt=1, description="water probability cut"),
                tta: Literal["none", "flips", "d4"] | None = Query(None, description="test-time augmentation "
                                                                                     "(default: none)"),
                scale: str | None = Query(None, description="model pixels per input pixel: auto (default), fit, "
                                                            "or a number from 0.01 to 16 (predict --scale)"),
                bands: str | None = Query(None, description="1-based raster bands in the model's channel order, "
                                                            "e.g. 4,3,2 (predict --bands)"),
                value_range: str | None = Query(None, description="raw values mapped to 0..255: auto (default), "
                                                                  "percentile or LO,HI, e.g. 1000,5000 for L2A "
                                                                  "(predict --value-range)"),
                nodata: float | None = Query(None, description="a value that marks no-data where every band has "
                                                               "it, besides what the file declares, e.g. 0 for "
                                                               "an 8-bit scene's black fill (predict --nodata)"),
                method: Literal["unet", "unet+ndwi", "unet+mndwi"] | None = Query(
                    None, description="unet (default): the model alone; unet+ndwi or unet+mndwi: a multi-band "
                                      "GeoTIFF's water index as well, water where either finds it (predict --method)"),
                format: Literal["json", "geotiff", "geojson"] = Query(
                    "json", description="json; or, for a TIFF upload, geotiff (the mask) or geojson (polygons)"),
                outputs: str = Query("mask", description="format=json: the PNGs to include, comma-separated from "
                                                         "mask, overlay, probability, image; or none")):
        pictures = [o for o in outputs.replace(" ", "").split(",") if o and o != "none"]
        unknown = [o for o in pictures if o not in PICTURES]
        if unknown:
            raise HTTPException(422, f"outputs={outputs!r}: choose from {', '.join(PICTURES)} (or none)")
        settings = request_settings(cfg, threshold, tta, scale, bands, value_range, format, method, nodata)
        try:  # settings this model cannot take (a water index beside a multi-class model): before the upload
            variant = predictor.variant(settings)
        except ValueError as e:
            raise HTTPException(422, api_words(str(e))) from None
        variant.log = lambda m: None
        data = image.file.read(limits.max_bytes + 1)
        name = Path(image.filename or "upload").name or "upload"  # for messages only: never used as a path
        if len(data) > limits.max_bytes:
            raise HTTPException(413, f"{name}: upload is over the limit of {limits.max_bytes:,} bytes")
        if not data:
            raise HTTPException(422, f"{name}: empty upload")
        suffix = next((s for sig, s in SIGNATURES.items() if data.startswith(sig)), None)
        if suffix is None:
            raise HTTPException(415, f"{name}: not a PNG, JPEG or TIFF (by its content)")
        if format != "json" and suffix != ".tif":
            raise HTTPException(422, f"{name}: format={format} needs a TIFF or GeoTIFF upload")
        with tempfile.TemporaryDirectory(prefix="unetseg-serve-") as tmp:
            path = Path(tmp) / f"{safe_stem(name)}{suffix}"  # names the polygons' layer, as predict would
            path.write_bytes(data)
            try:
                h, w = _checked_shape(path, name)
                request.state.image_size = f"{w}x{h}"
                if format == "json":
                    reply = _segment(variant, path, pictures)
                else:
                    reply = _file(variant, path, Path(tmp) / "out", name, format)
            except DataError as e:
                raise HTTPException(422, api_words(str(e).replace(str(path), name))) from None
        metrics.images.inc()
        metrics.pixels.inc(h * w)
        return reply

    def _checked_shape(path: Path, name: str) -> tuple[int, int]:
        try:
            h, w = image_shape(path)
        except Exception as e:  # a damaged header: Pillow and GDAL raise many kinds
            raise DataError(f"{name}: not a readable image ({first_line(e)})") from None
        if h * w > limits.max_pixels:
            raise DataError(f"{name}: {w}x{h} = {w * h:,} pixels is over this server's limit of "
                            f"{limits.max_pixels:,}; use `unetseg predict` for large scenes")
        return h, w

    def _file(variant: Predictor, path: Path, out: Path, name: str, fmt: str) -> Response:
        """predict's own outputs for the upload: the mask GeoTIFF or the polygons, as a download."""
        rows: list[dict] = []
        with model_lock:
            variant.many([path], out, rows.append)
        if rows[0].get("error"):
            raise DataError(rows[0]["error"])
        suffix, media = FILES[fmt]
        download = f"{Path(name).stem or 'upload'}{suffix}"  # ASCII in filename=, the name as given in filename*=
        disposition = f"attachment; filename=\"{path.stem}{suffix}\"; filename*=UTF-8''{quote(download)}"
        return Response((out / f"{path.stem}{suffix}").read_bytes(), media_type=media,
                        headers={"Content-Disposition": disposition,
                                 "X-Water-Fraction": str(rows[0]["water_fraction"])})

    def _segment(variant: Predictor, path: Path, pictures: list[str]) -> Segmentation:
        t0 = time.perf_counter()
        source = variant.open(path)
        try:
            with model_lock:
                result = variant.segment(source)
            image = source.pixels if not isinstance(source, RasterSource) else \
                source.to_uint8(source.read(0, 0, source.height, source.width)[0])
            crs, notes = source.crs, source.notes + source.warnings
        finally:
            source.close()
        row, keep = result.row, result.keep
        ref = predictor.run_info.get("input_stats")
        if ref and row["unlike_training"] != "" and (note := unlike_note(row["unlike_training"], ref["threshold"])):
            notes.append(note)
        rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
        png = {}
        if "image" in pictures:
            png["image_png"] = _b64png(Image.fromarray(np.ascontiguousarray(rgb), "RGB"))
        if "mask" in pictures:
            png["mask_png"] = _b64png(result.mask_pixels())
        if "overlay" in pictures:
            png["overlay_png"] = _b64png(result.overlay(rgb))
        if "probability" in pictures:
            png["probability_png"] = _b64png(Image.fromarray(np.stack(
                [np.rint(keep.prob * 255).astype(np.uint8), keep.valid.astype(np.uint8) * 255], axis=-1), "LA"))
        return Segmentation(
            width=source.width, height=source.height, threshold=variant.cfg.threshold,
            water_fraction=row["water_fraction"], water_pixels=row["water_pixels"], valid_pixels=row["valid_pixels"],
            water_area_m2=row["water_area"] if row["area_unit"] == "m2" else None,
            crs=crs.to_string() if crs is not None else None, tiles=row["tiles"], scale=row["scale"],
            method=variant.cfg.method,
            index_threshold=row["index_threshold"] if row["index_threshold"] != "" else None,
            unlike_training=row["unlike_training"] if row["unlike_training"] != "" else None,
            unlike_threshold=round(ref["threshold"], 3) if ref else None,
            mean_entropy=row["mean_entropy"] if row["mean_entropy"] != "" else None,
            seconds=round(time.perf_counter() - t0, 3), notes=notes, **png)

    return app
