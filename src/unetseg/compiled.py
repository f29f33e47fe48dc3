"""torch.compile for the predict and evaluate paths: compiled once per input shape (the warm-up is timed and
reported), smaller batches padded to the compiled one, and eager PyTorch whenever compiling fails."""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from .errors import first_line


def compile_for_inference(model: nn.Module, backend: str | Callable = "inductor") -> nn.Module:
    """torch.compile with static shapes; with inductor, frozen weights (constants pre-packed for oneDNN and fused
    with their ReLU): for inference only."""
    options = {"freezing": True} if backend == "inductor" else None
    return torch.compile(model, backend=backend, dynamic=False, options=options)


class CompiledModel(nn.Module):
    """`model` through compile_for_inference; falls back to `model` itself if compiling fails."""

    def __init__(self, model: nn.Module, log: Callable[[str], None] = print, backend: str | Callable = "inductor"):
        super().__init__()
        self.eager = model
        self.compiled = compile_for_inference(model, backend)
        self.log = log
        self.shapes: set[tuple[int, ...]] = set()  # (C, H, W) compiled so far
        self.batch = 0  # the batch size compiled for; smaller batches are padded to it
        self.warmup_seconds = 0.0
        self.failed = ""  # why compiling failed (then everything runs eager)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.eager(x)
        n = x.shape[0]
        if n > self.batch:  # a bigger batch: compile for it (smaller ones are padded, sharing the graph)
            self.batch, self.shapes = n, set()
        if n < self.batch:  # zero images fill the batch; their outputs are dropped
            x = torch.cat([x, x.new_zeros((self.batch - n, *x.shape[1:]))]).contiguous(
                memory_format=torch.channels_last)
        shape = tuple(x.shape[1:])
        if shape in self.shapes:
            return self.compiled(x)[:n]
        t0 = time.perf_counter()
        try:
            out = self.compiled(x)[:n]
        except Exception as e:  # no C compiler, an unsupported op, a backend bug: eager still works
            cause = _root_cause(e)
            self.failed = first_line(cause, 200)
            self.log(f"torch.compile failed ({first_line(cause)}); running eager")
            return self.eager(x[:n])
        seconds = time.perf_counter() - t0
        self.warmup_seconds += seconds
        self.shapes.add(shape)
        self.log(f"compiled for {self.batch} x {' x '.join(map(str, shape))} in {seconds:.1f} s (once per process)")
        return out


def _root_cause(e: BaseException) -> BaseException:
    """The innermost exception: dynamo wraps the compiler's own error in BackendCompilerFailed."""
    while getattr(e, "inner_exception", None) or e.__cause__:
        e = getattr(e, "inner_exception", None) or e.__cause__
    return e


def maybe_compile(model: nn.Module, compile: bool, log: Callable[[str], None] = print) -> nn.Module:
    """The model itself, or wrapped in CompiledModel when `compile` is set."""
    return CompiledModel(model, log) if compile else model


def warmup_seconds(model: nn.Module) -> float | None:
    """Seconds spent compiling (None for an eager model)."""
    return round(model.warmup_seconds, 3) if isinstance(model, CompiledModel) else None

