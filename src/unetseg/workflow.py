"""Run folders: prepare data and split, train, evaluate, report. The CLI calls these and nothing else."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .config import ModelConfig, Recipe, SplitConfig
from .data.cache import Chips, load_chips
from .errors import DataError
from .zoo import is_shipped, resolve_run
from .data.folder import Pair, median_chip_scale, scan_folder
from .data.spec import DatasetSpec, load_spec
from .data.split import check_split, load_split, make_split, save_split
from .evaluation import SEED_MEAN_IOU, evaluate_run
from .atomic import check_output_dir, remove_stale_temporaries, write_text_atomic
from .distributed import World
from .runfolder import RunFolder
from .runs import train_minutes
from .runtime import Runtime, cpu_model
from .head import head_of
from .training import train

if TYPE_CHECKING:
    from .data.scenes import ScenePool

DEFAULT_DATA = Path("../shared/data/water-bodies")


def default_data_dir() -> Path:
    """UNETSEG_DATA, or ../shared/data/water-bodies."""
    return Path(os.environ.get("UNETSEG_DATA") or DEFAULT_DATA)


def shared_dataset_dir(name: str, env: str) -> Path:
    """$ENV; else the folder NAME beside $UNETSEG_DATA's (so the one setting finds the shared data sets);
    else ../shared/data/NAME."""
    if os.environ.get(env):
        return Path(os.environ[env])
    beside = Path(os.environ.get("UNETSEG_DATA") or DEFAULT_DATA).parent / name
    return beside if beside.is_dir() else DEFAULT_DATA.parent / name


def default_scenes_dir() -> Path:
    """UNETSEG_SCENES, or esw-scenes beside the water-bodies data: the scenes recipes with scene crops train on."""
    return shared_dataset_dir("esw-scenes", "UNETSEG_SCENES")


@dataclasses.dataclass
class SceneData:
    """Scenes for training: random crops of the training scenes each epoch, a fixed grid of the others."""

    path: Path
    split: dict[str, list[str]]
    train: "ScenePool"
    val: "ScenePool"


def load_scene_data(path: Path, recipe: Recipe, split: dict[str, list[str]] | None = None,
                    channels: int = 3) -> SceneData:
    """Read every scene into memory and split them by scene (never by crop), or keep a run's split."""
    from .data.scenes import ScenePool, load_scene, load_scene_set, split_scenes

    if not recipe.model_gsd:
        raise ValueError(f"recipe {recipe.name!r} mixes in scene crops but sets no model_gsd (metres per pixel)")
    scene_set = load_scene_set(path)
    names = [s.name for s in scene_set.scenes]
    split = split or split_scenes(names, recipe.scene_val, recipe.split_seed)
    missing = [n for n in split["train"] + split["val"] if n not in names]
    if missing:
        raise DataError(f"{path}: scene {missing[0]!r} of the run's split is not there")
    if not split["train"] or not split["val"]:
        raise DataError(f"{path}: {len(names)} scene(s): too few to hold some out for validation")
    loaded = {s.name: load_scene(s, channels, recipe.scene_gsd) for s in scene_set.scenes
              if s.name in split["train"] + split["val"]}
    pool = {part: ScenePool([loaded[n] for n in split[part]], recipe.image_size, recipe.model_gsd,
                            tuple(recipe.scene_scale) if part == "train" else (1.0, 1.0)) for part in ("train", "val")}
    return SceneData(Path(path), split, pool["train"], pool["val"])


def with_scenes(train: Chips, val: Chips, recipe: Recipe, scenes: SceneData | None):
    """The validation chips plus a grid of the validation scenes, and the per-epoch crop function (or None)."""
    if scenes is None:
        return val, None, 0
    images, labels = scenes.val.grid()
    val = Chips(list(val.stems) + [f"scene-crop-{i}" for i in range(len(images))],
                np.concatenate([np.asarray(val.images), images]), np.concatenate([np.asarray(val.masks), labels]))
    count = round(recipe.scene_ratio * len(train.stems))
    return val, (lambda epoch: scenes.train.crops(count, seed=recipe.seed * 100_003 + epoch)), count


def resolve_data(data: Path | None, out: Path) -> tuple[Path, str]:
    """(folder, description): --data; else UNETSEG_DATA (or ../shared/data/water-bodies) if it exists; else
    synthetic scenes made beside the run folder."""
    if data is not None:
        return Path(data), str(data)
    if default_data_dir().is_dir():
        return default_data_dir(), f"real data at {default_data_dir()}"
    from .data.synth import SynthConfig, write_synthetic

    synthetic = out.parent / f"{out.name}-synthetic-data"
    if not (synthetic / "Images").is_dir():
        write_synthetic(synthetic, SynthConfig(), overwrite=True)
    return synthetic, f"synthetic scenes in {synthetic} (no real data found at {default_data_dir()})"


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """A run folder must be new or empty, unless --overwrite (which clears it)."""
    check_output_dir(out, overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclasses.dataclass
class RunData:
    chips: Chips
    split: dict[str, list[str]]
    messages: list[str]
    spec: DatasetSpec
    pairs: list[Pair]  # the image/mask files scanned (before --limit)
    fixed: dict[str, str] = dataclasses.field(default_factory=dict)  # files in a fixed part (file -> part)

    def part(self, name: str) -> Chips:
        return self.chips.subset(self.split[name])


def chip_plan(recipe: Recipe):
    """How this recipe turns files into chips (data.cache.ChipPlan)."""
    from .data.cache import ChipPlan

    return ChipPlan(recipe.image_size, recipe.chips, recipe.chip_stride, recipe.border_weight, recipe.border_sigma)


def split_config(recipe: Recipe) -> SplitConfig:
    return SplitConfig(val=recipe.split_val, seed=recipe.split_seed)


def load_data(data: Path, recipe: Recipe, skip_bad: bool, split_file: Path | None = None,
              progress: bool = True, limit: int | None = None,
              trained: tuple[Path, ModelConfig] | None = None) -> RunData:
    """Scan, decode (cached) and split by file (grid chips of one file stay together); reuse `split_file` when it
    exists so the test set never changes. The dataset's description: DATA/dataset.yaml, else the recipe's.

    `trained` (run folder, model config): refuse data whose channels or classes differ from the model's.
    """
    spec = load_spec(data, recipe.mask_threshold, recipe.dataset)
    scan = scan_folder(data, spec)
    if trained and (len(spec.channels) != trained[1].in_channels or spec.model_classes != trained[1].num_classes
                    or spec.multilabel != trained[1].multilabel):
        raise DataError(f"{data}: data has {len(spec.channels)} channel(s) and {len(spec.class_names)} classes"
                        f"{' (multi-label)' if spec.multilabel else ''}, but {trained[0]} was trained on "
                        f"{trained[1].in_channels} channel(s) and {max(2, trained[1].num_classes)} classes"
                        f"{' (multi-label)' if trained[1].multilabel else ''}")
    scanned = {p.stem for p in scan.pairs}
    missing = sorted(s for s in scan.parts if s not in scanned)
    if missing:
        raise DataError(f"{data}: the dataset description holds out {missing[0]!r}, which is not among its files")
    messages = [m for m in [scan.unpaired_message()] if m]
    pairs = scan.pairs[:limit] if limit else scan.pairs
    chips = load_chips(pairs, chip_plan(recipe), spec, skip_bad=skip_bad, progress=progress)
    if chips.bad:
        messages.append(f"{len(chips.bad)} unreadable file(s) skipped (--skip-bad): " + "; ".join(
            list(chips.bad.values())[:3]))
    messages += list(dict.fromkeys(chips.notes))[:5]  # a note every mask shares, once
    split = split_of(chips.files, recipe, scan.parts, split_file)
    return RunData(chips, split, messages, spec, scan.pairs, scan.parts)


def split_of(names: list[str], recipe: Recipe, parts: dict[str, str], split_file: Path | None = None) -> dict:
    """The split of these files: `split_file` when it exists (so the test set never changes), else the recipe's
    seeded hash of the names, with the parts the dataset description fixes."""
    if split_file is not None and split_file.exists():
        split = load_split(split_file)
        check_split(split, names, split_file)
        return split
    return make_split(names, split_config(recipe), parts)


def run_train(data: Path, out: Path, recipe: Recipe, rt: Runtime, skip_bad: bool = False, overwrite: bool = False,
              progress: bool = True, log: Callable[[str], None] = print, limit: int | None = None,
              tensorboard: bool = False, world: World = World(), gsd: float | None = None,
              scenes: Path | None = None, init: Path | str | None = None) -> dict:
    """`unetseg train`: a run folder with split.json, run.json, checkpoints, history.csv and curves.png.

    `init` (a run folder or a shipped model's name): start from its best weights instead of random ones.

    `gsd` (metres per image pixel; else dataset.yaml's) gives the ground size of a model pixel, which
    predict's --scale auto matches to each georeferenced input's resolution. Recipes with scene crops
    (scene_ratio > 0) also read `scenes` (default: UNETSEG_SCENES or ../shared/data/esw-scenes).

    Under torchrun every process loads the data and trains its share; rank 0 alone writes the run folder.
    """
    if tensorboard:
        try:
            import tensorboard as _  # noqa: F401
        except ImportError:
            raise DataError("--tensorboard needs the tensorboard package: pip install tensorboard "
                            "(or unetseg[tensorboard])") from None
    if world.main:
        prepare_out_dir(out, overwrite)
    world.barrier()
    log = log if world.main else (lambda m: None)
    split_cfg = split_config(recipe)
    rd = load_data(data, recipe, skip_bad, progress=progress and world.main, limit=limit)
    for m in rd.messages:
        log(f"note: {m}")
    # the data decides the model's input channels and classes
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(
        recipe.model, in_channels=len(rd.spec.channels), num_classes=rd.spec.model_classes,
        multilabel=rd.spec.multilabel))
    init_state = None
    if init is not None:
        from .checkpoint import initial_weights

        init_state, init_info = initial_weights(init, recipe.model)
    if world.main:
        save_split(RunFolder(out).split_path, rd.split, split_cfg, rd.fixed)
    train_stems = set(rd.split["train"])
    chip_scale = 1.0 if recipe.chips == "grid" else \
        median_chip_scale([p.image for p in rd.pairs if p.stem in train_stems], recipe.image_size)
    if gsd is not None and not gsd > 0:
        raise ValueError(f"--gsd {gsd}: must be a positive number of metres")
    gsd = gsd or rd.spec.gsd
    run_info = {"data": str(Path(data).resolve()), "recipe": recipe.to_dict(), "spec": rd.spec.to_dict(),
                "skip_bad": skip_bad,
                "bad_files": rd.chips.bad, "data_notes": rd.messages, "cpu": cpu_model(), "runtime": rt.describe(),
                "counts": {k: len(v) for k, v in rd.split.items()}, "limit": limit,
                "chip_scale": round(chip_scale, 4),  # predict --scale auto: the median training resize factor
                "model_gsd": round(gsd / chip_scale, 4) if gsd else None,  # metres per model pixel
                "processes": world.size}
    if init is not None:
        run_info["init"] = init_info
    scene_data = None
    if recipe.scene_ratio > 0:
        scene_data = load_scene_data(scenes or default_scenes_dir(), recipe, channels=len(rd.spec.channels))
        run_info["scenes"] = {"data": str(scene_data.path.resolve()), **scene_data.split}
        run_info["model_gsd"] = recipe.model_gsd
        log(f"scenes: {len(scene_data.split['train'])} for training, {len(scene_data.split['val'])} for validation "
            f"({scene_data.path})")
    train_chips = rd.part("train")
    val, extra, count = with_scenes(train_chips, rd.part("val"), recipe, scene_data)
    run_info["input_stats"] = training_input_stats(train_chips, extra, count)
    if world.main:
        RunFolder(out).write_info(run_info)
    result = train(train_chips, val, recipe, out, rt, progress=progress, log=log,
                   tensorboard_dir=out / "tensorboard" if tensorboard else None, world=world, extra=extra,
                   extra_count=count, init_state=init_state)
    _finish_run_info(out, run_info, result, world)
    return result


def _finish_run_info(out: Path, run_info: dict, result: dict, world: World) -> None:
    run_info.update(train_seconds=result["seconds"], parameters=result["parameters"],
                    epochs_run=len(result["history"]))
    if world.main:
        RunFolder(out).write_info(run_info)
    world.barrier()


def training_input_stats(train: Chips, extra: Callable | None = None, count: int = 0) -> dict:
    """The look of the training images (ood.fit_stats): the chips, and one epoch's scene crops if any."""
    from .ood import fit_stats, image_features

    features = [image_features(np.asarray(train.images[i:i + 512])) for i in range(0, len(train.stems), 512)]
    if extra is not None and count:
        features.append(image_features(extra(1)[0]))
    return fit_stats(np.concatenate(features))


def recorded_scenes(info: dict, recipe: Recipe, rd: "RunData") -> SceneData | None:
    """The scenes a run trained on, with the split its run.json records (None for chips-only runs)."""
    if not info.get("scenes"):
        return None
    return load_scene_data(Path(info["scenes"]["data"]), recipe, {k: info["scenes"][k] for k in ("train", "val")},
                           len(rd.spec.channels))


def ensure_input_stats(run_dir: Path, info: dict, rd: "RunData") -> dict:
    """Runs trained before input_stats existed get them now, from their own training data (saved in run.json)."""
    if info.get("input_stats") or "recipe" not in info:
        return info
    recipe = Recipe.from_dict(info["recipe"])
    scene_data = recorded_scenes(info, recipe, rd)
    train_chips = rd.part("train")
    _, extra, count = with_scenes(train_chips, rd.part("val"), recipe, scene_data)
    info = {**info, "input_stats": training_input_stats(train_chips, extra, count)}
    RunFolder(run_dir).write_info(info)
    return info


def resume_train(run_dir: Path, rt: Runtime, progress: bool = True, log: Callable[[str], None] = print,
                 world: World = World()) -> dict:
    """`unetseg train --resume RUN`: go on from RUN/resume.* (the last finished epoch, or where Ctrl-C stopped)
    with the run's own data, split and recipe."""
    from .resume import RESUME_TAG, load_training_state

    info = RunFolder(run_dir).info()
    if not RunFolder(run_dir).checkpoint(RESUME_TAG).exists() and info.get("epochs_run"):
        raise DataError(f"{run_dir}: training finished ({info['epochs_run']} epoch(s)); there is nothing to resume")
    recipe = Recipe.from_dict(info["recipe"], strict=True)
    if world.main:
        for p in remove_stale_temporaries(run_dir):
            log(f"removed {p.name}, left by a save that was cut short")
    state = load_training_state(run_dir)
    if state["processes"] != world.size:
        raise DataError(f"{run_dir}: was trained on {state['processes']} process(es); resume it with "
                        f"--nproc {state['processes']} (the data order depends on it)")
    rd = load_data(Path(info["data"]), recipe, info.get("skip_bad", False),
                   split_file=RunFolder(run_dir).split_path, progress=progress and world.main, limit=info.get("limit"),
                   trained=(run_dir, recipe.model))
    scene_data = recorded_scenes(info, recipe, rd)
    train_chips = rd.part("train")
    val, extra, count = with_scenes(train_chips, rd.part("val"), recipe, scene_data)
    result = train(train_chips, val, recipe, run_dir, rt, progress=progress, log=log, world=world,
                   tensorboard_dir=run_dir / "tensorboard" if (run_dir / "tensorboard").is_dir() else None,
                   resume=state, extra=extra, extra_count=count)
    _finish_run_info(run_dir, info, result, world)
    return result


def run_evaluate(run_dir: Path, rt: Runtime, data: Path | None = None, checkpoint: str = "best",
                 progress: bool = True, tta: str = "none", compile: bool = False) -> dict:
    """`unetseg evaluate`: the test files of split.json, decoded as in training."""
    if is_shipped(resolve_run(run_dir)):  # by its name or its folder: the package is no place for outputs
        raise DataError(f"{run_dir}: a shipped model has no test split of its own here (its scores on the chips "
                        "are in its model card); score it on scenes: unetseg evaluate "
                        f"{run_dir} --scenes DIR --out DIR")
    info = RunFolder(run_dir).info()
    recipe = Recipe.from_dict(info["recipe"])
    rd = load_data(Path(data or info["data"]), recipe, info.get("skip_bad", False),
                   split_file=RunFolder(run_dir).split_path, progress=progress, trained=(run_dir, recipe.model))
    if data is None:  # the run's own training data: what its input statistics describe
        info = ensure_input_stats(run_dir, info, rd)
    extra = {}
    if recipe.chips == "grid":  # chips cut from larger files: score the whole files too, as predict sees them
        from .evaluation import evaluate_files

        test = set(rd.split["test"])
        extra["whole_files"] = evaluate_files(run_dir, recipe, [p for p in rd.pairs if p.stem in test], rd.spec,
                                              rt, checkpoint, tta)
    return evaluate_run(run_dir, rd.part("test"), rt, checkpoint, class_names=rd.spec.class_names, tta=tta,
                        compile=compile, input_stats=info.get("input_stats"), head=head_of(recipe.model), extra=extra)


def run_evaluate_scenes(run_dir: Path | None, scenes: Path, rt: Runtime, cfg, out: Path | None = None,
                        log: Callable[[str], None] = print) -> dict:
    """`unetseg evaluate [RUN] --scenes DIR`: whole scenes through predict's path, scored per scene and pooled.
    Scenes of the same folder that the run trained on are left out."""
    from .data.scenes import load_scene_set
    from .evaluation import evaluate_scenes
    from .predict.pipeline import Predictor

    scene_set = load_scene_set(scenes)
    given, predictor = run_dir, Predictor(run_dir, cfg, rt, progress=False, log=log)
    run_dir = predictor.run_dir  # a shipped model's name resolved to its folder
    skip: frozenset[str] = frozenset()
    trained = predictor.run_info.get("scenes") if run_dir is not None else None
    if trained and Path(trained["data"]).resolve() == scene_set.root.resolve():
        skip = frozenset(trained["train"])
    suffix = "" if cfg.method == "unet" else f"-{cfg.method}"
    if out is None and run_dir is not None and is_shipped(run_dir):
        raise DataError(f"{given}: a shipped model's folder is part of the installed package: give --out DIR "
                        "for the scores and figures")
    out = Path(out) if out is not None else RunFolder(run_dir).scenes_dir(f"{scene_set.name}{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_scenes(predictor, scene_set, out, skip, log)
    return {**result, "out": str(out)}


def write_report(run_dir: Path, metrics: dict, data_desc: str, command: str) -> Path:
    """report.md: what ran, on what, how long, the scores beside the seed's, and the figures."""
    info = RunFolder(run_dir).info()
    r = info["recipe"]
    minutes = train_minutes(info)
    minutes = "-" if math.isnan(minutes) else f"{minutes:.1f} min"  # as `unetseg runs` shows it
    budget = f" (time budget {r['minutes']:g} min)" if r.get("minutes") else ""
    lines = [
        f"# unetseg run: {run_dir.name}", "",
        f"- data: {data_desc} ({info['counts']['train']} train / {info['counts']['val']} validation / "
        f"{info['counts']['test']} test {'files, cut into chips' if r.get('chips') == 'grid' else 'chips'})",
        f"- model: {r['model']['name']} (base width {r['model']['base_width']}, {info.get('parameters', 0):,} parameters)",
        f"- recipe: {r['name']}: {r['loss']}, {r['optimizer']} lr {r['lr']}, batch {r['batch_size']}, "
        f"{info.get('epochs_run')} of {r['epochs']} epochs, {r['image_size']} px",
        f"- machine: {info['runtime']}",
        f"- training time: {minutes}{budget}", f"- command: `{command}`", "",
    ]
    if list(metrics["per_class_iou"]) == ["background", "water"]:
        lines += water_table(metrics, r["image_size"])
    else:
        lines += class_table(metrics)
    lines += ["", "![training curves](curves.png)", "", "![test chips: image | true | predicted](test_predictions.png)",
              ""] + (["![per-image IoU](per_image_iou.png)", ""] if (run_dir / "per_image_iou.png").exists() else [])
    lines += [f"![{p.stem}: slice | truth | prediction]({p.name})\n" for p in sorted(run_dir.glob("slice_*.png"))
              if "-tta-" not in p.name and "-last" not in p.name]
    if info.get("data_notes"):
        lines += ["## Data notes", ""] + [f"- {m}" for m in info["data_notes"]] + [""]
    path = RunFolder(run_dir).report_path
    write_text_atomic(path, "\n".join(lines))
    return path


def water_table(metrics: dict, image_size: int) -> list[str]:
    """The report's scores of a water model, beside the seed's."""
    lines = [f"| metric (test, {image_size} px, threshold 0.5) | seed (Keras, 128 px) | this run |", "|---|---|---|",
             f"| mean IoU (water + background) | {SEED_MEAN_IOU:.3f} | **{metrics['mean_iou']:.4f}** |"]
    for key in ("water_iou", "dice", "precision", "recall", "pixel_accuracy"):
        if key in metrics:
            lines.append(f"| {key.replace('_', ' ')} | - | {metrics[key]:.4f} |")
    if "per_image_water_iou" in metrics:
        q = metrics["per_image_water_iou"]["quantiles"]
        lines.append(f"| per-image water IoU, median (IQR) | - | {q['0.5']:.3f} ({q['0.25']:.3f}-{q['0.75']:.3f}) |")
    return lines


# The U-Net paper's figures on the ISBI 2012 challenge's own (unpublished) test stack
PAPER_ISBI = {"pixel_error": 0.0611, "rand_error": 0.0382, "warping_error": 0.000353}


def class_table(metrics: dict) -> list[str]:
    """The report's scores of any other model: IoU and Dice per class, on the test chips and on the whole test
    files; the ISBI figures beside the U-Net paper's for membrane data."""
    whole = metrics.get("whole_files") or {}
    lines = ["| class | IoU (test chips) | Dice (test chips) |" + (" IoU (whole files) | Dice (whole files) |"
                                                                 if whole else ""),
             "|---|---|---|" + ("---|---|" if whole else "")]
    for name, iou in metrics["per_class_iou"].items():
        row = f"| {name} | {iou:.4f} | {metrics['per_class_dice'][name]:.4f} |"
        if whole:
            row += f" {whole['per_class_iou'][name]:.4f} | {whole['per_class_dice'][name]:.4f} |"
        lines.append(row)
    if "rand_error" in whole:
        lines += ["", f"| ISBI figure (mean of {whole['files']} whole test slices) | U-Net paper (challenge test "
                      "stack: other slices) | this run |", "|---|---|---|",
                  f"| pixel error | {PAPER_ISBI['pixel_error']} | **{whole['pixel_error']:.4f}** |",
                  f"| Rand error (foreground-restricted) | {PAPER_ISBI['rand_error']} | **{whole['rand_error']:.4f}** |",
                  f"| variation of information, split / merge (bits) | - | {whole['vi_split']:.3f} / "
                  f"{whole['vi_merge']:.3f} |"]
    return lines


def reproduce(data: Path, out: Path, recipe: Recipe, rt: Runtime, command: str, data_desc: str,
              skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, world: World = World(), gsd: float | None = None,
              scenes: Path | None = None) -> dict | None:
    """Train, evaluate, draw and report in one go (under torchrun: all train, rank 0 evaluates and reports)."""
    t0 = time.perf_counter()
    run_train(data, out, recipe, rt, skip_bad, overwrite, progress, log, world=world, gsd=gsd, scenes=scenes)
    if not world.main:
        return None
    from .evaluation import summary_lines

    metrics = run_evaluate(out, rt, progress=progress)
    write_report(out, metrics, data_desc, command)
    for line in summary_lines(metrics):
        log(line)
    log(f"{(time.perf_counter() - t0) / 60:.1f} min in all (the seed's test mean IoU: {SEED_MEAN_IOU}); report: "
        f"{out / 'report.md'}")
    return metrics
