"""Resumable training state: everything the loop needs to go on exactly where it stopped, in safetensors
(tensors) + JSON (the rest), never pickle. Also the Ctrl-C / SIGTERM handler that stops at a step boundary."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import load_pair, save_pair
from .progress import on_terminal

RESUME_TAG = "resume"


def pack(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """A JSON-able copy of `obj` with every tensor moved into `tensors` (keyed by its path) and left as a reference.
    Dicts with non-string keys (optimizer state is keyed by parameter index) and tuples are kept as such."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {"__items__": [[pack(k, tensors, f"{prefix}.k{i}"), pack(v, tensors, f"{prefix}.{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{prefix or 'state'}: cannot store a {type(obj).__name__} in a training state")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of pack."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


def save_training_state(run_dir: Path, state: dict[str, Any]) -> Path:
    """RUN/resume.safetensors + resume.json, both replaced together, the JSON carrying the weights' SHA-256."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = pack(state, tensors)
    return save_pair(run_dir, RESUME_TAG, tensors, {"epoch": state["epoch"], "step": state["step"],
                                                     "state": skeleton})


def load_training_state(run_dir: Path) -> dict[str, Any]:
    """The state saved by save_training_state, verified against its SHA-256."""
    tensors, body = load_pair(Path(run_dir) / f"{RESUME_TAG}.safetensors",
                              missing="no resumable training state (it is written at the end of every epoch and "
                                      "on Ctrl-C)")
    return unpack(body["state"], tensors)


def remove_training_state(run_dir: Path) -> None:
    for suffix in (".safetensors", ".json"):
        (Path(run_dir) / f"{RESUME_TAG}{suffix}").unlink(missing_ok=True)


class StopRequest:
    """While active, Ctrl-C (SIGINT) and SIGTERM only set `asked`: the loop stops at the next step boundary and
    saves. A second Ctrl-C interrupts at once. Outside the main thread (where signals cannot be caught) it does
    nothing."""

    def __init__(self, log: Callable[[str], None] = print):
        self.asked = False
        self.log = log
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.asked = True
        off_the_bar = "\n" if on_terminal() else ""  # a terminal's progress bar holds the line; a log's does not
        self.log(f"{off_the_bar}{signal.Signals(signum).name}: stopping after this step and saving a resumable state "
                 "(Ctrl-C again to quit at once)")

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
