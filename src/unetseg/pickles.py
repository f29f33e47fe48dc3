"""Pickles, the one file format that can run code when read: refused everywhere, except `unetseg import` (and
--encoder-weights), which read plain tensors with torch.load(weights_only=True)."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import DataError, first_line

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def refuse_pickle(path: Path) -> None:
    """Pickled files (torch.save, .pt/.pth/.ckpt) can run code when loaded: never here. A safetensors file
    starts with its header's length (8 bytes) and the header's '{'; a pickle with 0x80, torch.save's zip with PK."""
    with open(path, "rb") as f:
        head = f.read(9)
    safetensors = len(head) == 9 and head[8:9] == b"{"
    if path.suffix.lower() in PICKLE_SUFFIXES or (not safetensors and head[:1] in (b"\x80", b"P")):
        raise DataError(f"{path}: a pickled PyTorch file; unetseg loads safetensors only (pickles can run code). "
                        "Convert it with `unetseg import FILE --out RUN`, which reads plain tensors only")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a torch.save file, read with weights_only=True: plain tensors and containers only, so a
    pickle that would run code is refused before anything in it runs. The explicit import path, never implicit."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # refused globals (code), not a pickle, truncated zip
        raise DataError(f"{path}: not a plain PyTorch state dict; refused ({type(e).__name__}: "
                        f"{first_line(e, 100)})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: expected a state dict (parameter name -> tensor), found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DistributedDataParallel's prefix
