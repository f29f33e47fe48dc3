"""`unetseg benchmark`: training and inference throughput of every engine and precision, side by side, against
this machine's measured matmul roofline."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .throughput import InferStep, TrainStep, data_wait_fraction, forward_gflop, interleaved_images_per_s, matmul_gflops
from .config import ModelConfig
from .errors import first_line
from .models import build_model
from .runtime import cpu_bf16_native, cpu_model

TRAIN_FLOP_FACTOR = 3  # a training image costs the forward pass and about twice that backward


def _warm(name: str, step, log: Callable[[str], None]) -> tuple[object | None, float, str]:
    """Call a step once (compiling it, if it compiles); (step or None, seconds, error)."""
    t0 = time.perf_counter()
    try:
        step()
    except Exception as e:  # torch.compile and onnxruntime fail in many ways; eager stays available
        log(f"{name}: unavailable ({first_line(e)})")
        return None, time.perf_counter() - t0, first_line(e, 200)
    return step, time.perf_counter() - t0, ""


def _onnx_step(model: torch.nn.Module, channels: int, batch: int, size: int):
    from .export import OnnxModel, export_model

    path = Path(tempfile.mkdtemp(prefix="unetseg-bench-")) / "model.onnx"
    export_model(model, path, channels)
    session = OnnxModel(path)
    x = torch.rand(batch, channels, size, size).numpy()

    class Step:
        def __init__(self):
            self.batch = batch

        def __call__(self) -> float:
            t = time.perf_counter()
            session.run(x)
            return time.perf_counter() - t

    return Step()


def run_benchmark(cfg: ModelConfig = ModelConfig(), batch: int = 32, size: int = 128, rounds: int = 3,
                  compile: bool = True, onnx: bool = True, log: Callable[[str], None] = print) -> dict:
    """Every variant timed in alternation in one run; img/s, ratio to fp32 eager, fraction of the roofline."""
    best = "bf16" if cpu_bf16_native() else "fp32"
    roof = {"fp32": matmul_gflops(torch.float32)}
    if best == "bf16":
        roof["bf16"] = matmul_gflops(torch.bfloat16)
    gflop = forward_gflop(build_model(cfg), cfg.in_channels, size)
    log(f"CPU: {cpu_model()} ({torch.get_num_threads()} threads, {os.cpu_count()} cores); torch {torch.__version__}; "
        f"bf16 native: {best == 'bf16'}; matmul roofline " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in roof.items()))
    log(f"model {cfg.name} width {cfg.base_width}: {gflop:.2f} GFLOP per {size} px image forward, "
        f"{TRAIN_FLOP_FACTOR * gflop:.1f} training")

    train_steps = {("fp32 eager (NCHW)", "fp32"): TrainStep("fp32", False, batch, size, cfg),
                   (f"{best} + channels_last", best): TrainStep(best, True, batch, size, cfg)}
    if compile:
        train_steps[(f"{best} + channels_last, compiled", best)] = TrainStep(best, True, batch, size, cfg, compiled=True)
    model = build_model(cfg)
    # the baseline: PyTorch's own layers; then predict's eager model (convolutions packed for oneDNN with their ReLU)
    infer_steps = {("fp32 eager (NCHW)", "fp32"): InferStep(build_model(cfg).eval(), "fp32", False, batch, size,
                                                            engine="plain"),
                   ("fp32 + channels_last, packed", "fp32"): InferStep(build_model(cfg).eval(), "fp32", True, batch, size)}
    if best == "bf16":
        infer_steps[("bf16 + channels_last, packed", "bf16")] = InferStep(build_model(cfg).eval(), "bf16", True, batch,
                                                                          size)
    if compile:
        infer_steps[(f"{best} + channels_last, compiled", best)] = InferStep(build_model(cfg).eval(), best, True, batch,
                                                                              size, engine="compiled")
    warmups = {}
    if onnx:
        try:
            infer_steps[("onnxruntime fp32", "fp32")] = _onnx_step(model, cfg.in_channels, batch, size)
        except Exception as e:  # export or onnxruntime missing: the row says so
            log(f"onnxruntime: unavailable ({first_line(e)})")
    for kind, steps in (("train", train_steps), ("infer", infer_steps)):
        for key in list(steps):
            step, seconds, error = _warm(key[0], steps[key], log)
            warmups[(kind, key[0])] = round(seconds, 1)
            if step is None:
                del steps[key]
    rows = []
    for kind, steps, cost in (("train", train_steps, TRAIN_FLOP_FACTOR * gflop), ("infer", infer_steps, gflop)):
        ips = interleaved_images_per_s({k[0]: v for k, v in steps.items()}, rounds=rounds, warmup=0)
        base = ips.get("fp32 eager (NCHW)")
        for (name, precision), _ in steps.items():
            rows.append({"kind": kind, "variant": name, "precision": precision, "img_s": round(ips[name], 2),
                         "vs_fp32_eager": round(ips[name] / base, 2) if base else None,
                         "of_roofline": round(ips[name] * cost / roof[precision], 3),
                         "warmup_s": warmups[(kind, name)]})
    wait = data_wait_fraction(train_steps[(f"{best} + channels_last", best)])
    winners = {kind: max((r for r in rows if r["kind"] == kind), key=lambda r: r["img_s"])["variant"]
               for kind in ("train", "infer")}
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "model": cfg.name, "base_width": cfg.base_width, "batch": batch, "size": size,
            "forward_gflop": round(gflop, 6), "roofline_gflops": {k: round(v, 1) for k, v in roof.items()},
            "rows": rows, "best": winners, "data_wait_fraction": round(wait, 4)}


def format_table(result: dict) -> str:
    lines = [f"{'':6} {'variant':<36} {'img/s':>8} {'vs fp32':>8} {'of roofline':>12} {'warm-up':>8}"]
    for r in result["rows"]:
        ratio = f"{r['vs_fp32_eager']:.2f}x" if r["vs_fp32_eager"] else "-"
        lines.append(f"{r['kind']:6} {r['variant']:<36} {r['img_s']:8.1f} {ratio:>8} {r['of_roofline']:11.0%} "
                     f"{r['warmup_s']:7.1f}s")
    lines.append(f"fastest: training {result['best']['train']}; inference {result['best']['infer']}")
    lines.append(f"data wait: {result['data_wait_fraction']:.1%} of a training step (chips in memory -> model input)")
    return "\n".join(lines)
