"""Batch augmentation with kornia: geometric transforms shared by image and mask, colour on the image only."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.constants import DataKey, Resample

from .config import AugmentConfig


class Augment(torch.nn.Module):
    """Call with (x (N, C, H, W) float in [0, 1], y (N, H, W) integer mask) -> augmented (x, y); with pixel
    weights w (N, H, W) too -> (x, y, w), the weights moved with the image (bilinear, as an extra channel)."""

    def __init__(self, cfg: AugmentConfig, channels: int = 3):
        super().__init__()
        geometric: list[torch.nn.Module] = []
        if cfg.flips:
            geometric += [K.RandomHorizontalFlip(), K.RandomVerticalFlip()]
        if cfg.rot90:
            geometric.append(K.RandomRotation90(times=(0, 3), p=1.0))
        if cfg.scale:
            geometric.append(_ResizedCrop(cfg.scale, cfg.crop_p))
        if cfg.elastic_p:
            import warnings

            # kornia's elastic transform calls affine_grid without align_corners; the default is what it wants
            warnings.filterwarnings("ignore", message="Default grid_sample and affine_grid behavior")
            k = 2 * int(3 * cfg.elastic_sigma) + 1  # the smoothing kernel spans +- 3 sigma
            geometric.append(K.RandomElasticTransform(kernel_size=(k, k), sigma=(cfg.elastic_sigma,) * 2,
                                                      alpha=(cfg.elastic_alpha,) * 2, padding_mode="reflection",
                                                      p=cfg.elastic_p))
        photometric: list[torch.nn.Module] = []
        if channels == 3 and (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue):
            photometric.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_p))
        elif cfg.brightness or cfg.contrast:  # any channel count: per-image gain and offset
            photometric.append(_GainOffset(cfg.brightness, cfg.contrast, cfg.jitter_p))
        if cfg.gamma:
            photometric.append(K.RandomGamma(gamma=tuple(cfg.gamma), p=cfg.gamma_p))
        if cfg.channel_gain:
            photometric.append(_ChannelGain(cfg.channel_gain, cfg.channel_gain_p))
        if cfg.haze:
            photometric.append(_Haze(cfg.haze, cfg.haze_p))
        if cfg.blur_p:
            photometric.append(K.RandomGaussianBlur((5, 5), tuple(cfg.blur_sigma), p=cfg.blur_p))
        if cfg.jpeg and channels == 3:
            photometric.append(K.RandomJPEG(jpeg_quality=tuple(cfg.jpeg), p=cfg.jpeg_p))
        if cfg.noise_std:
            photometric.append(K.RandomGaussianNoise(std=cfg.noise_std, p=0.5))
        self.geometric = K.AugmentationSequential(
            *geometric, data_keys=["input", "mask"],
            extra_args={DataKey.MASK: {"resample": Resample.NEAREST, "align_corners": None}},
        ) if geometric else None
        self.photometric = torch.nn.Sequential(*photometric)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None):
        c = x.shape[1]
        if self.geometric is not None:
            both = x if w is None else torch.cat([x, w[:, None].to(x.dtype)], dim=1)
            both, m = self.geometric(both, y[:, None].float())
            x, y = both[:, :c], m[:, 0].round().to(y.dtype)
            if w is not None:
                w = both[:, c].contiguous()
        x = self.photometric(x.contiguous()).clamp_(0, 1)
        x = x.contiguous(memory_format=torch.channels_last)
        return (x, y) if w is None else (x, y, w)


class _ResizedCrop(K.RandomResizedCrop):
    """RandomResizedCrop back to the size of its input (kornia wants the output size up front)."""

    def __init__(self, scale, p):
        super().__init__(size=(1, 1), scale=scale, ratio=(0.75, 4 / 3), p=p)

    def forward(self, input, params=None, **kwargs):  # noqa: A002
        self.size = tuple(input.shape[-2:])
        self.flags["size"] = self.size
        self._param_generator.output_size = self.size
        return super().forward(input, params=params, **kwargs)


def _switch(x: torch.Tensor, p: float) -> torch.Tensor:
    """(N, 1, 1, 1): 1 for the images of the batch an augmentation applies to (each with probability p), else 0."""
    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).float()


class _ChannelGain(torch.nn.Module):
    """Each channel of each image times its own factor in [1 - amount, 1 + amount]: another sensor's or
    another rendering's colour balance."""

    def __init__(self, amount: float, p: float):
        super().__init__()
        self.amount, self.p = amount, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        gain = 1 + (torch.rand(n, c, 1, 1, device=x.device) * 2 - 1) * self.amount * _switch(x, self.p)
        return x * gain


class _Haze(torch.nn.Module):
    """A veil of thin cloud or haze: each image blended towards a bright, slightly blue grey by up to `amount`."""

    def __init__(self, amount: float, p: float):
        super().__init__()
        self.amount, self.p = amount, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        t = torch.rand(n, 1, 1, 1, device=x.device) * self.amount * _switch(x, self.p)
        veil = 0.75 + 0.1 * torch.rand(n, c, 1, 1, device=x.device)
        if c == 3:
            veil = veil + torch.tensor([-0.05, 0.0, 0.05], device=x.device).view(1, 3, 1, 1)
        return x * (1 - t) + veil * t


class _GainOffset(torch.nn.Module):
    """Brightness/contrast for any number of channels: x * gain + offset, per image."""

    def __init__(self, brightness: float, contrast: float, p: float):
        super().__init__()
        self.b, self.c, self.p = brightness, contrast, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        on = (torch.rand(n, 1, 1, 1, device=x.device) < self.p).float()
        gain = 1 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * self.c * on
        offset = (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * self.b * on
        return x * gain + offset
