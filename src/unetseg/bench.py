"""Measurements shared by the bench scripts: matmul roofline and training-step throughput."""

from __future__ import annotations

import statistics
import time

import torch

from .augment import Augment, AugmentConfig
from .config import ModelConfig, Recipe
from .models import build_model
from .train import loss_fn

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
                 cfg: ModelConfig = ModelConfig(), augment: AugmentConfig | None = None, loss: str = "bce"):
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(cfg).to(memory_format=fmt).train()
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
        t = time.perf_counter()
        x, y = self.augment(self.x, self.y) if self.augment else (self.x, self.y)
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.model(x)
        loss = loss_fn(logits, y, self.loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t


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
