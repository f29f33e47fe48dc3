"""What a model's output channels mean, in one place: the loss, the probabilities, the classes.

Outputs are always (N, K, H, W). K = 1 is a water model: one sigmoid channel, two classes (background 0,
water 1). K > 1 is a softmax over K classes. Pixels labelled IGNORE count in no loss and no score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = 255  # a label value left out of every loss and score (pixels of scenes with no label, or no-data)


@dataclass(frozen=True)
class Head:
    outputs: int = 1  # the model's output channels, K

    @property
    def binary(self) -> bool:
        return self.outputs == 1

    @property
    def num_classes(self) -> int:
        """Classes in the class maps and the confusion matrix: 2 for a water model."""
        return max(2, self.outputs)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) logits -> (N, K, H, W) float32: sigmoid for one channel, softmax over several."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)

    def classes(self, probs: np.ndarray | torch.Tensor, threshold: float = 0.5):
        """(..., K, H, W) probabilities -> (..., H, W) class indices (uint8 for arrays): water where the one
        channel is above `threshold`; else the most probable class."""
        k = probs.shape[-3]
        if isinstance(probs, np.ndarray):
            c = probs[..., 0, :, :] > threshold if k == 1 else probs.argmax(axis=-3)
            return c.astype(np.uint8)
        return (probs[..., 0, :, :] > threshold).long() if k == 1 else probs.argmax(dim=-3)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """(K, H, W) -> (H, W): the water probability, or the winning class's probability."""
        return probs[0] if probs.shape[0] == 1 else probs.max(axis=0)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, kind: str = "bce") -> torch.Tensor:
        """BCE on the one channel (target in {0, 1}) or cross-entropy over the classes; `+dice` adds soft Dice."""
        logits = logits.float()
        known = target != IGNORE
        every = bool(known.all())
        weight = None if every else known[:, None].float()
        if self.binary:
            t = torch.where(known, target, 0).float()
            if every:
                loss = F.binary_cross_entropy_with_logits(logits[:, 0], t)
            else:
                per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], t, reduction="none")
                loss = (per_pixel * known).sum() / known.sum().clamp(min=1)
            if kind.endswith("+dice"):
                loss = loss + soft_dice_loss(torch.sigmoid(logits), t[:, None], weight=weight)
            return loss
        loss = F.cross_entropy(logits, target.long(), ignore_index=IGNORE)
        if kind.endswith("+dice"):
            onehot = F.one_hot(torch.where(known, target, 0).long(), self.outputs).permute(0, 3, 1, 2).float()
            loss = loss + soft_dice_loss(torch.softmax(logits, 1), onehot, weight=weight)
        return loss


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1.0,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - soft Dice over the batch, averaged over the classes (probs, onehot: (N, K, H, W); weight (N, 1, H, W)
    leaves pixels out where it is 0)."""
    if weight is not None:
        probs, onehot = probs * weight, onehot * weight
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    return 1 - ((2 * inter + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)).mean()


def head_of(model_or_outputs) -> Head:
    """The head of a ModelConfig (num_classes), or of a number of output channels."""
    return Head(int(getattr(model_or_outputs, "num_classes", model_or_outputs)))
