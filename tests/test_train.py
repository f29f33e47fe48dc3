"""Training, evaluation and the main job end to end on small synthetic data."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from unetseg.checkpoint import load_checkpoint, load_for_inference
from unetseg.inference import OneDNNConv
from unetseg.config import ModelConfig, Recipe, get_recipe
from unetseg.data import DataError
from unetseg.runtime import select_runtime
from unetseg.workflow import reproduce, run_evaluate, run_train

TINY = Recipe(name="tiny", model=ModelConfig(name="unet-bn", base_width=8, depth=3, batch_norm=True),
              epochs=8, batch_size=8, image_size=32, lr=3e-3, early_stopping_patience=0, monitor="val_miou")


@pytest.fixture(scope="module")
def trained_run(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    rt = select_runtime("fp32")
    result = run_train(synth_data, out, TINY, rt, progress=False, log=lambda s: None)
    return out, result, rt


def test_run_folder_has_split_checkpoints_history_and_curves(trained_run):
    out, result, _ = trained_run
    for name in ("split.json", "run.json", "best.safetensors", "best.json", "last.safetensors", "last.json",
                 "history.csv", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    info = json.loads((out / "best.json").read_text())
    assert {"recipe", "validation", "sha256", "versions", "epoch"} <= set(info)
    assert info["versions"]["torch"].startswith("2.13")
    split = json.loads((out / "split.json").read_text())
    counts = split["counts"]
    assert sum(counts.values()) == 60 and min(counts.values()) >= 1 and counts["train"] >= 40
    assert {k: len(split[k]) for k in ("test", "val", "train")} == counts
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


def test_best_checkpoint_is_the_best_epoch_by_the_monitored_figure(trained_run):
    out, result, _ = trained_run
    rows = list(csv.DictReader(open(out / "history.csv")))
    best_epoch = max(rows, key=lambda r: float(r["val_miou"]))["epoch"]
    assert json.loads((out / "best.json").read_text())["epoch"] == int(best_epoch)


def test_checkpoint_round_trip_gives_the_same_predictions(trained_run):
    out, _, rt = trained_run
    model, info = load_checkpoint(out / "last.safetensors")
    x = torch.rand(2, 3, 32, 32)
    again, _ = load_checkpoint(out / "last.safetensors")
    folded, _ = load_for_inference(out / "last.safetensors", rt)  # what predict and evaluate run (fp32 here)
    to_compile, _ = load_for_inference(out / "last.safetensors", rt, prepack=False)  # --compile packs its own
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(to_compile(x), model(x), rtol=1e-4, atol=1e-5)
    if torch.backends.mkldnn.is_available():  # on the CPU, eager inference runs packed convolutions
        assert any(isinstance(m, OneDNNConv) for m in folded.modules())
    assert not any(isinstance(m, OneDNNConv) for m in to_compile.modules())
    assert info["recipe"]["model"]["base_width"] == 8


def test_tampered_checkpoint_is_refused(trained_run, tmp_path):
    out, _, _ = trained_run
    import shutil

    for name in ("last.safetensors", "last.json"):
        shutil.copy(out / name, tmp_path / name)
    data = bytearray((tmp_path / "last.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "last.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match="SHA-256 does not match"):
        load_checkpoint(tmp_path / "last.safetensors")


def test_training_learns_the_synthetic_water(trained_run):
    out, _, rt = trained_run
    m = run_evaluate(out, rt, progress=False)
    truth = json.loads((out / "split.json").read_text())["test"]
    assert m["test_images"] == len(truth)
    # all-background baseline from the same test masks, computed rather than typed
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    water = np.mean([float(r["true_water_fraction"]) for r in rows])
    baseline = (1 - water) / 2
    assert m["mean_iou"] > baseline + 0.15, (m["mean_iou"], baseline)
    for key in ("water_iou", "dice", "precision", "recall", "pixel_accuracy", "per_image_water_iou"):
        assert key in m
    assert (out / "test_predictions.png").stat().st_size > 1000


def test_seeded_training_is_reproducible(synth_data, tmp_path):
    rt = select_runtime("fp32")
    short = dataclasses.replace(TINY, epochs=1)
    a = run_train(synth_data, tmp_path / "a", short, rt, progress=False, log=lambda s: None)
    b = run_train(synth_data, tmp_path / "b", short, rt, progress=False, log=lambda s: None)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert (tmp_path / "a" / "split.json").read_text() == (tmp_path / "b" / "split.json").read_text()


def test_training_can_start_from_another_runs_weights_and_refuses_another_model(synth_data, trained_run, tmp_path):
    out, _, rt = trained_run
    start = dict(load_checkpoint(out / "best.safetensors")[0].named_parameters())
    still = dataclasses.replace(TINY, epochs=1, lr=1e-12, seed=7)  # the weights barely move in one epoch
    for name, init in (("ft", out), ("fresh", None)):
        run_train(synth_data, tmp_path / name, still, rt, progress=False, log=lambda s: None, init=init)
    ft = dict(load_checkpoint(tmp_path / "ft" / "last.safetensors")[0].named_parameters())
    fresh = dict(load_checkpoint(tmp_path / "fresh" / "last.safetensors")[0].named_parameters())
    assert all(torch.allclose(ft[k], start[k], atol=1e-6) for k in start)
    assert not all(torch.allclose(fresh[k], start[k], atol=1e-3) for k in start)
    info = json.loads((tmp_path / "ft" / "run.json").read_text())["init"]
    assert info["sha256"] == json.loads((out / "best.json").read_text())["sha256"]
    older = tmp_path / "older"  # a run from before `multilabel` was recorded: its default
    older.mkdir()
    (older / "best.safetensors").write_bytes((out / "best.safetensors").read_bytes())
    meta = json.loads((out / "best.json").read_text())
    del meta["recipe"]["model"]["multilabel"]
    (older / "best.json").write_text(json.dumps(meta))
    run_train(synth_data, tmp_path / "ft-older", still, rt, progress=False, log=lambda s: None, init=older)
    narrow = dataclasses.replace(still, model=dataclasses.replace(TINY.model, base_width=4))
    with pytest.raises(DataError, match=r"--init needs the same model.*base_width 8 \(--init\) against 4"):
        run_train(synth_data, tmp_path / "narrow", narrow, rt, progress=False, log=lambda s: None, init=out)


def test_existing_output_needs_overwrite(synth_data, trained_run):
    out, _, rt = trained_run
    with pytest.raises(DataError, match="not empty.*--overwrite"):
        run_train(synth_data, out, TINY, rt, progress=False, log=lambda s: None)


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="not a run folder"):
        run_evaluate(tmp_path, select_runtime("fp32"))


def test_reproduce_writes_a_report_beside_the_seed_figure(synth_data, tmp_path):
    out = tmp_path / "r"
    m = reproduce(synth_data, out, dataclasses.replace(TINY, epochs=1), select_runtime("fp32"), "unetseg reproduce",
                  "synthetic", progress=False, log=lambda s: None)
    report = (out / "report.md").read_text()
    assert "0.748" in report and f"{m['mean_iou']:.4f}" in report and "test_predictions.png" in report


def test_recipes_and_runtime_selection():
    seed = get_recipe("seed")
    assert (seed.epochs, seed.batch_size, seed.lr, seed.image_size, seed.loss) == (18, 32, 1e-3, 128, "bce")
    assert (seed.plateau_factor, seed.plateau_patience, seed.early_stopping_patience) == (0.3, 3, 5)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")
    rt = select_runtime("auto", "cpu")
    from unetseg.runtime import cpu_bf16_native

    assert rt.precision == ("bf16" if cpu_bf16_native() else "fp32")
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        select_runtime("fp16", "cpu")


def test_bf16_path_runs_a_training_step_where_the_cpu_supports_it():
    from unetseg.runtime import cpu_bf16_native

    if not cpu_bf16_native():
        pytest.skip("this CPU has no native bf16")
    from unetseg.models import build_model
    from unetseg.training import loss_fn

    rt = select_runtime("bf16")
    model = build_model(TINY.model).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with rt.autocast():
        logits = model(x)
    assert logits.dtype == torch.bfloat16
    loss = loss_fn(logits, torch.ones(2, 32, 32))
    loss.backward()
    assert loss.dtype == torch.float32 and all(p.grad is not None for p in model.parameters())


def test_evaluating_the_last_checkpoint_keeps_the_official_metrics(trained_run):
    out, _, rt = trained_run
    best = run_evaluate(out, rt, progress=False)
    official = (out / "metrics.json").read_text()
    last = run_evaluate(out, rt, checkpoint="last", progress=False)
    assert (out / "metrics.json").read_text() == official and json.loads(official)["checkpoint"] == "best.safetensors"
    assert json.loads((out / "metrics-last.json").read_text())["checkpoint"] == "last.safetensors"
    assert best["checkpoint"] != last["checkpoint"]


def test_training_written_to_a_log_shows_the_epoch_advancing(synth_data, tmp_path, monkeypatch, capsys):
    """Not on a terminal, each epoch's progress is a plain line now and then whose step count advances to the
    epoch's end, with the loss (the bar's count had stayed at the first step)."""
    import unetseg.progress

    monkeypatch.setattr(unetseg.progress, "LOG_EVERY_S", 0.0)  # a line at every step
    run_train(synth_data, tmp_path / "r", dataclasses.replace(TINY, epochs=1), select_runtime("fp32"),
              progress=True, log=lambda s: None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1/1: ")]
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    total = int(lines[-1].split("/")[2].split()[0])
    assert counts[-1] == total > 1 and counts == sorted(set(counts)) and len(counts) >= total, lines
    assert all("loss=" in line for line in lines if not line.startswith("epoch 1/1: 0/"))


def test_each_epoch_line_says_how_long_the_rest_will_take():
    from unetseg.training import time_left

    history = [{"epoch": 1, "seconds": 100.0}, {"epoch": 2, "seconds": 140.0}]
    assert time_left(history, 25) == "  ~46 min left"  # 23 epochs x 120 s
    assert time_left(history, 3) == "  ~2 min left"
    assert time_left([{"epoch": 4, "seconds": 10.0}], 5) == "  ~10 s left"
    assert time_left(history, 2) == ""
