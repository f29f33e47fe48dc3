"""A bounded load on `unetseg serve` over loopback: N requests, C at a time; p50/p95/p99 latency, requests/s,
errors. The server runs in a child process on 127.0.0.1 and is stopped at the end; nothing else is contacted.

    python bench/serve_load.py [--run runs/improved] [--requests 300] [--concurrency 8] [--json out.json]
    python bench/serve_load.py --size 1024 --concurrency 32 --requests 200    # memory under load

The image is a real test chip when UNETSEG_DATA has the data (else a synthetic 256 px scene), resized to
--size px a side if given. The same image is also timed with one request at a time, to show what
concurrency adds to latency. It prints the server's peak RSS (VmHWM) and counts the documented 503
answers (busy: more than --max-queue requests in the server), which the clients retry after Retry-After
as polite clients do; anything else is an error. Goal: peak RSS < 1.5 GB at 32 clients with a 1024 px
image, no errors but 503.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_scene import REPO, default_run  # noqa: E402

from unetseg.runtime import cpu_model, select_runtime  # noqa: E402


def test_image(work: Path, size: int | None = None) -> tuple[str, bytes]:
    data = Path(os.environ.get("UNETSEG_DATA") or REPO.parent / "shared/data/water-bodies") / "Images"
    if data.is_dir():
        chip = sorted(p for p in data.iterdir() if p.suffix.lower() == ".jpg")[0]
    else:
        from unetseg.data.synth import SynthConfig, write_synthetic

        folder = write_synthetic(work / "serve-chip", SynthConfig(n=1, min_size=256, max_size=256), progress=False,
                                 overwrite=True)
        chip = next((folder / "Images").iterdir())
    if not size:
        return chip.name, chip.read_bytes()
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(chip).convert("RGB").resize((size, size)).save(buf, format="PNG")
    return f"{chip.stem}_{size}px.png", buf.getvalue()


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder (default: runs/improved, else a quick synthetic run)")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--work", type=Path, default=REPO / "bench_out")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--size", type=int, help="resize the image to SIZE x SIZE px (a PNG)")
    ap.add_argument("--max-queue", type=int, default=8, help="the server's --max-queue")
    args = ap.parse_args()
    if not 1 <= args.requests <= 5000 or not 1 <= args.concurrency <= 64:
        ap.error("--requests 1..5000 and --concurrency 1..64 (a bounded load)")
    args.work.mkdir(parents=True, exist_ok=True)
    run = args.run or default_run(args.work)
    name, image = test_image(args.work, args.size)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "unetseg.cli", "serve", str(run), "--port", str(port),
                               "--max-queue", str(args.max_queue)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start: {server.stderr.read() if server.poll() is not None else ''}")
            time.sleep(0.2)
        client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.concurrency))

        busy = [0]

        def one(_: int) -> tuple[float, int]:
            """One request as a polite client makes it: on 503 it waits Retry-After (at most 2 s) and tries
            again, up to 50 times; the latency runs from the first try to the answer."""
            t0 = time.perf_counter()
            for _ in range(50):
                try:
                    r = client.post(f"{url}/v1/segment", files={"image": (name, image)})
                    status = r.status_code
                except httpx.HTTPError:
                    return time.perf_counter() - t0, 0
                if status != 503:
                    break
                busy[0] += 1
                time.sleep(min(2.0, float(r.headers.get("retry-after", 1))))
            return time.perf_counter() - t0, status

        one(0)  # warm-up
        serial = [one(i)[0] for i in range(min(20, args.requests))]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        client.close()
        peak = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = [t for t, status in results if status == 200] or [float("nan")]
    busy = busy[0]  # 503 answers along the way (each retried)
    errors = sum(status != 200 for _, status in results)
    rt = select_runtime("auto")
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "precision": rt.precision, "run": str(run),
              "image": name, "image_bytes": len(image), "requests": args.requests, "concurrency": args.concurrency,
              "errors": errors, "busy_503": busy, "max_queue": args.max_queue, "peak_rss_mb": round(peak),
              "requests_per_s": round(args.requests / wall, 2),
              "latency_s": {"p50": round(percentile(latencies, 0.5), 3), "p95": round(percentile(latencies, 0.95), 3),
                            "p99": round(percentile(latencies, 0.99), 3), "max": round(max(latencies), 3)},
              "one_at_a_time_s": {"p50": round(statistics.median(serial), 3),
                                  "requests_per_s": round(1 / statistics.mean(serial), 2)}}
    print(f"CPU: {report['cpu']} ({report['cores']} cores), {rt.precision}; run {run}; image {name} "
          f"({len(image):,} bytes)")
    print(f"{args.requests} requests, {args.concurrency} at a time: {report['requests_per_s']} requests/s, "
          f"latency p50 {report['latency_s']['p50']} s, p95 {report['latency_s']['p95']} s, "
          f"p99 {report['latency_s']['p99']} s; errors {errors}; 503 answers retried (--max-queue {args.max_queue}): "
          f"{busy}")
    print(f"server peak RSS: {report['peak_rss_mb']} MB")
    print(f"one at a time: p50 {report['one_at_a_time_s']['p50']} s, {report['one_at_a_time_s']['requests_per_s']} "
          "requests/s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if errors:
        raise SystemExit(f"{errors} request(s) failed")


if __name__ == "__main__":
    main()
