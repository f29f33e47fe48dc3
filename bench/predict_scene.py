"""Memory and speed of `unetseg predict` on a Sentinel-2-sized scene: a synthetic 3-band uint16 GeoTIFF.

For a 10980 x 10980 raster and one of 4x the area (21960 x 21960) it runs the real command in a child
process (mask GeoTIFF + GeoJSON polygons, default settings) and prints its peak RSS and seconds, and it
times the model alone on tiles of the same size and batch in this process, before and after. Goals:
peak RSS < 3 GB, peak RSS at 4x the area < 1.2x, whole-pipeline tiles/s >= 75% of model-only tiles/s.

    python bench/predict_scene.py [--run runs/improved] [--sizes 10980 21960] [--json out.json]

The rasters are written once into --work (default bench_out/) and reused. Without --run it uses
runs/improved if present, else the shipped `water` model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from unetseg.runtime import cpu_model, select_runtime
from unetseg.zoo import resolve_run

REPO = Path(__file__).resolve().parents[1]


def write_scene(path: Path, size: int, seed: int = 0, strip: int = 1024) -> None:
    """Smooth lakes and rivers (a low-frequency random field, thresholded) on textured land, written strip
    by strip: 3 bands (red, green, blue) of Sentinel-2-like reflectance x 10000, UTM 33N, 10 m pixels."""
    import rasterio
    from rasterio.transform import from_origin

    from unetseg.atomic import atomic_path

    rng = np.random.default_rng(seed)
    k = 24  # waves of 0.5 to 6 km: the field is (rows x k) @ (k x cols), cheap at any size
    wy, wx = (2 * np.pi / rng.uniform(50, 600, k)), (2 * np.pi / rng.uniform(50, 600, k))
    py, px = rng.uniform(0, 2 * np.pi, k), rng.uniform(0, 2 * np.pi, k)
    cols = np.cos(np.arange(size)[None, :] * wx[:, None] + px[:, None]).astype(np.float32)
    water_rgb = np.array([350, 550, 800], np.float32)[:, None, None]
    land_rgb = np.array([1700, 1500, 1100], np.float32)[:, None, None]
    profile = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint16", nodata=0, tiled=True,
                   blockxsize=512, blockysize=512, crs="EPSG:32633", transform=from_origin(300000, 5100000, 10, 10),
                   BIGTIFF="YES")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        for y0 in range(0, size, strip):
            y1 = min(size, y0 + strip)
            rows = np.cos(np.arange(y0, y1)[:, None] * wy[None, :] + py[None, :]).astype(np.float32)
            field = rows @ cols / np.sqrt(k)  # roughly N(0, 0.5)
            water = (field > 0.55)[None]
            texture = rng.integers(0, 400, (3, y1 - y0, size), dtype=np.uint16)
            ds.write(np.where(water, water_rgb, land_rgb).astype(np.uint16) + texture,
                     window=rasterio.windows.Window(0, y0, size, y1 - y0))


def run_predict(run: Path, raster: Path, out: Path, extra: list[str]) -> dict:
    """The real command in a child process; its own peak RSS and the summary it wrote.

    Peak RSS is VmHWM from /proc/self/status at exit: ru_maxrss would include this (parent) process's
    memory, which the child inherits across fork + exec.
    """
    report = out.with_suffix(".rss.json")
    code = (
        "import json, re, runpy, sys\n"
        f"sys.argv = ['unetseg', 'predict', {str(run)!r}, {str(raster)!r}, '--out', {str(out)!r}, "
        f"'--overwrite', '--quiet'] + {extra!r}\n"
        "try:\n    runpy.run_module('unetseg.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code or 0\nelse:\n    code = 0\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        f"open({str(report)!r}, 'w').write(json.dumps({{'peak_rss_mb': hwm / 1024, 'code': code}}))\n"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    rss = json.loads(report.read_text())
    if rss["code"]:
        raise SystemExit(f"predict failed on {raster} (exit {rss['code']})")
    row = json.loads((out / "predictions.json").read_text())["inputs"][0]
    return {**row, "peak_rss_mb": round(rss["peak_rss_mb"], 1), "process_seconds": round(wall, 2)}


def model_only_tiles_per_s(run: Path, tile: int, batch: int, rounds: int = 20) -> float:
    """The model alone (input conversion, forward, probabilities) on random uint8 tiles of predict's size."""
    import torch

    from unetseg.checkpoint import load_checkpoint, resolve_checkpoint
    from unetseg.inference import predict_probs, to_input

    rt = select_runtime("auto")
    model, _ = load_checkpoint(resolve_checkpoint(run), rt.device)
    tiles = np.random.default_rng(0).integers(0, 256, (batch, tile, tile, 3), dtype=np.uint8)
    times = []
    with torch.inference_mode():
        predict_probs(model, to_input(tiles, rt.device), rt)  # warm-up
        for _ in range(rounds):
            t0 = time.perf_counter()
            predict_probs(model, to_input(tiles, rt.device), rt).cpu()
            times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def default_run() -> Path:
    """runs/improved if trained here, else the shipped `water` model (nothing to train)."""
    return REPO / "runs/improved" if (REPO / "runs/improved/best.safetensors").exists() else resolve_run("water")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a run folder or a shipped model's name (default: runs/improved, else water)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10980, 21960], help="raster sides in pixels")
    ap.add_argument("--work", type=Path, default=REPO / "bench_out", help="where rasters and outputs go")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run = resolve_run(args.run) if args.run else default_run()
    rt = select_runtime("auto")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); precision {rt.describe()}; run {run}")

    model_rates = [model_only_tiles_per_s(run, args.tile, args.batch)]
    rows = []
    runs = [(size, "geojson") for size in args.sizes] + [(args.sizes[0], "none")]
    for size, vectors in runs:
        raster = args.work / f"scene_{size}.tif"
        if not raster.exists():
            t0 = time.perf_counter()
            write_scene(raster, size)
            print(f"wrote {raster} ({raster.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
        row = run_predict(run, raster, args.work / f"out_{size}_{vectors}",
                          ["--tile", str(args.tile), "--batch-size", str(args.batch), "--vectors", vectors])
        model_rates.append(model_only_tiles_per_s(run, args.tile, args.batch))
        rows.append({"size": size, "vectors": vectors, **row})
    model_rate = float(np.median(model_rates))

    print(f"\nmodel only ({args.tile} px tiles, batch {args.batch}): {model_rate:.2f} tiles/s "
          f"(median of {len(model_rates)} measurements, one before and one after each run: "
          f"{', '.join(f'{r:.2f}' for r in model_rates)})")
    print(f"{'raster':>14} {'polygons':>9} {'tiles':>6} {'seconds':>8} {'tiles/s':>8} {'of model':>9} {'peak RSS':>10} "
          f"{'water':>7}")
    for r in rows:
        r["fraction_of_model"] = round(r["tiles_per_s"] / model_rate, 3)
        print(f"{r['size']:>6}x{r['size']:<7} {str(r['polygons'] if r['vectors'] != 'none' else 'off'):>9} "
              f"{r['tiles']:>6} {r['seconds']:>8.1f} {r['tiles_per_s']:>8.2f} {r['fraction_of_model']:>8.0%} "
              f"{r['peak_rss_mb']:>7.0f} MB {100 * r['water_fraction']:>6.1f}%")
    result = {"cpu": cpu_model(), "runtime": rt.describe(), "run": str(run), "model_only_tiles_per_s": model_rate,
              "model_only_measurements": model_rates, "rasters": rows}
    if len(args.sizes) >= 2:
        growth = rows[len(args.sizes) - 1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        area = (args.sizes[-1] / args.sizes[0]) ** 2
        result["rss_growth"] = round(growth, 3)
        print(f"\npeak RSS at {area:.0f}x the area: {growth:.2f}x (goal < 1.20x)")
    print(f"peak RSS {max(r['peak_rss_mb'] for r in rows):.0f} MB (goal < 3000 MB); whole pipeline "
          f"{min(r['fraction_of_model'] for r in rows):.0%} of model-only tiles/s at worst (goal >= 75%)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
