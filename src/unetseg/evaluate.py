"""Test-set evaluation of a run: the seed's mean IoU and friends, per-image IoU, and the figures."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import load_checkpoint, resolve_checkpoint
from .compiled import maybe_compile, warmup_seconds
from .data.cache import Chips
from .figures import plot_confusion, plot_histogram, plot_predictions
from .infer import predict_chips, to_classes
from .io import write_text_atomic
from .metrics import ConfusionAccumulator, distribution, per_image_iou, scores_from_confusion
from .runtime import Runtime

SEED_MEAN_IOU = 0.748  # SEED.md: the Keras reference's test mean IoU


def evaluate_chips(model, chips: Chips, rt: Runtime, batch_size: int = 32, threshold: float = 0.5,
                   class_names: list[str] | None = None, tta: str = "none") -> tuple[dict, np.ndarray]:
    """Scores over every pixel of the chips (one confusion matrix) and the predicted class maps.
    The img/s leaves out torch.compile's warm-up, which is reported on its own."""
    import torch

    t0 = time.perf_counter()
    probs = predict_chips(model, chips.images, rt, batch_size, tta)
    compile_s = warmup_seconds(model)
    seconds = time.perf_counter() - t0 - (compile_s or 0.0)
    pred = to_classes(probs, threshold)
    k = probs.shape[1] if probs.ndim == 4 else 2
    acc = ConfusionAccumulator(k)
    acc.update(torch.from_numpy(pred), torch.from_numpy(np.asarray(chips.masks)))
    scores = scores_from_confusion(acc.matrix(), class_names)
    scores["tta"] = tta
    scores["inference_images_per_s"] = round(len(chips.stems) / max(seconds, 1e-9), 2)
    scores["compile_seconds"] = compile_s
    scores["confusion_matrix"] = acc.matrix().tolist()
    return scores, pred


def sample_indices(n: int, k: int = 6, seed: int = 0) -> np.ndarray:
    """A fixed sample of k test chips for the figure (sorted, reproducible)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


def evaluate_run(run_dir: Path, test: Chips, rt: Runtime, checkpoint: str = "best", batch_size: int = 32,
                 figure_samples: int = 6, class_names: list[str] | None = None, tta: str = "none",
                 compile: bool = False, log: Callable[[str], None] = print) -> dict:
    """Evaluate RUN/<checkpoint> on the test chips; write metrics.json (metrics-tta-MODE.json with TTA) and figures."""
    weights = resolve_checkpoint(run_dir, checkpoint)
    model, info = load_checkpoint(weights, rt.device)
    model = maybe_compile(model, compile, log)
    scores, pred = evaluate_chips(model, test, rt, batch_size, class_names=class_names, tta=tta)
    result = {"checkpoint": weights.name, "epoch": info.get("epoch"), "test_images": len(test.stems),
              "image_size": int(test.images.shape[1]), "threshold": 0.5, "runtime": rt.describe(),
              "seed_mean_iou": SEED_MEAN_IOU, **scores}
    suffix = "" if tta == "none" else f"-tta-{tta}"
    idx = sample_indices(len(test.stems), figure_samples)
    names = [test.stems[i] for i in idx]
    num_classes = len(scores["confusion_matrix"])
    notes = ["" for _ in idx]
    if num_classes == 2:
        ious = per_image_iou(pred, np.asarray(test.masks))
        result["per_image_water_iou"] = distribution(ious)
        rows = "stem,water_iou,true_water_fraction,pred_water_fraction\n" + "".join(
            f"{s},{v:.4f},{np.asarray(test.masks[i]).mean():.4f},{pred[i].mean():.4f}\n"
            for i, (s, v) in enumerate(zip(test.stems, ious)))
        write_text_atomic(run_dir / f"per_image{suffix}.csv", rows)
        plot_histogram(ious, run_dir / f"per_image_iou{suffix}.png")
        notes = [f"(IoU {v:.2f})" for v in ious[idx]]
    plot_predictions(np.asarray(test.images[idx]), np.asarray(test.masks[idx]), pred[idx], names, notes,
                     run_dir / f"test_predictions{suffix}.png", num_classes=num_classes)
    plot_confusion(np.array(scores["confusion_matrix"]), list(scores["per_class_iou"]),
                   run_dir / f"confusion_matrix{suffix}.png")
    write_text_atomic(run_dir / f"metrics{suffix}.json", json.dumps(result, indent=1))
    return result
