"""Export a run's model to ONNX (dynamic batch and image size), and run an exported model with onnxruntime."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import load_checkpoint, resolve_checkpoint
from .errors import DataError, first_line
from .atomic import atomic_path, check_new_file
from .config import ModelConfig
from .head import Head, head_of

FORMATS = ("onnx",)
OPSET = 18


def default_onnx_path(run_dir: Path, checkpoint: str = "best") -> Path:
    """RUN/<checkpoint>.onnx; for a shipped model (installed inside the package, perhaps read-only), the user's
    cache: $UNETSEG_CACHE/onnx/<model folder>-<checkpoint>.onnx."""
    from .zoo import is_shipped

    run_dir = Path(run_dir)
    if is_shipped(run_dir):
        from .data.cache import default_cache_dir

        return default_cache_dir() / "onnx" / f"{run_dir.name}-{checkpoint}.onnx"
    return run_dir / f"{checkpoint}.onnx"


def export_onnx(run_dir: Path, out: Path | None = None, checkpoint: str = "best", overwrite: bool = False,
                check_size: int = 96) -> dict:
    """RUN/<checkpoint>.onnx in fp32 with dynamic batch, height and width; checked against PyTorch before it is
    renamed into place. Returns what was written and the parity measured."""
    import onnx

    from .zoo import resolve_run

    run_dir = resolve_run(run_dir)  # a run folder, or a shipped model by its name
    weights = resolve_checkpoint(run_dir, checkpoint)
    out = Path(out) if out else default_onnx_path(run_dir, checkpoint)
    check_new_file(out, overwrite)
    model, info = load_checkpoint(weights, "cpu")
    model = model.float().eval()
    channels = int(info["recipe"]["model"]["in_channels"])
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        try:
            export_model(model, tmp, channels, check_size)
        except DataError as e:
            raise DataError(f"{weights}: {e}") from None
        proto = onnx.load(str(tmp))
        meta = {"unetseg_model": json.dumps(info["recipe"]["model"]), "unetseg_checkpoint": weights.name,
                "unetseg_sha256": info.get("sha256", ""), "unetseg_input": "float32 NCHW, RGB/bands (or grey) scaled to 0..1"}
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))
        parity = check_parity(model, tmp, channels, head=head_of(ModelConfig(**info["recipe"]["model"])))
        if parity["max_abs_logit_diff"] > 1e-3 or parity["mask_agreement"] < 0.999:
            raise DataError(f"{out}: exported model disagrees with PyTorch ({parity}); not written")
    return {"path": str(out), "seconds": round(time.perf_counter() - t0, 1), **parity}


@contextlib.contextmanager
def _quiet():
    """The exporter prints its progress and warns about torchvision ops; unetseg reports the result instead."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_model(model: nn.Module, path: Path, channels: int, size: int = 96) -> None:
    """torch.onnx.export (dynamo) of an fp32 model with dynamic batch, height and width."""
    example = torch.rand(2, channels, size, size)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    try:
        with _quiet():
            torch.onnx.export(model.float().eval(), (example,), str(path), dynamo=True, dynamic_shapes={"x": dims},
                              input_names=["image"], output_names=["logits"], opset_version=OPSET, verbose=False,
                              external_data=False)  # one file: no '<name>.data' beside it (U-Nets are far below 2 GB)
    except Exception as e:  # the exporter raises many types; the message is what matters
        raise DataError(f"ONNX export failed ({first_line(e, 200)})") from None


def check_parity(model: nn.Module, onnx_path: Path, channels: int,
                 shapes: tuple[tuple[int, int, int], ...] = ((2, 96, 96), (1, 75, 130), (3, 128, 61)),
                 head: Head | None = None) -> dict:
    """Max |logit difference| and thresholded-mask agreement between PyTorch (fp32) and onnxruntime."""
    session = OnnxModel(onnx_path)
    worst, agree, total = 0.0, 0, 0
    gen = torch.Generator().manual_seed(0)
    for b, h, w in shapes:
        x = torch.rand(b, channels, h, w, generator=gen)
        with torch.inference_mode():
            ref = model.float()(x).numpy()
        got = session.run(x.numpy())
        worst = max(worst, float(np.abs(got - ref).max()))
        head = head or Head(ref.shape[1])
        a, r = (head.classes(head.probabilities(torch.from_numpy(v))) for v in (got, ref))
        agree += int((a == r).sum())
        total += a.numel()
    return {"max_abs_logit_diff": worst, "mask_agreement": agree / total}


def load_exported(run_dir: Path, checkpoint: str = "best") -> "OnnxModel":
    """RUN/<checkpoint>.onnx, refused if it was exported from other weights than RUN/<checkpoint>.safetensors."""
    path = default_onnx_path(run_dir, checkpoint)
    model = OnnxModel(path)
    weights = resolve_checkpoint(run_dir, checkpoint)
    expected = json.loads(weights.with_suffix(".json").read_text()).get("sha256", "")
    if model.metadata.get("unetseg_sha256", expected) != expected:
        raise DataError(f"{path}: exported from other weights than {weights.name}; export again with "
                        f"`unetseg export {run_dir} --overwrite`")
    return model


class OnnxModel(nn.Module):
    """An exported model behind the nn.Module call the rest of unetseg uses: NCHW float tensor in, logits out."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise DataError("--engine onnxruntime needs onnxruntime: pip install 'unetseg[export]'") from None
        if not Path(path).exists():
            raise DataError(f"{path}: no exported model (make it with `unetseg export RUN`)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types
            raise DataError(f"{path}: not a loadable ONNX model ({first_line(e, 160)})") from None
        self.input = self.session.get_inputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.float().contiguous().cpu().numpy()))
