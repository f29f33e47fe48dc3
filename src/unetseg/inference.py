"""Batched inference on arrays of chips."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .head import Head
from .runtime import Runtime


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold each batch norm that directly follows a convolution (in an nn.Sequential) into that convolution's
    weights and bias, in place, for inference (eval mode: the running statistics). The same function to float
    rounding (fp32: 4e-6 on the water model's probabilities); one op less per layer: 17% more img/s in bf16 on a
    2-core Xeon with AMX, 2% in fp32 (docs/predict.md)."""
    if model.training:
        raise ValueError("fold_batch_norm: the model is in training mode; folding uses the running statistics")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                seq[i] = nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return model


def autocast_weights(model: nn.Module, rt: Runtime) -> nn.Module:
    """Store the convolutions' and linear layers' parameters in the runtime's autocast dtype (bf16, fp16) once, in
    place, for inference under rt.autocast(): autocast would cast each of them again on every forward pass. The
    same outputs to the bit (autocast runs those ops in that dtype either way); 7-9% more img/s for the water and
    seed models in bf16 on a 2-core Xeon with AMX. Other layers (batch norm) keep theirs. fp32: nothing changes."""
    if rt.amp_dtype is not None:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                m.to(rt.amp_dtype)
    return model


class OneDNNConv(nn.Module):
    """A Conv2d or ConvTranspose2d, and the ReLU after it, as one oneDNN call on weights packed once into
    oneDNN's own layout: what inductor's freezing makes of them, without compiling. Eager PyTorch re-lays the
    weights out on every call and runs the ReLU as a pass of its own. For inference on the CPU; computes in the
    weights' dtype (autocast_weights sets it)."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d, relu: bool):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        mkldnn = torch.ops.mkldnn
        self.args: list = [list(conv.padding), *([list(conv.output_padding)] if self.transposed else []),
                           list(conv.stride), list(conv.dilation), conv.groups]
        pack = mkldnn._reorder_convolution_transpose_weight if self.transposed else mkldnn._reorder_convolution_weight
        self.op = mkldnn._convolution_transpose_pointwise if self.transposed else mkldnn._convolution_pointwise
        # plain attributes, not buffers: oneDNN's opaque tensors have no state dict, and must not be moved
        self.packed = pack(conv.weight.detach(), *self.args)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.dtype, self.attr = conv.weight.dtype, "relu" if relu else "none"
        self.shape = tuple(conv.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x.to(self.dtype), self.packed, self.bias, *self.args, self.attr, [], "")

    def extra_repr(self) -> str:
        return f"{'transposed, ' if self.transposed else ''}weight {self.shape} {self.dtype}, post-op {self.attr}"


def _packable(m: nn.Module, dtypes: tuple[torch.dtype, ...]) -> bool:
    """A 2-d convolution oneDNN runs as it is: zero padding given in numbers, on the CPU, in one of `dtypes`."""
    return (type(m) in (nn.Conv2d, nn.ConvTranspose2d) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple) and m.weight.device.type == "cpu" and m.weight.dtype in dtypes)


def prepack_convolutions(model: nn.Module) -> nn.Module:
    """Each CPU convolution (and a ReLU after it in an nn.Sequential, past folded batch norms) replaced by a
    OneDNNConv, in place, for inference: the same outputs (bf16: to the bit; fp32: to rounding), 1.2x the img/s
    of the water and seed models in bf16 and up to 1.08x in fp32 on a 2-core Xeon with AMX (docs/predict.md).
    Layers oneDNN cannot take stay as they are; without oneDNN nothing changes."""
    if model.training:
        raise ValueError("prepack_convolutions: the model is in training mode; packed weights are for inference")
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return model
    # bf16 only where oneDNN runs it natively; elsewhere bf16 stays on eager PyTorch's own path
    dtypes = (torch.float32, torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)
    for parent in list(model.modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):
            conv = parent._modules[name]
            if not _packable(conv, dtypes):
                continue
            after = next((n for n in names[i + 1:] if type(parent._modules[n]) is not nn.Identity), None)
            relu = isinstance(parent, nn.Sequential) and after is not None and type(parent._modules[after]) is nn.ReLU
            try:
                parent._modules[name] = OneDNNConv(conv, relu)
            except RuntimeError:  # a shape or type this oneDNN build has no kernel for: leave it eager
                continue
            if relu:
                parent._modules[after] = nn.Identity()
    return model


def prepare_for_inference(model: nn.Module, rt: Runtime, prepack: bool = True) -> nn.Module:
    """The model as predict, serve, the API and evaluate run it, in place: batch norm folded, weights in the
    autocast dtype and, unless `prepack` is off (a model to compile: inductor packs its own), the CPU
    convolutions packed for oneDNN with their ReLU."""
    model = autocast_weights(fold_batch_norm(model.eval()), rt)
    return prepack_convolutions(model) if prepack else model


def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1], channels_last in memory (a free permute)."""
    # np.array copies the batch: cache slices are read-only memory maps, which torch warns about wrapping
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


# (quarter turns, horizontal flip) of each test-time view
TTA_VIEWS: dict[str, list[tuple[int, bool]]] = {
    "none": [(0, False)],
    "flips": [(0, False), (0, True), (2, True), (2, False)],  # identity, h-flip, v-flip (rot180 + h-flip), both
    "d4": [(k, f) for k in range(4) for f in (False, True)],  # all 8 symmetries of the square
}


def tta_views(mode: str) -> list[tuple[int, bool]]:
    if mode not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of: {', '.join(TTA_VIEWS)}")
    return TTA_VIEWS[mode]


def _view(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _unview(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


def predict_probs(model: nn.Module, x: torch.Tensor, rt: Runtime, tta: str = "none",
                  head: Head | None = None) -> torch.Tensor:
    """Probabilities of one input batch, averaged over the test-time views (each mapped back); the head
    defaults to the one the output's channel count implies (not multi-label)."""
    views = tta_views(tta)
    total = None
    for k, flip in views:
        with rt.autocast():
            logits = model(_view(x, k, flip).contiguous(memory_format=torch.channels_last))
        p = _unview((head or Head(logits.shape[1])).probabilities(logits), k, flip)
        total = p if total is None else total + p
    return total / len(views)


@torch.inference_mode()
def predict_chips(model: nn.Module, images: np.ndarray, rt: Runtime, batch_size: int = 32,
                  tta: str = "none", head: Head | None = None) -> np.ndarray:
    """Probabilities (N, K, H, W) float32 of a stack of (N, H, W, C) uint8 chips (K = 1 for a water model)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        out.append(predict_probs(model, to_input(images[i:i + batch_size], rt.device), rt, tta, head).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1) + images.shape[1:3], np.float32)


def to_classes(probs: np.ndarray, threshold: float = 0.5, head: Head | None = None) -> np.ndarray:
    """(N, K, H, W) probabilities -> (N, H, W) uint8 class maps (head.Head.classes)."""
    return (head or Head(probs.shape[1])).classes(probs, threshold)
