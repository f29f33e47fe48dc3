"""Training throughput of the seed U-Net (128 px, batch 32): fp32 NCHW eager vs the default path.

Prints the CPU model, the precision the default path uses, images/s of both measured side by side in
one run, the default path as a fraction of this machine's matmul roofline (matmul GFLOP/s in that
precision / 20 GFLOP per training image), and the projected time of the full seed recipe.

    python bench/train_throughput.py [--rounds 3] [--json out.json] [--recipe improved]

With --recipe, it also times that recipe's own training step (its model, batch, size, augmentation and
loss) in fp32 and in the default precision, and projects the recipe's full training time from each.
"""

from __future__ import annotations

import argparse
import json

import torch

from unetseg.throughput import SEED_TRAIN_GFLOP, TrainStep, interleaved_images_per_s, matmul_gflops
from unetseg.config import get_recipe
from unetseg.runtime import cpu_model, select_runtime


# training chips per epoch: the water-bodies split, or the EM recipes' grid chips of their training slices
RECIPE_CHIPS = {"isbi2012": 198, "epfl-em": 460}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="timed steps of each variant (median is kept)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--recipe", action="append", default=[], help="also time this recipe's step (repeatable)")
    args = ap.parse_args()

    precision = select_runtime("auto", "cpu").precision
    print(f"CPU: {cpu_model()} ({torch.get_num_threads()} threads); torch {torch.__version__}")
    print(f"default path: {precision} autocast + channels_last (--precision auto)")
    roof = {"fp32": matmul_gflops(torch.float32)}
    if precision == "bf16":
        roof["bf16"] = matmul_gflops(torch.bfloat16)
    for k, v in roof.items():
        print(f"matmul roofline {k}: {v:.0f} GFLOP/s -> bound {v / SEED_TRAIN_GFLOP:.1f} training img/s")

    ips = interleaved_images_per_s({
        "fp32 NCHW eager": TrainStep("fp32", channels_last=False, batch=args.batch),
        f"default ({precision} + channels_last)": TrainStep(precision, channels_last=True, batch=args.batch),
    }, rounds=args.rounds)
    bound = roof[precision] / SEED_TRAIN_GFLOP
    default_name = next(k for k in ips if k.startswith("default"))
    print(f"\n{'path':<34} {'img/s':>7} {'vs fp32':>8} {'of roofline':>12}")
    for name, v in ips.items():
        prec = precision if name == default_name else "fp32"
        print(f"{name:<34} {v:7.2f} {v / ips['fp32 NCHW eager']:7.2f}x {v / (roof[prec] / SEED_TRAIN_GFLOP):11.0%}")
    frac = ips[default_name] / bound
    print(f"\ndefault path: {frac:.0%} of the {precision} roofline (target >= 60%)")
    train_imgs, val_imgs, epochs = 2290, 250, 18
    seconds = epochs * (train_imgs / ips[default_name] + val_imgs / (3 * ips[default_name]))
    print(f"projected full seed recipe (18 epochs x 2290 chips + validation): {seconds / 3600:.2f} h")
    recipes = {}
    for name in args.recipe:
        recipe = get_recipe(name)
        chips = RECIPE_CHIPS.get(name, 2290)
        crops = round(recipe.scene_ratio * chips)  # scene crops drawn beside the chips in each epoch
        steps = {p: TrainStep.for_recipe(recipe, p) for p in dict.fromkeys(["fp32", precision])}
        r_ips = interleaved_images_per_s(steps, rounds=args.rounds)
        recipes[name] = {}
        for p, v in r_ips.items():
            minutes = recipe.epochs * (chips + crops) / v / 60
            recipes[name][p] = {"images_per_s": v, "projected_train_minutes": minutes}
            print(f"recipe {name} ({recipe.model.name}, width {recipe.model.base_width}, batch {recipe.batch_size}, "
                  f"{recipe.image_size} px, augmentation {'on' if recipe.augment else 'off'}), {p}: {v:.1f} img/s "
                  f"-> {recipe.epochs} epochs x {chips} chips" + (f" + {crops} scene crops" if crops else "")
                  + f" in {minutes:.0f} min (+ validation)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "precision": precision, "roofline_gflops": roof, "images_per_s": ips,
                       "fraction_of_roofline": frac, "projected_seed_hours": seconds / 3600, "recipes": recipes},
                      f, indent=1)


if __name__ == "__main__":
    main()
