"""Side by side with the seed's own stack: the seed's Keras U-Net against unetseg's seed model, same machine,
same run.

Each cell is measured in its own child process (TensorFlow and PyTorch each bring their own oneDNN and
thread pools), one cell after the other: training img/s (one optimiser step on a fixed random batch of
32 images of 128 x 128 x 3, BCE, Adam 1e-3; median of --steps after --warmup) and inference img/s
(forward passes of the same batch), in float32 and in bfloat16 (Keras: the mixed_bfloat16 policy;
unetseg: autocast bf16 + channels_last, its default where the CPU runs bf16 natively); inference twice for
unetseg: eager (predict's default) and compiled (`--compile`: inductor with frozen weights; Keras'
predict_on_batch is a compiled graph itself, so its one figure stands beside both). It prints the CPU,
the threads and what each framework used, the machine's matmul peak (2048 and 4096 square, fp32 and
bf16), and unetseg / Keras per cell. Goals: unetseg >= Keras in every cell, >= 1.2x in bf16 inference
and fp32 training.

The speed of a shared VM drifts by 1.5-2x within minutes, so the whole table is measured --rounds times,
each cell's two frameworks back to back (their order swapped every round), and the ratio is the median of
the rounds' ratios.

Installs nothing by default: without TensorFlow it says how to get it and times unetseg alone.

    pip install -e '.[peers]'      # tensorflow-cpu 2.21 and keras 3, pinned; never in make test or CI
    python bench/peers.py [--steps 5] [--warmup 2] [--rounds 3] [--precision native|fp32|bf16|all] [--json out.json]

On a CPU without native bf16 (AVX2 only: bf16 runs ~500x slower than fp32 there) the bf16 cells are left out
unless --precision bf16 or all asks for them: `native`, the default, measures fp32 and, where oneDNN runs it
natively, bf16.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time

BATCH, SIZE = 32, 128
TASKS = ("train", "infer", "infer-compiled")  # infer-compiled: unetseg's --compile against Keras' same graph


def keras_unet():
    """The seed's Keras U-Net (../shared/SEED.md): 5 levels of two 3x3 ReLU convolutions (32..512 filters,
    He-normal), 2x2 max pooling, 3x3 stride-2 transposed convolutions, skip concatenation, a last 3x3
    convolution of 32 filters and a 1x1 sigmoid: 8,639,745 parameters with one output."""
    import keras
    from keras import layers

    def block(x, f):
        for _ in range(2):
            x = layers.Conv2D(f, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
        return x

    inputs = keras.Input((SIZE, SIZE, 3))
    skips, x = [], inputs
    for f in (32, 64, 128, 256):
        x = block(x, f)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, 512)
    for f, skip in zip((256, 128, 64, 32), reversed(skips)):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same")(x)
        x = block(layers.Concatenate()([x, skip]), f)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def cell_keras(precision: str, task: str, steps: int, warmup: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    model = keras_unet()
    x = np.random.default_rng(0).random((BATCH, SIZE, SIZE, 3), dtype=np.float32)
    y = (np.random.default_rng(1).random((BATCH, SIZE, SIZE, 1)) > 0.5).astype(np.float32)
    if task == "train":
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        run = lambda: model.train_on_batch(x, y)
    else:
        run = lambda: model.predict_on_batch(x)
    seconds = _time(run, steps, warmup)
    return {"img_s": BATCH / seconds, "parameters": model.count_params(),
            "used": f"TensorFlow {tf.__version__}, Keras {keras.__version__}, policy "
                    f"{keras.mixed_precision.global_policy().name}, intra-op threads "
                    f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}, "
                    f"oneDNN {'on' if _onednn_on() else 'off'}"}


def cell_unetseg(precision: str, task: str, steps: int, warmup: int) -> dict:
    """unetseg's own paths: select_runtime (which keeps freed memory for reuse: runtime.keep_freed_memory),
    channels_last, bf16 autocast; `infer` is predict/evaluate's eager model (batch norm folded, convolutions
    packed for oneDNN with their ReLU: load_for_inference), `infer-compiled` their --compile (inductor with
    frozen weights; its one-off compile time is left out, as warm-up)."""
    import torch

    from unetseg.config import ModelConfig
    from unetseg.models import build_model
    from unetseg.runtime import select_runtime
    from unetseg.throughput import InferStep, TrainStep

    select_runtime(precision)
    if task == "train":
        step = TrainStep(precision, channels_last=True, batch=BATCH, size=SIZE)
        parameters = sum(p.numel() for p in step.model.parameters())
    else:
        model = build_model(ModelConfig())
        parameters = sum(p.numel() for p in model.parameters())  # counted before InferStep packs the weights
        step = InferStep(model, precision, channels_last=True, batch=BATCH, size=SIZE,
                         engine="compiled" if task == "infer-compiled" else "torch")
    seconds = _time(step, steps, warmup)
    return {"img_s": BATCH / seconds, "parameters": parameters,
            "used": f"PyTorch {torch.__version__}, {precision}{' autocast' if precision == 'bf16' else ''}, "
                    f"channels_last, intra-op threads {torch.get_num_threads()}, oneDNN (mkldnn) "
                    f"{'on' if torch.backends.mkldnn.is_available() else 'off'}, freed memory kept for reuse"
                    + {"infer": ", batch norm folded, convolutions packed for oneDNN with their ReLU",
                       "infer-compiled": ", batch norm folded, inductor with frozen weights"}.get(task, "")}


def _onednn_on() -> bool:
    import os

    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"


def _time(fn, steps: int, warmup: int) -> float:
    """Median seconds of fn() over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def child(framework: str, precision: str, task: str, steps: int, warmup: int) -> dict:
    """One cell, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--cell", framework, precision, task, "--steps", str(steps), "--warmup",
           str(warmup)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def peaks(precisions: tuple[str, ...]) -> dict:
    """Matmul GFLOP/s at 2048 and 4096 square in each precision measured (bf16 off its native CPUs takes minutes)."""
    import torch

    from unetseg.throughput import matmul_gflops

    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        if name not in precisions:
            continue
        for n in (2048, 4096):
            out[f"{name} {n}"] = round(matmul_gflops(dtype, n, repeats=3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="times each cell is measured, Keras and unetseg back "
                    "to back (this machine's speed drifts: compare within a round)")
    ap.add_argument("--precision", choices=("native", "fp32", "bf16", "all"), default="native",
                    help="which cells: native (default) = fp32, and bf16 where this CPU runs it natively")
    ap.add_argument("--json")
    ap.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cell:
        framework, precision, task = args.cell
        fn = cell_keras if framework == "keras" else cell_unetseg
        print(json.dumps(fn(precision, task, args.steps, args.warmup)))
        return

    from unetseg.runtime import cpu_bf16_native, cpu_model, select_runtime

    have_keras = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None
    print(f"CPU: {cpu_model()}; unetseg default precision here: {select_runtime('auto', 'cpu').precision}")
    precisions = chosen_precisions(args.precision, cpu_bf16_native())
    print("matmul peak (GFLOP/s): " + ", ".join(f"{k}: {v}" for k, v in peaks(precisions).items()))
    if not have_keras:
        print("TensorFlow/Keras are not installed: pip install -e '.[peers]' (tensorflow-cpu 2.21, keras 3) to "
              "compare; unetseg alone follows")
    frameworks = ["keras", "unetseg"] if have_keras else ["unetseg"]
    if "bf16" not in precisions:
        print("bf16 cells left out: this CPU has no native bf16 (--precision bf16 or all to measure them anyway)")
    results: dict = {}  # (framework, task, precision) -> img/s of each round
    used: dict = {}
    for r in range(args.rounds):  # each cell's frameworks back to back, the order swapped every round
        order = frameworks if r % 2 == 0 else frameworks[::-1]
        for task in TASKS:
            for precision in precisions:
                for fw in order:
                    if task == "infer-compiled" and fw == "keras":  # Keras' predict_on_batch is one graph already
                        continue
                    out = child(fw, precision, task, args.steps, args.warmup)
                    results.setdefault((fw, task, precision), []).append(out.get("img_s"))
                    used.setdefault(f"{fw} {precision}", out.get("used") or out.get("error"))
    for k, v in used.items():
        print(f"{k}: {v}")
    print(f"\n{args.rounds} round(s); img/s: median over the rounds; unetseg/keras: median of each round's ratio "
          "(min-max)")
    print(f"{'cell':<20} " + " ".join(f"{fw + ' img/s':>14}" for fw in frameworks)
          + (f" {'unetseg/keras':>14}" if have_keras else ""))
    table = summarise(results, frameworks, precisions)
    for row in table:
        vals = [row[fw] for fw in frameworks]
        line = f"{row['task'] + ' ' + row['precision']:<20} " + " ".join(
            f"{v:14.2f}" if v else f"{'error':>14}" for v in vals)
        if row["ratio"]:
            line += f" {row['ratio']:13.2f}x ({min(row['ratios']):.2f}-{max(row['ratios']):.2f})"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "cells": table, "used": used}, f, indent=1)


def chosen_precisions(choice: str, bf16_native: bool) -> tuple[str, ...]:
    """The precisions to measure for --precision: native = fp32, plus bf16 where the CPU runs it natively."""
    if choice == "native":
        return ("fp32", "bf16") if bf16_native else ("fp32",)
    return ("fp32", "bf16") if choice == "all" else (choice,)


def summarise(results: dict, frameworks: list[str], precisions: tuple[str, ...] = ("fp32", "bf16")) -> list[dict]:
    """One row per cell from {(framework, task, precision): [img/s of each round]}: median img/s of each
    framework, and the median of the rounds' unetseg / Keras ratios (infer-compiled against Keras' infer)."""
    table = []
    for task in TASKS:
        for precision in precisions:
            runs = [results[(fw, "infer" if task == "infer-compiled" and fw == "keras" else task, precision)]
                    for fw in frameworks]
            ratios = [u / k for k, u in zip(*runs) if k and u] if len(frameworks) == 2 else []
            table.append({"task": task, "precision": precision, **{fw: _median(v) for fw, v in zip(frameworks, runs)},
                          "ratio": statistics.median(ratios) if ratios else None, "ratios": ratios,
                          "rounds": dict(zip(frameworks, runs))})
    return table


def _median(values: list) -> float | None:
    """Median of the rounds that gave a figure (None if none did)."""
    ok = [v for v in values if v]
    return statistics.median(ok) if ok else None


if __name__ == "__main__":
    main()
