"""Batched inference on arrays of chips."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .runtime import Runtime


def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], channels_last in memory (a free permute)."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of the single channel (-> N, H, W) or softmax over classes (-> N, K, H, W)."""
    logits = logits.float()
    return torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


@torch.inference_mode()
def predict_chips(model: nn.Module, images: np.ndarray, rt: Runtime, batch_size: int = 32) -> np.ndarray:
    """Probabilities for a stack of chips: (N, H, W) float32 for a binary model, (N, K, H, W) otherwise."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        with rt.autocast():
            logits = model(to_input(images[i:i + batch_size], rt.device))
        out.append(probabilities(logits).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3], np.float32)


def to_classes(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class map from probabilities: threshold for binary (N, H, W), argmax for (N, K, H, W)."""
    return (probs > threshold).astype(np.uint8) if probs.ndim == 3 else probs.argmax(axis=1).astype(np.uint8)
