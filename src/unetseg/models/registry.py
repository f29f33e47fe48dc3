"""Models by name: `build_model(ModelConfig(name=...))`."""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from ..config import ModelConfig
from .ternausnet import TernausNet
from .unet import UNet

Builder = Callable[[ModelConfig], nn.Module]
MODELS: dict[str, Builder] = {
    "unet": UNet,  # the seed: no batch norm unless the config asks
    "unet-bn": lambda cfg: UNet(_with(cfg, batch_norm=True)),
    "ternausnet": TernausNet,  # VGG11 encoder; pretrained weights only from a local file (--encoder-weights)
}


def _with(cfg: ModelConfig, **changes) -> ModelConfig:
    return dataclasses.replace(cfg, **changes)


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.name not in MODELS:
        raise ValueError(f"unknown model {cfg.name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[cfg.name](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
