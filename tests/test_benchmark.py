"""`unetseg benchmark`: every variant in one table and in JSON, ratios and roofline fractions that add up."""

import json
import subprocess
import sys

import pytest

from unetseg.benchmark import TRAIN_FLOP_FACTOR


@pytest.mark.slow
def test_benchmark_times_every_engine_and_writes_consistent_json(tmp_path):
    out = tmp_path / "bench.json"
    args = [sys.executable, "-m", "unetseg.cli", "benchmark", "--base-width", "4", "--image-size", "32",
            "--batch-size", "4", "--rounds", "2", "--no-compile", "--json", str(out)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "CPU: " in r.stdout and "fastest: training" in r.stdout and "data wait:" in r.stdout
    result = json.loads(out.read_text())
    rows = {(row["kind"], row["variant"]): row for row in result["rows"]}
    best = "bf16" if "bf16" in result["roofline_gflops"] else "fp32"
    expected = {("train", "fp32 eager (NCHW)"), ("train", f"{best} + channels_last"),
                ("infer", "fp32 eager (NCHW)"), ("infer", "fp32 + channels_last, packed"), ("infer", "onnxruntime fp32")}
    assert expected <= set(rows)
    assert not any("compiled" in variant for _, variant in rows)  # --no-compile
    for (kind, variant), row in rows.items():
        assert row["img_s"] > 0
        base = rows[(kind, "fp32 eager (NCHW)")]["img_s"]
        assert abs(row["vs_fp32_eager"] - row["img_s"] / base) <= 0.01 + 0.01 * row["vs_fp32_eager"]
        cost = result["forward_gflop"] * (TRAIN_FLOP_FACTOR if kind == "train" else 1)
        fraction = row["img_s"] * cost / result["roofline_gflops"][row["precision"]]
        assert abs(row["of_roofline"] - fraction) <= 0.002 + 0.01 * fraction
        assert variant.split()[0] in r.stdout
    assert rows[("train", "fp32 eager (NCHW)")]["vs_fp32_eager"] == 1.0
    assert 0 <= result["data_wait_fraction"] < 1
    assert result["best"]["infer"] in {v for k, v in rows if k == "infer"}
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists (use --overwrite" in again.stderr


def test_peers_bench_times_unetseg_without_tensorflow_installed():
    """bench/peers.py installs nothing: one unetseg cell runs and reports what it used."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "peers.py"
    r = subprocess.run([sys.executable, str(script), "--cell", "unetseg", "fp32", "infer", "--steps", "1",
                        "--warmup", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cell = json.loads(r.stdout.strip().splitlines()[-1])
    assert cell["img_s"] > 0 and cell["parameters"] == 8_639_745  # the seed's U-Net, as SEED.md counts it
    assert "fp32" in cell["used"] and "threads" in cell["used"]


def _peers_module():
    """bench/peers.py as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("peers", Path(__file__).resolve().parents[1] / "bench" / "peers.py")
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    return peers


def test_peers_bench_compares_the_frameworks_round_by_round():
    """The ratio is the median of each round's unetseg / Keras ratio: a round where the machine slowed down
    for both does not count against either; infer-compiled stands against Keras' one inference figure."""
    peers = _peers_module()
    results = {}
    for task in ("train", "infer", "infer-compiled"):
        for precision in ("fp32", "bf16"):
            results[("unetseg", task, precision)] = [10.0, 4.0, 9.0]  # round 2: the machine at half speed...
            if task != "infer-compiled":
                results[("keras", task, precision)] = [8.0, 2.0, None]  # ...and Keras failed in round 3
    rows = {(r["task"], r["precision"]): r for r in peers.summarise(results, ["keras", "unetseg"])}
    assert len(rows) == 6
    row = rows[("train", "fp32")]
    assert row["ratios"] == [1.25, 2.0] and row["ratio"] == 1.625
    assert row["keras"] == 5.0 and row["unetseg"] == 9.0  # medians of the rounds that gave a figure
    assert rows[("infer-compiled", "bf16")]["ratios"] == [1.25, 2.0]
    alone = peers.summarise({k: v for k, v in results.items() if k[0] == "unetseg"}, ["unetseg"])
    assert all(r["ratio"] is None and r["unetseg"] == 9.0 for r in alone)


def test_peers_bench_leaves_out_bf16_where_the_cpu_has_no_native_bf16():
    """On an AVX2-only CPU bf16 runs ~500x slower than fp32: the default measures what the CPU runs natively."""
    peers = _peers_module()
    assert peers.chosen_precisions("native", bf16_native=False) == ("fp32",)
    assert peers.chosen_precisions("native", bf16_native=True) == ("fp32", "bf16")
    assert peers.chosen_precisions("all", bf16_native=False) == ("fp32", "bf16")
    assert peers.chosen_precisions("bf16", bf16_native=False) == ("bf16",)
    results = {("unetseg", t, "fp32"): [3.0] for t in ("train", "infer", "infer-compiled")}
    assert [r["precision"] for r in peers.summarise(results, ["unetseg"], ("fp32",))] == ["fp32"] * 3
