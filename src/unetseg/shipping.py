"""Making a shipped model from a trained run (`unetseg ship`): float16 weights checked against float32, at most
5 MB, with the run's description and a model card, into unetseg/zoo/NAME-vN/ (see zoo.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .errors import DataError
from .zoo import MAX_BYTES

RUN_KEYS = ("recipe", "spec", "chip_scale", "model_gsd", "input_stats", "scenes", "counts", "parameters",
            "train_seconds", "epochs_run", "runtime", "cpu", "data")


def chip_parity(full: Path, half: Path) -> dict:
    """float32 vs float16 weights on the run's test chips: mask agreement and the largest probability change."""
    import numpy as np

    from .checkpoint import load_checkpoint
    from .config import Recipe
    from .inference import predict_chips, to_classes
    from .runtime import select_runtime
    from .runfolder import RunFolder
    from .workflow import load_data

    info = RunFolder(full).info()
    recipe = Recipe.from_dict(info["recipe"])
    rd = load_data(Path(info["data"]), recipe, info.get("skip_bad", False),
                   split_file=RunFolder(full).split_path, progress=False)
    images = np.asarray(rd.part("test").images)
    rt = select_runtime("fp32", "cpu")
    probs = [predict_chips(load_checkpoint(RunFolder(p).checkpoint())[0], images, rt) for p in (full, half)]
    classes = [to_classes(p) for p in probs]
    return {"mask_agreement": float((classes[0] == classes[1]).mean()),
            "max_probability_change": float(np.abs(probs[0] - probs[1]).max()), "parity_images": len(images)}


def metrics_table(run_dir: Path) -> str:
    """A Markdown table of every evaluation the run folder holds (test chips, scene sets)."""
    from .runfolder import RunFolder

    lines = ["| evaluation set | images | mean IoU | water IoU |", "|---|---|---|---|"]
    score = (lambda v: "-" if v is None else f"{v:.4f}")  # null: undefined (no water drawn or found)
    d = RunFolder(run_dir).metrics()
    if d:
        lines.append(f"| water-bodies test chips | {d['test_images']} | {score(d['mean_iou'])} | "
                     f"{score(d['water_iou'])} |")
    for p in sorted(Path(run_dir).glob("scenes-*/metrics.json")):
        d = json.loads(p.read_text())
        lines.append(f"| {d['scene_set']} (pooled; worst scene {d['worst_scene']}) | {d['scenes']} scenes | "
                     f"{score(d['pooled_mean_iou'])} | {score(d['pooled_water_iou'])} |")
    return "\n".join(lines)


def ship(run_dir: Path, name: str, version: int, out: Path, card: str, overwrite: bool = False,
         parity: Callable[[Path, Path], dict] = chip_parity) -> dict:
    """Write RUN's best weights (float16) with its run.json and a model card into OUT/NAME-vVERSION.

    `parity(fp32_run, fp16_run)` compares the two on held-out data and returns figures including
    `mask_agreement`; below 0.999 nothing is written."""
    from .checkpoint import load_pair, save_pair
    from .atomic import atomic_dir, check_output_dir, sha256_file, write_text_atomic
    from .runfolder import RunFolder

    info = RunFolder(run_dir).info()
    tensors, meta = load_pair(RunFolder(run_dir).checkpoint())
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    target = Path(out) / f"{name}-v{version}"
    check_output_dir(target, overwrite)
    with atomic_dir(target) as tmp:
        save_pair(tmp, "best", half, {k: v for k, v in meta.items() if k not in ("weights", "sha256", "versions")}
                  | {"dtype": "float16", "shipped_as": f"{name}-v{version}", "from_run": Path(run_dir).name})
        RunFolder(tmp).write_info({k: info[k] for k in RUN_KEYS if k in info})
        figures = parity(Path(run_dir), tmp)
        if figures["mask_agreement"] < 0.999:
            raise DataError(f"float16 weights change {100 * (1 - figures['mask_agreement']):.3f}% of the mask "
                            f"pixels (over 0.1%); not shipped")
        size = RunFolder(tmp).checkpoint().stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"{size:,} bytes of weights: over the {MAX_BYTES:,} bytes a shipped model may have")
        write_text_atomic(tmp / "MODEL_CARD.md", card.format(name=name, version=version, run=Path(run_dir).name,
                                                             figures=metrics_table(run_dir), bytes=size,
                                                             epochs=info.get("epochs_run", "?"), **figures))
        digest = sha256_file(RunFolder(tmp).checkpoint())
    return {"folder": str(target), "sha256": digest, "bytes": size, **figures}
