"""What a model's output channels mean, in one place: the loss, the probabilities, the classes.

Outputs are always (N, K, H, W). K = 1 is a water model: one sigmoid channel, two classes (background 0,
water 1). K > 1 is a softmax over K classes, or, for multi-label data (classes that may overlap), K sigmoids
whose class maps are bit sets (bit k set where class k is). Pixels labelled IGNORE count in no loss and no score.
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
    multilabel: bool = False  # K sigmoids, classes may overlap

    @property
    def binary(self) -> bool:
        return self.outputs == 1

    @property
    def sigmoid(self) -> bool:
        return self.binary or self.multilabel

    @property
    def num_classes(self) -> int:
        """Classes in the class maps and the confusion matrix: 2 for a water model (multi-label: K, each scored
        against its absence)."""
        return max(2, self.outputs)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) logits -> (N, K, H, W) float32: sigmoids (one channel, or multi-label), else softmax."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)

    def classes(self, probs: np.ndarray | torch.Tensor, threshold: float = 0.5):
        """(..., K, H, W) probabilities -> (..., H, W) class indices (uint8 for arrays): water where the one
        channel is above `threshold`; multi-label: the bit set of the channels above it; else the most probable
        class."""
        k = probs.shape[-3]
        if self.multilabel:
            bits = (2 ** np.arange(k)).reshape(k, 1, 1)
            if isinstance(probs, np.ndarray):
                return ((probs > threshold) * bits).sum(axis=-3).astype(np.uint8)
            return ((probs > threshold).long() * torch.from_numpy(bits).to(probs.device)).sum(dim=-3)
        if isinstance(probs, np.ndarray):
            c = probs[..., 0, :, :] > threshold if k == 1 else probs.argmax(axis=-3)
            return c.astype(np.uint8)
        return (probs[..., 0, :, :] > threshold).long() if k == 1 else probs.argmax(dim=-3)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """(K, H, W) -> (H, W): the water probability, or the winning class's probability (multi-label: the
        most probable class's)."""
        return probs[0] if probs.shape[0] == 1 else probs.max(axis=0)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, kind: str = "bce",
             pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        """BCE on the one channel (target in {0, 1}), BCE per class on multi-label bit sets, or cross-entropy
        over the classes; `+dice` adds soft Dice. `pixel_weights` (N, H, W) weighs each pixel's BCE / CE
        (the U-Net paper's border weights); the mean is over the weights."""
        logits = logits.float()
        known = target != IGNORE
        every = bool(known.all())
        weight = None if every else known[:, None].float()
        w = None  # per-pixel weights of the BCE / CE terms, where pixels differ
        if pixel_weights is not None:
            w = pixel_weights.float() * known
        elif not every:
            w = known.float()
        if self.sigmoid:
            t = torch.where(known, target, 0).long()
            t = ((t[:, None] >> torch.arange(self.outputs, device=t.device).view(1, -1, 1, 1)) & 1).float() \
                if self.multilabel else t[:, None].float()
            if w is None:
                loss = F.binary_cross_entropy_with_logits(logits, t)
            else:
                per_pixel = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
                loss = (per_pixel * w[:, None]).sum() / (w.sum() * self.outputs).clamp(min=1e-6)
            if kind.endswith("+dice"):
                loss = loss + soft_dice_loss(torch.sigmoid(logits), t, weight=weight)
            return loss
        if pixel_weights is None:
            loss = F.cross_entropy(logits, target.long(), ignore_index=IGNORE)
        else:
            per_pixel = F.cross_entropy(logits, target.long(), ignore_index=IGNORE, reduction="none")
            loss = (per_pixel * w).sum() / w.sum().clamp(min=1e-6)
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
    """The head of a ModelConfig (num_classes, multilabel), or of a number of output channels."""
    return Head(int(getattr(model_or_outputs, "num_classes", model_or_outputs)),
                bool(getattr(model_or_outputs, "multilabel", False)))
