"""Measurements shared by the bench scripts: matmul roofline and training-step throughput."""

from __future__ import annotations

import statistics
import time

import torch

from .augment import Augment
from .compiled import compile_for_inference
from .config import AugmentConfig
from .config import ModelConfig, Recipe
from .inference import prepare_for_inference
from .models import build_model
from .runtime import Runtime
from .training import loss_fn

SEED_TRAIN_GFLOP = 20.0  # per 128 px training image: 3x the 6.67 GFLOP forward of the seed U-Net


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` speed of an n x n matmul in `dtype`, in GFLOP/s."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class TrainStep:
    """One optimiser step (augmentation included, if any) on a fixed random batch, in a given layout and precision."""

    def __init__(self, precision: str, channels_last: bool, batch: int = 32, size: int = 128,
                 cfg: ModelConfig = ModelConfig(), augment: AugmentConfig | None = None, loss: str = "bce",
                 compiled: bool = False):
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(cfg).to(memory_format=fmt).train()
        self.forward = torch.compile(self.model) if compiled else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x = torch.rand(batch, cfg.in_channels, size, size).contiguous(memory_format=fmt)
        self.y = (torch.rand(batch, size, size) > 0.5).long()
        self.augment = Augment(augment, cfg.in_channels) if augment else None
        self.dtype = {"bf16": torch.bfloat16}.get(precision)
        self.batch, self.loss = batch, loss

    @classmethod
    def for_recipe(cls, recipe: Recipe, precision: str, channels_last: bool = True) -> "TrainStep":
        return cls(precision, channels_last, recipe.batch_size, recipe.image_size, recipe.model, recipe.augment,
                   recipe.loss)

    def __call__(self) -> float:
        return self.step(self.x, self.y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimiser step on (x, y); its seconds."""
        t = time.perf_counter()
        x, y = self.augment(x, y) if self.augment else (x, y)
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.forward(x)
        loss = loss_fn(logits, y, self.loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t


class InferStep:
    """One forward pass of a fixed batch in a precision and layout: `engine` torch (predict and evaluate's eager
    model), plain (PyTorch's own layers, nothing packed) or compiled (their --compile)."""

    def __init__(self, model: torch.nn.Module, precision: str, channels_last: bool, batch: int = 32, size: int = 128,
                 engine: str = "torch"):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        channels = next(p for p in model.parameters() if p.ndim == 4).shape[1]
        self.x = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
        self.x = self.x.contiguous(memory_format=fmt)
        # as predict and evaluate load a model (load_for_inference); "plain" keeps PyTorch's own layers
        self.rt = Runtime(torch.device("cpu"), precision)
        self.model = prepare_for_inference(model, self.rt, prepack=engine == "torch").to(memory_format=fmt)
        if engine == "compiled":  # as predict/evaluate --compile
            self.model = compile_for_inference(self.model)
        self.batch = batch

    def __call__(self) -> float:
        t = time.perf_counter()
        with torch.inference_mode(), self.rt.autocast():
            self.model(self.x)
        return time.perf_counter() - t


def forward_gflop(model: torch.nn.Module, channels: int, size: int) -> float:
    """GFLOP of one image's forward pass, counted by PyTorch's FlopCounterMode (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.rand(1, channels, size, size))
    return counter.get_total_flops() / 1e9


def data_wait_fraction(step: TrainStep, chips: int = 256, steps: int = 8) -> float:
    """Share of a training step spent getting the batch ready (indexing uint8 chips, conversion to the
    model's input), measured on the real input path: chips in memory, as the training loop has them."""
    from .inference import to_input

    size, channels = step.x.shape[-1], step.x.shape[1]
    images = torch.randint(0, 256, (chips, size, size, channels), dtype=torch.uint8)
    masks = torch.randint(0, 2, (chips, size, size), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    waiting = total = 0.0
    for i in range(steps + 1):
        t0 = time.perf_counter()
        idx = torch.randperm(chips, generator=gen)[: step.batch]
        x, y = to_input(images[idx], torch.device("cpu")), masks[idx].long()
        t1 = time.perf_counter()
        step.step(x, y)
        if i:  # the first step warms up
            waiting += t1 - t0
            total += time.perf_counter() - t0
    return waiting / total


def interleaved_images_per_s(steps: dict[str, TrainStep], rounds: int = 3, warmup: int = 1) -> dict[str, float]:
    """Images/s of each step, timed in alternation (A B A B ...) so noise hits all alike; median of rounds."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(step())
    return {k: steps[k].batch / statistics.median(v) for k, v in times.items()}
