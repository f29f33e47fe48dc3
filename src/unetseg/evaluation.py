"""Test-set evaluation of a run: the seed's mean IoU and friends, per-image IoU, and the figures."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import load_for_inference, resolve_checkpoint
from .compiled import maybe_compile, warmup_seconds
from .data.cache import Chips
from .figures import plot_confusion, plot_histogram, plot_predictions
from .inference import predict_chips, to_classes
from .atomic import write_json_atomic, write_text_atomic
from .metrics import ConfusionAccumulator, accumulator, distribution, per_image_iou, scores_from_confusion
from .errors import DataError
from .head import Head
from .runfolder import RunFolder
from .runtime import Runtime

SEED_MEAN_IOU = 0.748  # SEED.md: the Keras reference's test mean IoU


def evaluate_chips(model, chips: Chips, rt: Runtime, batch_size: int = 32, threshold: float = 0.5,
                   class_names: list[str] | None = None, tta: str = "none",
                   head: Head | None = None) -> tuple[dict, np.ndarray]:
    """Scores over every pixel of the chips (one confusion matrix) and the predicted class maps.
    The img/s leaves out torch.compile's warm-up, which is reported on its own."""
    import torch

    t0 = time.perf_counter()
    probs = predict_chips(model, chips.images, rt, batch_size, tta, head)
    compile_s = warmup_seconds(model)
    seconds = time.perf_counter() - t0 - (compile_s or 0.0)
    head = head or Head(probs.shape[1])
    pred = to_classes(probs, threshold, head)
    acc = accumulator(head)
    acc.update(torch.from_numpy(pred), torch.from_numpy(np.array(chips.masks)))  # a copy: the cache is read-only
    scores = acc.scores(class_names)
    scores["tta"] = tta
    scores["inference_images_per_s"] = round(len(chips.stems) / max(seconds, 1e-9), 2)
    scores["compile_seconds"] = compile_s
    return scores, pred


def summary_lines(m: dict, tta: str = "none") -> list[str]:
    """What `unetseg evaluate` prints of a metrics.json: the water figures (water models), else per-class IoU
    and Dice; and the whole-file figures of grid-chip runs (pixel error, Rand error for membranes)."""
    speed = (f"({m['test_images']} images, {m['inference_images_per_s']:.1f} img/s, tta {tta}"
             + (f", {m['compile_seconds']:.1f} s compiling" if m.get("compile_seconds") else "") + ")")
    names = list(m["per_class_iou"])
    if names == ["background", "water"]:
        lines = [f"test mean IoU {m['mean_iou']:.4f}  water IoU {m['water_iou']:.4f}  dice {m['dice']:.4f}  {speed}"]
    else:
        lines = [f"test mean IoU {m['mean_iou']:.4f} {speed}",
                 "per-class IoU / Dice: " + ", ".join(f"{k} {v:.4f} / {m['per_class_dice'][k]:.4f}"
                                                      for k, v in m["per_class_iou"].items())]
    whole = m.get("whole_files")
    if whole:
        extra = (f", Rand error {whole['rand_error']:.4f}, VI split {whole['vi_split']:.3f} merge "
                 f"{whole['vi_merge']:.3f}" if "rand_error" in whole else "")
        lines.append(f"whole test files ({whole['files']}, {whole['tile']} px tiles): mean IoU "
                     f"{whole['mean_iou']:.4f}, pixel error {whole['pixel_error']:.4f}{extra}")
    return lines


def unlike_summary(distance: np.ndarray, iou: np.ndarray, threshold: float) -> dict:
    """How often the unlike-the-training-data warning fires, and how the distance relates to IoU (Spearman's
    rank correlation; per-image IoU of images with no water in truth or prediction is NaN and left out; the
    correlation is None, JSON's null, where it is undefined: under 3 images, or either side constant)."""
    from scipy.stats import spearmanr

    fires = distance > threshold
    ok = np.isfinite(iou) & np.isfinite(distance)
    defined = ok.sum() > 2 and np.ptp(distance[ok]) > 0 and np.ptp(iou[ok]) > 0
    rho = round(float(spearmanr(distance[ok], iou[ok]).statistic), 3) if defined else None
    mean = (lambda m: round(float(np.nanmean(iou[m])), 4) if (m & ok).any() else None)
    return {"threshold": round(threshold, 3), "fires": int(fires.sum()), "of": int(len(distance)),
            "spearman_distance_vs_iou": rho, "mean_iou_when_fired": mean(fires),
            "mean_iou_otherwise": mean(~fires)}


def sample_indices(n: int, k: int = 6, seed: int = 0) -> np.ndarray:
    """A fixed sample of k test chips for the figure (sorted, reproducible)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


def evaluate_run(run_dir: Path, test: Chips, rt: Runtime, checkpoint: str = "best", batch_size: int = 32,
                 figure_samples: int = 6, class_names: list[str] | None = None, tta: str = "none",
                 compile: bool = False, log: Callable[[str], None] = print, input_stats: dict | None = None,
                 head: Head | None = None, extra: dict | None = None) -> dict:
    """Evaluate RUN/<checkpoint> on the test chips; write metrics.json (metrics-tta-MODE.json with TTA), with
    `extra` figures measured elsewhere (the whole files of grid-chip runs), and the figures."""
    weights = resolve_checkpoint(run_dir, checkpoint)
    model, info = load_for_inference(weights, rt, prepack=not compile)
    model = maybe_compile(model, compile, log)
    scores, pred = evaluate_chips(model, test, rt, batch_size, class_names=class_names, tta=tta, head=head)
    result = {"checkpoint": weights.name, "epoch": info.get("epoch"), "test_images": len(test.stems),
              "image_size": int(test.images.shape[1]), "threshold": 0.5, "runtime": rt.describe(),
              "seed_mean_iou": SEED_MEAN_IOU, **scores, **(extra or {})}
    folder = RunFolder(run_dir)
    suffix = folder.evaluation_suffix(checkpoint, tta)  # never overwrites the best checkpoint's plain figures
    idx = sample_indices(len(test.stems), figure_samples)
    names = [test.stems[i] for i in idx]
    multilabel = bool(head and head.multilabel)  # one binary map per class: drawn as "any class", no confusion matrix
    num_classes = 2 if multilabel else len(scores["confusion_matrix"])
    notes = ["" for _ in idx]
    if not multilabel and num_classes == 2:
        ious = per_image_iou(pred, np.asarray(test.masks))
        result["per_image_water_iou"] = distribution(ious)
        unlike = np.full(len(ious), np.nan)
        if input_stats:
            from .ood import distance, image_features

            unlike = distance(input_stats, image_features(np.asarray(test.images)))
            result["unlike_training"] = unlike_summary(unlike, ious, input_stats["threshold"])
        rows = "stem,water_iou,true_water_fraction,pred_water_fraction,unlike_training\n" + "".join(
            f"{s},{v:.4f},{np.asarray(test.masks[i]).mean():.4f},{pred[i].mean():.4f},{unlike[i]:.3f}\n"
            for i, (s, v) in enumerate(zip(test.stems, ious)))
        write_text_atomic(run_dir / f"per_image{suffix}.csv", rows)
        plot_histogram(ious, run_dir / f"per_image_iou{suffix}.png")
        notes = [f"(IoU {v:.2f})" for v in ious[idx]]
    truth = np.asarray(test.masks[idx])
    if multilabel:  # the figure shows which pixels carry any class
        truth, shown = np.where(truth == 255, 0, truth != 0).astype(np.uint8), (pred[idx] != 0).astype(np.uint8)
    else:
        shown = pred[idx]
    plot_predictions(np.asarray(test.images[idx]), truth, shown, names, notes,
                     run_dir / f"test_predictions{suffix}.png", num_classes=num_classes)
    if not multilabel:
        plot_confusion(np.array(scores["confusion_matrix"]), list(scores["per_class_iou"]),
                       run_dir / f"confusion_matrix{suffix}.png")
    write_json_atomic(folder.metrics_path(checkpoint, tta), result)
    return result


def evaluate_files(run_dir: Path, recipe, pairs: list, spec, rt: Runtime, checkpoint: str = "best",
                   tta: str = "none", figures: int = 2) -> dict:
    """Whole files (large slices) at their own resolution through predict's overlap-tile path, scored against
    their full masks: IoU and Dice per class (multi-label: each class against its absence), pixel error, and
    for membrane data (dataset task `membranes`, class 1 = cell interior) the ISBI figures of each slice
    (metrics.membrane_scores), averaged over the slices. Writes slices.csv and slice_NAME.png figures (with the
    checkpoint's and TTA's suffix when not the official best / no-TTA figures)."""
    import torch

    from .atomic import write_csv_atomic
    from .config import PredictConfig
    from .data.folder import decode_pair
    from .data.sources import ArraySource
    from .figures import plot_slice
    from .head import head_of
    from .metrics import accumulator, membrane_scores
    from .predict.pipeline import Predictor

    head = head_of(recipe.model)
    size = recipe.image_size
    cfg = PredictConfig(scale=1.0, tile=size, overlap=size // 8, checkpoint=checkpoint, tta=tta, vectors="none")
    predictor = Predictor(run_dir, cfg, rt, progress=False, log=lambda m: None)
    suffix = RunFolder(run_dir).evaluation_suffix(checkpoint, tta)
    pooled = accumulator(head)
    rows, t0 = [], time.perf_counter()
    for i, pair in enumerate(pairs):
        image, truth, _ = decode_pair(pair, 0, spec)
        pred = predictor.segment(ArraySource(image, image.shape[-1], "auto", pair.image)).keep.classes
        acc = accumulator(head)
        for a in (acc, pooled):
            a.update(torch.from_numpy(pred), torch.from_numpy(truth))
        s = acc.scores(spec.class_names)
        row = {"file": pair.stem, "mean_iou": round(s["mean_iou"], 4),
               "pixel_error": round(1 - s["pixel_accuracy"], 5)}
        if spec.task == "membranes":
            row |= {k: round(v, 5) if isinstance(v, float) else v
                    for k, v in membrane_scores(pred == 1, truth == 1).items()}
        rows.append(row)
        if i < figures:
            title = f"{pair.stem}: mean IoU {row['mean_iou']:.3f}" + (
                f", Rand error {row['rand_error']:.4f}, pixel error {row['pixel_error']:.4f}" if "rand_error" in row
                else "")
            plot_slice(image, truth, pred, spec.class_names, title, run_dir / f"slice_{pair.stem}{suffix}.png",
                       head.multilabel)
    total = pooled.scores(spec.class_names)
    result = {"files": len(rows), "tile": cfg.tile, "overlap": cfg.overlap, "tta": tta,
              "seconds": round(time.perf_counter() - t0, 1), "mean_iou": round(total["mean_iou"], 4),
              "per_class_iou": {k: round(v, 4) for k, v in total["per_class_iou"].items()},
              "per_class_dice": {k: round(v, 4) for k, v in total["per_class_dice"].items()}}
    if spec.task == "membranes":  # the ISBI figures are means over the slices, the pixel error too
        for key in ("pixel_error", "rand_error", "vi_split", "vi_merge"):
            result[key] = round(float(np.mean([r[key] for r in rows])), 5)
    else:
        result["pixel_error"] = round(1 - total["pixel_accuracy"], 5)
    result["per_file"] = rows
    write_csv_atomic(run_dir / f"slices{suffix}.csv", list(rows[0]), rows, lineterminator="\n")
    return result


def evaluate_scenes(predictor, scene_set, out_dir: Path, skip: frozenset[str] = frozenset(),
                    log: Callable[[str], None] = print) -> dict:
    """Score a predictor on whole scenes through predict's own path (bands, value range, scale, tiling,
    no-data), against each scene's label raster: per scene and pooled (one confusion matrix over every scored
    pixel of every scene). Writes OUT/metrics.json, per_scene.csv and one figure per scene.

    Scenes named in `skip` (the ones the run trained on) are left out, and said so."""
    import torch

    from .data.scenes import read_label
    from .figures import plot_scene
    from .atomic import write_csv_atomic

    pooled = ConfusionAccumulator(2)
    rows = []
    left_out = [s.name for s in scene_set.scenes if s.name in skip]
    if left_out:
        log(f"{len(left_out)} scene(s) left out: the run trained on them ({', '.join(left_out[:4])}"
            f"{', ...' if len(left_out) > 4 else ''})")
    for scene in (s for s in scene_set.scenes if s.name not in skip):
        source = predictor.open(scene.image, list(scene.bands) if scene.bands else None,
                                scene.value_range if scene.value_range != "auto" else None, scene.nodata)
        for warning in source.warnings:  # the scene's score would be wrong for a reason the user can fix
            log(f"warning: {scene.name}: {warning}")
        try:
            t0 = time.perf_counter()
            result = predictor.segment(source, gsd=scene.gsd)
            seconds = time.perf_counter() - t0
            image = source.pixels if hasattr(source, "pixels") else \
                source.to_uint8(source.read(0, 0, source.height, source.width)[0])
        finally:
            source.close()
        keep, pred, judged = result.keep, result.water, result.row
        truth, scored = read_label(scene, keep.classes.shape)
        scored &= keep.valid
        acc = ConfusionAccumulator(2)
        for a in (acc, pooled):
            a.update(torch.from_numpy(pred[scored]), torch.from_numpy(truth[scored]))
        s = scores_from_confusion(acc.matrix(), ["background", "water"])
        rows.append({"scene": scene.name, "mean_iou": round(s["mean_iou"], 4),
                     "water_iou": round(s.get("water_iou", float("nan")), 4),
                     "unlike_training": judged["unlike_training"], "mean_entropy": judged["mean_entropy"],
                     "true_water": round(float(truth[scored].mean()) if scored.any() else 0.0, 4),
                     "predicted_water": round(float(pred[scored].mean()) if scored.any() else 0.0, 4),
                     "scored_pixels": int(scored.sum()), "scale": judged["scale"], "scale_from": judged["scale_from"],
                     "seconds": round(seconds, 2), "confusion_matrix": acc.matrix().tolist()})
        plot_scene(image if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, -1), truth, pred, scored,
                   f"{scene.name}: water IoU {rows[-1]['water_iou']:.3f}, mean IoU {rows[-1]['mean_iou']:.3f}",
                   out_dir / f"{scene.name}.png")
        log(f"{scene.name}: water IoU {rows[-1]['water_iou']:.3f}  mean IoU {rows[-1]['mean_iou']:.3f}  "
            f"(water {100 * rows[-1]['true_water']:.1f}% true, {100 * rows[-1]['predicted_water']:.1f}% predicted; "
            f"scale {judged['scale']})")
    if not rows:
        raise DataError(f"{scene_set.root}: no scene left to evaluate")
    total = scores_from_confusion(pooled.matrix(), ["background", "water"])
    result = {"scene_set": scene_set.name, "root": str(scene_set.root), "scenes": len(rows), "left_out": left_out,
              "pooled_mean_iou": round(total["mean_iou"], 4), "pooled_water_iou": round(total["water_iou"], 4),
              "mean_of_scene_mean_iou": round(float(np.mean([r["mean_iou"] for r in rows])), 4),
              "worst_scene": min(rows, key=lambda r: r["mean_iou"])["scene"],
              "confusion_matrix": pooled.matrix().tolist(), "per_scene": rows}
    ref = predictor.run_info.get("input_stats")
    if ref and all(r["unlike_training"] != "" for r in rows):
        result["unlike_training"] = unlike_summary(np.array([r["unlike_training"] for r in rows], float),
                                                   np.array([r["mean_iou"] for r in rows]), ref["threshold"])
    fields = ["scene", "mean_iou", "water_iou", "true_water", "predicted_water", "unlike_training", "mean_entropy",
              "scored_pixels", "scale", "scale_from", "seconds"]
    write_csv_atomic(out_dir / "per_scene.csv", fields, rows, extrasaction="ignore", lineterminator="\n")
    write_json_atomic(out_dir / "metrics.json", result)
    return result
