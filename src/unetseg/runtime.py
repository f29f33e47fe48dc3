"""Device and precision: bf16 only where the CPU does it natively, AMP on CUDA, channels_last always."""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_native() -> bool:
    """True where oneDNN runs bf16 natively (AVX512-BF16 / AMX); emulated bf16 is ~500x slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


EMULATED_BF16 = ("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 is emulated here, hundreds of times slower "
                 "than fp32; --precision auto (the default) picks fp32 on it")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32 | bf16 | fp16

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def describe(self) -> str:
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_model()
        return f"{self.device.type} ({where}), {self.precision}, channels_last"


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the kernel (no mmap for
    large blocks, no trimming of the heap). Every activation of a batch is a fresh tensor of tens of MB; with
    the defaults each is a new mmap whose pages the kernel zeroes on first touch inside the convolution:
    measured on a 2-core Xeon with AMX (seed U-Net, batch 32, 128 px), training +18% img/s in fp32 and bf16,
    bf16 inference +20% eager and 2.7x frozen (bench/peers.py). The process keeps its high-water mark of
    memory. True if set (glibc only; elsewhere nothing changes)."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def select_runtime(precision: str = "auto", device: str = "auto", reuse_memory: bool = True) -> Runtime:
    """`auto`: CUDA with bf16 (or fp16) AMP when a GPU is present; else bf16 if native on this CPU, else fp32.
    `reuse_memory` (batch jobs; not the long-running server): keep_freed_memory()."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA GPU is available")
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_bf16_native() else "fp32"
    if precision == "fp16" and dev.type == "cpu":
        raise ValueError("fp16 is for CUDA; on a CPU use --precision bf16 (if native) or fp32")
    if precision == "bf16" and dev.type == "cpu" and not cpu_bf16_native():
        import warnings

        warnings.warn(EMULATED_BF16, RuntimeWarning, stacklevel=2)
    if reuse_memory and dev.type == "cpu":
        keep_freed_memory()
    return Runtime(dev, precision)
