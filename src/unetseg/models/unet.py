"""The U-Net of Ronneberger et al. (2015) as the seed built it (SEED.md), plus batch norm and dropout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def double_conv(c_in: int, c_out: int, batch_norm: bool, dropout: float = 0.0) -> nn.Sequential:
    """Two 3x3 'same' convolutions, each followed by (batch norm and) ReLU."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate([(c_in, c_out), (c_out, c_out)]):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
        if i == 0 and dropout > 0:
            layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder of `depth` levels (width doubling), transposed-conv decoder with skips, 1x1 head.

    Any input size works: the input is padded to a multiple of 2**(depth-1) and the output cropped back.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.base_width * 2**i for i in range(cfg.depth)]
        self.down = nn.ModuleList()
        c = cfg.in_channels
        for w in widths:
            self.down.append(double_conv(c, w, cfg.batch_norm, cfg.dropout))
            c = w
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            # Keras Conv2DTranspose(w, 3, strides=2, padding="same") doubles the size exactly
            self.up.append(nn.ConvTranspose2d(c, w, 3, stride=2, padding=1, output_padding=1))
            self.up_conv.append(double_conv(2 * w, w, cfg.batch_norm, cfg.dropout))
            c = w
        self.final = nn.Sequential(
            nn.Conv2d(c, cfg.base_width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.base_width, cfg.num_classes, 1),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # Keras he_normal
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.cfg.size_multiple
        ph, pw = (-h) % m, (-w) % m
        # always padded (even by 0): no branch on the size, so exported graphs keep dynamic sizes
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([up(x), skip], dim=1))
        return self.final(x)[..., :h, :w]
