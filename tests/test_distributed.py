"""DistributedDataParallel through torchrun on CPU (gloo): 2 processes train like 1 with the same global batch."""

import csv
import json
import subprocess
import sys

import pytest


def torchrun(nproc: int, data, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "unetseg", "train", "--data", str(data), "--out", str(out), "--model", "unet", "--base-width", "8",
           "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--precision", "fp32", "--quiet", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def losses(run):
    with open(run / "history.csv") as f:
        return [(float(row["train_loss"]), float(row["val_loss"])) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch_and_write_one_run(synth_data, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    torchrun(1, synth_data, one)
    r = torchrun(2, synth_data, two)
    assert r.stdout.count("epoch   1/2") == 1  # rank 0 alone logs
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 2
    for (ta, va), (tb, vb) in zip(a, b):
        assert tb == pytest.approx(ta, rel=1e-3) and vb == pytest.approx(va, rel=1e-3)
    files = sorted(p.name for p in two.iterdir())
    assert files == ["best.json", "best.safetensors", "curves.png", "history.csv", "last.json",
                     "last.safetensors", "run.json", "split.json"]  # one checkpoint of each, nothing per rank
    assert json.loads((two / "run.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_nproc_flag_starts_torchrun_and_refuses_an_uneven_batch(synth_data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "unetseg.cli", "train", "--data", str(synth_data), "--out",
                        str(tmp_path / "run"), "--model", "unet", "--base-width", "4", "--epochs", "1",
                        "--batch-size", "7", "--image-size", "32", "--nproc", "2", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert "running: torchrun" in r.stderr and "--nproc-per-node=2" in r.stderr
    assert r.returncode != 0 and "batch size 7 does not split evenly over 2 processes" in r.stderr
