"""`unetseg predict` over a folder of many small images against `unetseg evaluate` on the same images.

Both run the same model in this process, taking turns (--repeat turns; the ratio is the median of each
turn's ratio, as the machine's speed drifts): evaluate's img/s (its own
figure: the model over the decoded test chips at the training size, batch 32) and predict's img/s over the
real test chips as files, with `--scale fit` (everything counted: reading and decoding each file, the model,
resizing the probabilities back, and writing the mask PNG, overlay JPEG and the summary; and again with
--no-overlay). Goal: predict >= 50% of
evaluate's img/s. (tests/test_predict_folder.py checks that the masks are evaluate's.)

With --nproc N it then times the whole command (`unetseg predict ... --nproc 1` and `--nproc N`, start-up
included) over the chips copied --copies times, and prints the speed-up of N processes.

    python bench/predict_folder.py [--run runs/improved | --run water] [--data ../shared/data/water-bodies] [--repeat 5]
                                   [--nproc 2 --copies 4]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from unetseg.runtime import cpu_model, select_runtime

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "improved"),
                    help="a run folder, or a shipped model's name (water): no training needed")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("UNETSEG_DATA", REPO.parent / "shared" / "data" /
                                                                       "water-bodies")))
    ap.add_argument("--repeat", type=int, default=5, help="runs of each side; the best is kept")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--nproc", type=int, default=0, help="also time the command on 1 and on N processes")
    ap.add_argument("--copies", type=int, default=4, help="with --nproc: each chip this many times")
    args = ap.parse_args()
    from unetseg.zoo import resolve_run

    args.run = resolve_run(args.run)
    if not (args.run / "run.json").exists():
        raise SystemExit(f"{args.run}: not a run folder (train one, or give --run water)")
    if not (args.data / "Images").is_dir():
        raise SystemExit(f"{args.data}: no Images/ folder (set UNETSEG_DATA or --data)")

    from unetseg.checkpoint import load_for_inference, resolve_checkpoint
    from unetseg.config import PredictConfig
    from unetseg.data.cache import load_chips
    from unetseg.data.folder import scan_folder
    from unetseg.evaluation import evaluate_chips
    from unetseg.predict.pipeline import Predictor, predict

    rt = select_runtime(args.precision)
    info = json.loads((args.run / "run.json").read_text())
    pairs = test_pairs(args.run, scan_folder(args.data), info)
    chips = load_chips(pairs, info["recipe"]["image_size"], progress=False)
    model, _ = load_for_inference(resolve_checkpoint(args.run, "best"), rt)  # as evaluate loads it
    predictor = Predictor(args.run, PredictConfig(scale="fit"), rt, progress=False, log=lambda m: None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "chips"
        folder.mkdir()
        for p in pairs:
            (folder / p.image.name).symlink_to(p.image.resolve())

        def run_predict(overlay: bool, out: Path) -> float:
            t0 = time.perf_counter()
            predict(args.run, [folder], out, PredictConfig(scale="fit", overlay=overlay), rt, progress=False,
                    log=lambda m: None, predictor=predictor)
            return len(pairs) / (time.perf_counter() - t0)

        evaluate_chips(model, chips, rt)  # warm-up of both
        run_predict(False, Path(tmp) / "warm-up")
        turns = []  # (evaluate, predict with the overlays (the default), predict --no-overlay) img/s
        for i in range(args.repeat):  # taking turns: this machine's speed drifts within minutes
            turns.append((evaluate_chips(model, chips, rt)[0]["inference_images_per_s"],
                          run_predict(True, Path(tmp) / f"out{i}"), run_predict(False, Path(tmp) / f"bare{i}")))
    ev, full, bare = (max(t[k] for t in turns) for k in range(3))
    ratios = [sorted(t[k] / t[0] for t in turns)[len(turns) // 2] for k in (1, 2)]  # median of each turn's ratio
    print(f"CPU: {cpu_model()}; runtime: {rt.describe()}; threads: {__import__('torch').get_num_threads()}")
    print(f"run: {args.run}; {len(pairs)} test chips (median {_median_side(pairs)} px), {args.repeat} turns")
    print(f"evaluate: {ev:7.1f} img/s best (model over decoded chips at {info['recipe']['image_size']} px)")
    print(f"predict:  {full:7.1f} img/s best (files in, mask PNG + overlay JPEG out, --scale fit)")
    print(f"predict:  {bare:7.1f} img/s best (the same with --no-overlay: mask PNGs only)")
    print("turns (evaluate / predict / --no-overlay): " + "; ".join("%.0f / %.0f / %.0f" % t for t in turns))
    print(f"ratio predict / evaluate, median of the turns: {ratios[0]:.2f} (goal >= 0.50); with --no-overlay "
          f"{ratios[1]:.2f}")
    if args.nproc > 1:
        times = {n: time_command(args.run, pairs, args.copies, n) for n in (1, args.nproc)}
        count = len(pairs) * args.copies
        for n, t in times.items():
            print(f"unetseg predict --nproc {n}: {count} images in {t:.1f} s ({count / t:.1f} img/s, start-up "
                  f"included)")
        print(f"speed-up of {args.nproc} processes: {times[1] / times[args.nproc]:.2f}x")


def test_pairs(run: Path, scan, info: dict) -> list:
    """The run's test chips: from its split.json, or (a shipped model carries none) the split `unetseg train`
    makes of this data with the run's recipe."""
    from unetseg.config import Recipe
    from unetseg.workflow import split_of

    split = split_of([p.stem for p in scan.pairs], Recipe.from_dict(info["recipe"]), scan.parts, run / "split.json")
    test = set(split["test"])
    return [p for p in scan.pairs if p.stem in test]


def time_command(run: Path, pairs, copies: int, nproc: int) -> float:
    """Seconds of the whole `unetseg predict --scale fit` command over the chips, each `copies` times."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "chips"
        folder.mkdir()
        for k in range(copies):
            for p in pairs:
                (folder / f"{k}_{p.image.name}").symlink_to(p.image.resolve())
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "unetseg.cli", "predict", str(run), str(folder), "--out",
                        str(Path(tmp) / "out"), "--scale", "fit", "-q", "--nproc", str(nproc)], check=True,
                       capture_output=True)
        return time.perf_counter() - t0


def _median_side(pairs) -> int:
    from PIL import Image

    sides = sorted(max(Image.open(p.image).size) for p in pairs)
    return sides[len(sides) // 2]


if __name__ == "__main__":
    main()
