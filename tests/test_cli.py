"""The command line as a user meets it: help, one-line errors, no tracebacks, download with a fake."""

import hashlib
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from unetseg.cli import app
from helpers import unetseg

runner = CliRunner()
COMMANDS = ["train", "evaluate", "reproduce", "predict", "export", "synth", "download", "runs", "augment-preview",
            "benchmark"]


def test_top_level_help_lists_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for c in COMMANDS:
        assert c in r.output


def test_version_names_the_package_and_what_it_runs_on():
    from importlib.metadata import version

    from unetseg.version import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.output.startswith(f"unetseg {__version__} (Python ") and f"torch {version('torch')}" in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    r = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert r.exit_code == 0 and "Example" in r.output, r.output


@pytest.mark.parametrize("args,expected", [
    (["train", "--data", "/nonexistent/data", "--out", "{tmp}/run"], "/nonexistent/data: data folder does not exist"),
    (["evaluate", "{tmp}"], "not a run folder"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--recipe", "nope"], "unknown recipe 'nope'"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--precision", "fp99"], "unknown precision 'fp99'"),
    (["benchmark", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--image-size", "7"], "--image-size 7: must be at least 16"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--lr", "-1"], "--lr -1.0: must be a positive number"),
    (["reproduce", "--data", "{tmp}", "--out", "{tmp}/run", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["benchmark", "--model", "nope", "--rounds", "1"], "unknown model 'nope'"),
])
def test_bad_input_is_one_line_on_stderr_exit_2_no_traceback(tmp_path, args, expected):
    r = unetseg(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_synth_is_deterministic_and_refuses_to_overwrite(tmp_path):
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.jpg")):
            h.update(p.name.encode() + p.read_bytes())
        return h.hexdigest()

    for name in ("a", "b"):
        r = runner.invoke(app, ["synth", str(tmp_path / name), "--n", "5", "--max-size", "64", "--quiet"])
        assert r.exit_code == 0, r.output
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert len(list((tmp_path / "a" / "Masks").glob("*.jpg"))) == 5
    r = unetseg("synth", tmp_path / "a", "--n", "5", "--quiet")
    assert r.returncode == 2 and "use --overwrite" in r.stderr
    r = runner.invoke(app, ["synth", str(tmp_path / "a"), "--n", "3", "--quiet", "--overwrite"])
    assert r.exit_code == 0 and len(list((tmp_path / "a" / "Images").glob("*.jpg"))) == 3


def test_synthetic_masks_are_noisy_jpegs_with_water_and_land(synth_data):
    import numpy as np
    from PIL import Image

    values = np.concatenate([np.asarray(Image.open(p)).ravel() for p in sorted((synth_data / "Masks").glob("*"))[:10]])
    assert (values > 200).mean() > 0.05 and (values < 50).mean() > 0.05
    assert ((values > 10) & (values < 245)).any(), "JPEG masks should carry compression noise"


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch, synth_data):
    """A local stand-in for kagglehub: returns a cache folder in Kaggle's layout, or raises like the real one."""
    import shutil

    import kagglehub

    cache = tmp_path / "kaggle-cache" / "versions" / "2"
    shutil.copytree(synth_data, cache / "Water Bodies Dataset")
    calls = []

    def fake_download(handle, *a, **k):
        calls.append(handle)
        if handle == "offline/dataset":
            raise requests.exceptions.ConnectionError("Failed to resolve 'www.kaggle.com'")
        if handle == "private/dataset":
            from kagglehub.exceptions import UnauthenticatedError

            raise UnauthenticatedError("401 Client Error: Unauthorized")
        return str(cache)

    monkeypatch.setattr(kagglehub, "dataset_download", fake_download)
    return calls


def test_download_lays_out_images_and_masks(fake_kaggle, tmp_path, synth_data):
    out = tmp_path / "wb"
    r = runner.invoke(app, ["download", str(out)])
    assert r.exit_code == 0, r.output
    assert fake_kaggle == ["franciscoescobar/satellite-images-of-water-bodies"]
    assert "60 image/mask pairs" in r.output
    assert sorted(p.name for p in (out / "Images").iterdir()) == sorted(p.name for p in (synth_data / "Images").iterdir())
    r = runner.invoke(app, ["download", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output


@pytest.mark.parametrize("handle,expected", [("offline/dataset", "no internet connection?"),
                                             ("private/dataset", "Kaggle credentials missing or refused?")])
def test_download_failures_are_explained(fake_kaggle, tmp_path, handle, expected):
    r = runner.invoke(app, ["download", str(tmp_path / "wb"), "--dataset", handle])
    assert r.exit_code == 2 and expected in r.output and handle in r.output
    assert not (tmp_path / "wb").exists()


@pytest.mark.slow
def test_reproduce_without_data_uses_synthetic_scenes_and_says_so(tmp_path):
    r = unetseg("reproduce", "--recipe", "quick", "--epochs", "1", "--image-size", "32", "--out", tmp_path / "run",
                "--minutes", "5", "--quiet", env={"UNETSEG_DATA": str(tmp_path / "nowhere"), "UNETSEG_CACHE": str(tmp_path / "c")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "synthetic scenes" in r.stdout and "no real data found" in r.stdout
    assert (tmp_path / "run-synthetic-data" / "Images").is_dir()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "synthetic" in report and "0.748" in report and " min (time budget 5 min)" in report


def test_tensorboard_flag_explains_a_missing_package(tmp_path, synth_data):
    pytest.importorskip("torch")
    try:
        import tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    r = unetseg("train", "--data", synth_data, "--out", tmp_path / "run", "--tensorboard")
    assert r.returncode == 2 and "pip install tensorboard" in r.stderr and not (tmp_path / "run").exists()


def test_tensorboard_logs_every_epoch_where_installed(tmp_path, synth_data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = runner.invoke(app, ["train", "--data", str(synth_data), "--out", str(tmp_path / "run"), "--recipe", "quick",
                            "--epochs", "2", "--image-size", "32", "--tensorboard", "--quiet"])
    assert r.exit_code == 0, r.output
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train_loss", "val_loss", "val_miou"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val_miou")] == [1, 2]


def test_bf16_asked_for_where_the_cpu_only_emulates_it_gets_one_warning_line(monkeypatch, tmp_path):
    """On an AVX2-only CPU bf16 runs hundreds of times slower than fp32: --precision bf16 still runs, with a
    warning line; auto picks fp32 there."""
    import unetseg.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_bf16_native", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        assert runtime.select_runtime("bf16", "cpu", reuse_memory=False).precision == "bf16"
    assert runtime.select_runtime("auto", "cpu", reuse_memory=False).precision == "fp32"
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run"),
                            "--precision", "bf16", "--device", "cpu"])
    warned = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: {runtime.EMULATED_BF16}"], r.output
    assert "data folder does not exist" in r.output and r.exit_code == 2


def test_progress_in_a_log_file_is_a_plain_line_now_and_then_not_a_bar():
    """Output to a pipe or log: one line per interval with counts and time left, no carriage returns; quick work
    writes nothing (the callers' own per-epoch or per-file line is enough)."""
    import subprocess
    import sys

    script = ("import time\nfrom unetseg.progress import bar\n"
              "for i in bar(range(12), every={every}, desc='epoch 1/3', unit='batch'):\n    time.sleep(0.05)\n")
    slow = subprocess.run([sys.executable, "-c", script.format(every=0.2)], capture_output=True, text=True, timeout=60)
    lines = slow.stderr.splitlines()
    assert "\r" not in slow.stderr and 2 <= len(lines) <= 6, slow.stderr
    assert all(line.startswith("epoch 1/3: ") and "/12 batch (" in line and " left" in line for line in lines)
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and 0 < counts[0] < 12
    quick = subprocess.run([sys.executable, "-c", script.format(every=60)], capture_output=True, text=True, timeout=60)
    assert quick.stderr == ""


def test_a_run_from_another_version_predicts_without_its_unknown_training_settings_and_refuses_unknown_model_ones(
        tiny_run, tmp_path):
    """A run.json with a training setting this version lacks (a newer augmentation) still loads; a model setting
    it lacks would change the network, so it is one line naming run.json, not a traceback."""
    import json
    import shutil

    import numpy as np
    from PIL import Image

    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(img)
    for where, ok in (("augment", True), ("model", False)):
        run = shutil.copytree(tiny_run, tmp_path / where)
        info = json.loads((run / "run.json").read_text())
        info["recipe"][where] = {**(info["recipe"].get(where) or {}), "from_the_future": 1}
        (run / "run.json").write_text(json.dumps(info))
        r = unetseg("predict", run, img, "--out", tmp_path / f"out-{where}")
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 2 and "Traceback" not in r.stderr
            assert "run.json: model setting(s) from_the_future unknown to unetseg" in r.stderr
            assert not (tmp_path / f"out-{where}").exists()
