"""Checkpoints: safetensors weights + a JSON of everything needed to rebuild and trust them."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import ModelConfig
from .data.errors import DataError
from .io import atomic_path, sha256_file, write_text_atomic
from .models import build_model


def library_versions() -> dict[str, str]:
    import numpy
    import torchmetrics

    from . import __version__

    return {"unetseg": __version__, "torch": torch.__version__, "torchmetrics": torchmetrics.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_checkpoint(run_dir: Path, tag: str, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write RUN/tag.safetensors and RUN/tag.json atomically; the JSON carries the weights' SHA-256."""
    weights = run_dir / f"{tag}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
        digest = sha256_file(tmp)
    body = {**info, "weights": weights.name, "sha256": digest, "versions": library_versions()}
    write_text_atomic(run_dir / f"{tag}.json", json.dumps(body, indent=1, default=str))
    return weights


def read_checkpoint_info(path: Path) -> dict[str, Any]:
    meta = path.with_suffix(".json")
    if not meta.exists():
        raise DataError(f"{meta}: checkpoint description missing (expected beside {path.name})")
    try:
        return json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta}: not valid JSON ({e.msg} at line {e.lineno})") from None


def resolve_checkpoint(run_or_file: str | Path, tag: str = "best") -> Path:
    p = Path(run_or_file)
    if p.is_dir():
        p = p / f"{tag}.safetensors"
    if not p.exists():
        raise DataError(f"{p}: no such checkpoint")
    return p


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its JSON, verify the SHA-256, load the weights; the model is in eval mode."""
    info = read_checkpoint_info(path)
    if info.get("sha256") and sha256_file(path) != info["sha256"]:
        raise DataError(f"{path}: SHA-256 does not match {path.with_suffix('.json').name} (corrupt or altered)")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({e})") from None
    model = build_model(ModelConfig(**info["recipe"]["model"]))
    model.load_state_dict(state)
    return model.to(device).eval(), info
