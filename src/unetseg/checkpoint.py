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
from .errors import DataError, first_line
from .atomic import atomic_path, sha256_file, strict_json
from .models import build_model
from .pickles import read_state_dict, refuse_pickle
from .runtime import Runtime


def library_versions() -> dict[str, str]:
    import numpy
    import torchmetrics

    from .version import __version__

    return {"unetseg": __version__, "torch": torch.__version__, "torchmetrics": torchmetrics.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_pair(run_dir: Path, tag: str, tensors: dict[str, torch.Tensor], body: dict[str, Any]) -> Path:
    """Write RUN/tag.safetensors and RUN/tag.json; the JSON carries the weights' SHA-256.

    Both are written in full to temporary files before either replaces its old version, so a full disk or
    any other failure while writing leaves the previous pair as it was (and says so)."""
    weights, meta = Path(run_dir) / f"{tag}.safetensors", Path(run_dir) / f"{tag}.json"
    previous = _describe_previous(meta)
    try:
        with atomic_path(weights) as tmp_weights, atomic_path(meta) as tmp_meta:
            save_file(tensors, str(tmp_weights))
            digest = sha256_file(tmp_weights)
            tmp_meta.write_text(strict_json({**body, "weights": weights.name, "sha256": digest,
                                             "versions": library_versions()}, default=str))
    except OSError as e:
        raise DataError(f"{weights}: could not be saved ({e.strerror or e}); {previous}") from None
    return weights


def _describe_previous(meta: Path) -> str:
    try:
        epoch = json.loads(meta.read_text()).get("epoch")
    except (OSError, ValueError):
        return "there was no previous one"
    return f"the previous one (epoch {epoch}) is intact" if epoch is not None else "the previous one is intact"


def save_checkpoint(run_dir: Path, tag: str, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write RUN/tag.safetensors and RUN/tag.json atomically; the JSON carries the weights' SHA-256."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_pair(run_dir, tag, state, info)


def load_pair(path: Path, device: torch.device | str = "cpu",
              missing: str = "no such checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) of a pair written by save_pair, after checking the SHA-256: a flipped byte or a
    truncated file is refused with a clear message. Only safetensors is read: pickles are never loaded."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {missing}")
    refuse_pickle(path)
    info = read_checkpoint_info(path)
    if not info.get("sha256"):
        raise DataError(f"{path.with_suffix('.json')}: no SHA-256 of the weights; refusing to load unverified "
                        "weights (import them with `unetseg import`)")
    if sha256_file(path) != info["sha256"]:
        raise DataError(f"{path}: SHA-256 does not match {path.with_suffix('.json').name} (corrupt, truncated "
                        "or altered)")
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    return tensors, info


def read_checkpoint_info(path: Path) -> dict[str, Any]:
    meta = path.with_suffix(".json")
    if not meta.exists():
        raise DataError(f"{meta}: checkpoint description missing (expected beside {path.name})")
    try:
        return json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta}: not valid JSON ({e.msg} at line {e.lineno})") from None


def import_weights(source: Path, out: Path, recipe: Any, overwrite: bool = False) -> dict[str, Any]:
    """`unetseg import`: a torch.save state dict -> a run folder (best/last safetensors + JSON, run.json) that
    evaluate, predict and export accept."""
    from .atomic import check_output_dir

    state = read_state_dict(source)
    model = build_model(recipe.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines()[1:3]]
        raise DataError(f"{source}: does not fit {recipe.model.name} with base width {recipe.model.base_width}, "
                        f"{recipe.model.in_channels} channel(s), {recipe.model.num_classes} class(es): "
                        + " ".join(lines)[:200]) from None
    check_output_dir(out, overwrite)
    info = {"epoch": None, "recipe": recipe.to_dict(), "imported_from": str(Path(source).resolve()),
            "source_sha256": sha256_file(source)}
    for tag in ("best", "last"):
        save_checkpoint(out, tag, model, info)
    from .runfolder import RunFolder

    RunFolder(out).write_info({"data": "", "recipe": recipe.to_dict(), "imported_from": info["imported_from"]})
    return info


def resolve_checkpoint(run_or_file: str | Path, tag: str = "best") -> Path:
    from .runfolder import RunFolder

    p = Path(run_or_file)
    if p.is_dir():
        p = RunFolder(p).checkpoint(tag)
    if not p.exists():
        raise DataError(f"{p}: no such checkpoint")
    return p


ARCHITECTURE = ("name", "in_channels", "num_classes", "multilabel", "base_width", "depth", "batch_norm")


def initial_weights(run: str | Path, model: ModelConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The best weights of a run (or of a shipped model, by name) to start training from, and a record of
    where they came from; the run's model must be built as `model` is."""
    from .zoo import resolve_run

    path = resolve_checkpoint(resolve_run(run), "best")
    state, info = load_pair(path)
    theirs = ModelConfig(**info["recipe"]["model"])  # older runs leave out fields that have their defaults
    differ = [f"{k} {getattr(theirs, k)} (--init) against {getattr(model, k)}" for k in ARCHITECTURE
              if getattr(theirs, k) != getattr(model, k)]
    if differ:
        raise DataError(f"{path}: --init needs the same model as this training's; differs in " + ", ".join(differ) +
                        " (match it with --model / --base-width, or train on data with the same bands and classes)")
    return state, {"run": str(run), "checkpoint": str(Path(path).resolve()), "sha256": info["sha256"],
                   "epoch": info.get("epoch")}


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its JSON, verify the SHA-256, load the weights; the model is in eval mode."""
    state, info = load_pair(path, device)
    try:
        model = build_model(ModelConfig(**info["recipe"]["model"]))
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        raise DataError(f"{path}: the weights do not match the model described in {path.with_suffix('.json').name} "
                        f"({first_line(e)})") from None
    return model.to(device).eval(), info


def load_for_inference(path: Path, rt: Runtime, prepack: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """load_checkpoint as predict, serve, the API and evaluate run the model: batch norm folded into the
    convolutions, their weights stored in the autocast dtype and, on the CPU unless `prepack` is off (a model
    to compile: inductor packs its own), packed for oneDNN with their ReLU fused (inference.py; for inference
    only: the state dict is no longer the checkpoint's)."""
    from .inference import prepare_for_inference

    model, info = load_checkpoint(path, rt.device)
    return prepare_for_inference(model, rt, prepack), info
