"""TernausNet (Iglovikov & Shvets, 2018): a VGG11 encoder with a U-Net decoder of transposed convolutions."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import DataError

# VGG11 "features": (index in torchvision's vgg11().features, in, out); a max-pool follows each group
VGG11_CONVS = [[(0, 3, 64)], [(3, 64, 128)], [(6, 128, 256), (8, 256, 256)], [(11, 256, 512), (13, 512, 512)],
               [(16, 512, 512), (18, 512, 512)]]


def conv_relu(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class DecoderBlock(nn.Sequential):
    """3x3 conv + ReLU, then a stride-2 transposed conv + ReLU that doubles the size."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, batch_norm: bool):
        super().__init__(conv_relu(c_in, c_mid, batch_norm),
                         nn.ConvTranspose2d(c_mid, c_out, 3, stride=2, padding=1, output_padding=1),
                         nn.ReLU(inplace=True))


class TernausNet(nn.Module):
    """TernausNet11. Any input size: padded to a multiple of 32, output cropped back."""

    size_multiple = 32

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        nf, bn = cfg.base_width, cfg.batch_norm
        self.encoder = nn.ModuleList()
        for group in VGG11_CONVS:
            self.encoder.append(nn.Sequential(*[conv_relu(cfg.in_channels if i == 0 else a, b, bn)
                                                for i, a, b in group]))
        self.center = DecoderBlock(512, nf * 16, nf * 8, bn)
        self.dec5 = DecoderBlock(512 + nf * 8, nf * 16, nf * 8, bn)
        self.dec4 = DecoderBlock(512 + nf * 8, nf * 16, nf * 4, bn)
        self.dec3 = DecoderBlock(256 + nf * 4, nf * 8, nf * 2, bn)
        self.dec2 = DecoderBlock(128 + nf * 2, nf * 4, nf, bn)
        self.dec1 = conv_relu(64 + nf, nf, bn)
        self.final = nn.Conv2d(nf, cfg.num_classes, 1)
        if cfg.dropout:
            self.center.insert(0, nn.Dropout2d(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        # always padded (even by 0): no branch on the size, so exported graphs keep dynamic sizes
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = self.center(F.max_pool2d(x, 2))
        for dec, skip in zip((self.dec5, self.dec4, self.dec3, self.dec2), reversed(skips[1:])):
            x = dec(torch.cat([x, skip], 1))
        x = self.dec1(torch.cat([x, skips[0]], 1))
        return self.final(x)[..., :h, :w]

    def load_vgg11(self, path: str | Path) -> int:
        """Copy the conv weights of a torchvision-format VGG11 state dict (a local file) into the encoder."""
        from ..pickles import read_state_dict

        path = Path(path)
        state = read_state_dict(path)
        loaded = 0
        for block, group in zip(self.encoder, VGG11_CONVS):
            for layer, (idx, c_in, c_out) in zip(block, group):
                conv = layer[0]
                for part in ("weight", "bias"):
                    key = f"features.{idx}.{part}"
                    if key not in state:
                        raise DataError(f"{path}: {key} missing: not a torchvision VGG11 state dict")
                    if state[key].shape != getattr(conv, part).shape:
                        raise DataError(f"{path}: {key} has shape {tuple(state[key].shape)}, the encoder needs "
                                        f"{tuple(getattr(conv, part).shape)} (VGG11 with {self.cfg.in_channels} "
                                        "input channels)")
                    with torch.no_grad():
                        getattr(conv, part).copy_(state[key])
                    loaded += 1
        return loaded
