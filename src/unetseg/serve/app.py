"""`unetseg serve`: a trained run over HTTP (FastAPI), and the web page at /.

POST /v1/segment takes the image bytes (multipart field `image`) and never a path: the bytes go to a
temporary file the server names, are checked (size, type by content, dimensions from the header) before
any pixel is decoded, and run through the same tiled pipeline as `unetseg predict`. The model is shared by
all requests; one forward pass runs at a time (the intra-op threads already use every core).
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, Field

from ..config import PredictConfig
from ..errors import DataError, first_line
from ..data.files import image_shape
from ..predict.pipeline import Predictor
from ..data.sources import RasterSource
from ..runfolder import RunFolder
from ..runtime import Runtime

# what the first bytes of an upload must be, and the suffix its temporary file gets
SIGNATURES = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif", b"MM\x00*": ".tif",
              b"II+\x00": ".tif", b"MM\x00+": ".tif"}


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 32 * 1024 * 1024  # 32 MiB per upload
    max_pixels: int = 4096 * 4096  # whole-image decode: about 16.8 megapixels
    max_queue: int = 4  # segment requests in the server at once (running or waiting); 503 beyond


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
    tiles: int
    seconds: float
    image_png: str = Field(description="base64 PNG: the image as the model saw it (RGB)")
    mask_png: str = Field(description="base64 PNG: water 255, land 0")
    overlay_png: str = Field(description="base64 PNG: the image with water tinted blue")
    probability_png: str = Field(description="base64 PNG, grey + alpha: water probability x 255; alpha 0 = no-data")


class Problem(BaseModel):
    detail: str


ERRORS = {413: {"model": Problem, "description": "upload too large"},
          415: {"model": Problem, "description": "not a PNG, JPEG or TIFF"},
          422: {"model": Problem, "description": "empty, unreadable, or too many pixels"},
          503: {"model": Problem, "description": "busy: --max-queue requests in progress; retry after the "
                                                 "Retry-After header's seconds"}}


def _b64png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    return base64.b64encode(buf.getvalue()).decode()


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
            return await self._refuse(send, f"upload of {int(length):,} bytes is over the limit of "
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
                await self._refuse(send, e.detail)

    @staticmethod
    async def _refuse(send, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(StarletteHTTPException):
    """A body over the limit, found while reading it."""


class QueueLimit:
    """ASGI middleware: at most `max_queue` requests to `paths` in the server at once (running or waiting for
    the model); one more is answered 503 with Retry-After before its body is read, so memory stays bounded
    whatever the number of clients. Retry-After is the recent mean request time times the queue, in whole
    seconds."""

    def __init__(self, app, max_queue: int, paths: tuple[str, ...] = ("/v1/segment",)):
        self.app, self.max_queue, self.paths = app, max_queue, paths
        self.inside, self.mean_seconds = 0, 1.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            return await self.app(scope, receive, send)
        if self.inside >= self.max_queue:
            wait = max(1, round(self.mean_seconds * self.max_queue))
            body = json.dumps({"detail": f"busy: {self.inside} request(s) in progress, the most this server "
                                         f"queues (--max-queue {self.max_queue}); retry in {wait} s"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(wait).encode()),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        self.inside += 1  # the event loop is one thread: no lock needed
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.inside -= 1
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * (time.perf_counter() - t0)


def create_app(run_dir: Path, rt: Runtime, cfg: PredictConfig = PredictConfig(), limits: Limits = Limits(),
               log=print) -> FastAPI:
    """The FastAPI app for one run (or a shipped model's name); the model is loaded once here."""
    from ..zoo import resolve_run

    run_dir = resolve_run(run_dir)
    predictor = Predictor(run_dir, cfg, rt, progress=False, log=log)
    model_lock = threading.Lock()
    metrics = RunFolder(run_dir).metrics()
    info = {"run": run_dir.name, "model": predictor.model_cfg.name,
            "parameters": predictor.run_info.get("parameters"),
            "in_channels": predictor.model_cfg.in_channels, "num_classes": predictor.model_cfg.num_classes,
            "image_size": predictor.image_size, "recipe": predictor.recipe.to_dict(),
            "test_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))} if metrics else None,
            "scale": predictor.auto_scale, "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels,
                                                      "max_queue": limits.max_queue}}

    app = FastAPI(title="unetseg", version="1", summary="Water segmentation with a trained U-Net",
                  description="Upload an image (PNG, JPEG, TIFF or GeoTIFF); get the water mask, an overlay, "
                              "the water fraction and, for georeferenced images, the water area.")

    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    app.add_middleware(QueueLimit, max_queue=limits.max_queue)  # outermost: a busy server reads no body
    app.state.predictor = predictor

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("unetseg.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", run=run_dir.name)

    @app.get("/v1/model", response_model=ModelInfo)
    def model() -> ModelInfo:
        return ModelInfo(**info)

    @app.post("/v1/segment", response_model=Segmentation, responses=ERRORS)
    def segment(image: UploadFile = File(..., description="PNG, JPEG or TIFF/GeoTIFF bytes"),
                threshold: float = Query(cfg.threshold, gt=0, lt=1, description="water probability cut")):
        data = image.file.read(limits.max_bytes + 1)
        name = Path(image.filename or "upload").name or "upload"  # for messages only: never used as a path
        if len(data) > limits.max_bytes:
            raise HTTPException(413, f"{name}: upload is over the limit of {limits.max_bytes:,} bytes")
        if not data:
            raise HTTPException(422, f"{name}: empty upload")
        suffix = next((s for sig, s in SIGNATURES.items() if data.startswith(sig)), None)
        if suffix is None:
            raise HTTPException(415, f"{name}: not a PNG, JPEG or TIFF (by its content)")
        with tempfile.TemporaryDirectory(prefix="unetseg-serve-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                return _segment(path, name, threshold)
            except DataError as e:
                raise HTTPException(422, str(e).replace(str(path), name)) from None

    def _segment(path: Path, name: str, threshold: float) -> Segmentation:
        try:
            h, w = image_shape(path)
        except Exception as e:  # a damaged header: Pillow and GDAL raise many kinds
            raise DataError(f"{name}: not a readable image ({first_line(e)})") from None
        if h * w > limits.max_pixels:
            raise DataError(f"{name}: {w}x{h} = {w * h:,} pixels is over this server's limit of "
                            f"{limits.max_pixels:,}; use `unetseg predict` for large scenes")
        t0 = time.perf_counter()
        source = predictor.open(path)
        try:
            with model_lock:
                result = predictor.segment(source, threshold)
            image = source.pixels if not isinstance(source, RasterSource) else \
                source.to_uint8(source.read(0, 0, source.height, source.width)[0])
            crs = source.crs
        finally:
            source.close()
        row, keep = result.row, result.keep
        prob = Image.fromarray(np.stack([np.rint(keep.prob * 255).astype(np.uint8),
                                         keep.valid.astype(np.uint8) * 255], axis=-1), "LA")
        ref = predictor.run_info.get("input_stats")
        rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
        return Segmentation(
            width=source.width, height=source.height, threshold=threshold,
            water_fraction=row["water_fraction"], water_pixels=row["water_pixels"], valid_pixels=row["valid_pixels"],
            water_area_m2=row["water_area"] if row["area_unit"] == "m2" else None,
            crs=crs.to_string() if crs is not None else None, tiles=row["tiles"],
            unlike_training=row["unlike_training"] if row["unlike_training"] != "" else None,
            unlike_threshold=round(ref["threshold"], 3) if ref else None,
            mean_entropy=row["mean_entropy"] if row["mean_entropy"] != "" else None,
            seconds=round(time.perf_counter() - t0, 3), image_png=_b64png(Image.fromarray(rgb, "RGB")),
            mask_png=_b64png(result.mask_png()), overlay_png=_b64png(result.overlay_png(rgb)),
            probability_png=_b64png(prob))

    return app
