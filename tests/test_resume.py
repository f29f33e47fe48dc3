"""Resume after SIGKILL and after Ctrl-C gives the uninterrupted run's weights and history; training faults
(non-finite loss, full disk) keep the last good checkpoint; the training state round-trips without pickle."""

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from helpers import train_in_process
from unetseg.checkpoint import load_checkpoint
from unetseg.resume import pack, unpack

EPOCHS = 6
TRAIN = ["--recipe", "improved", "--epochs", str(EPOCHS), "--batch-size", "4", "--image-size", "64",
         "--base-width", "8", "--quiet"]  # augmentation, AdamW, one-cycle LR per step, batch norm: all must resume


def _cli(*args):
    return [sys.executable, "-m", "unetseg.cli", *map(str, args)]


def _run(*args, timeout=600):
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(synth_data, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = _run("train", "--data", synth_data, "--out", out, *TRAIN)
    assert r.returncode == 0, r.stderr
    assert not (out / "resume.safetensors").exists()  # finished: the state is removed
    return out


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _interrupt(synth_data, out, sig):
    """Start training, wait until the first epoch is saved, then send `sig` a moment into the second."""
    proc = subprocess.Popen(_cli("train", "--data", synth_data, "--out", out, *TRAIN), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        meta = out / "resume.json"
        try:
            if json.loads(meta.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr + stdout


def _same_result(run, reference):
    got, want = load_file(run / "last.safetensors"), load_file(reference / "last.safetensors")
    assert got.keys() == want.keys()
    for k in want:  # bit-identical: same data order, RNG, optimizer and schedule state, same threads
        assert torch.equal(got[k], want[k]), k
    a, b = _history(run), _history(reference)
    assert [r["epoch"] for r in a] == [str(e) for e in range(1, EPOCHS + 1)]  # none missing, none twice
    for ra, rb in zip(a, b):
        for key in ("train_loss", "val_loss", "val_miou", "lr"):
            assert ra[key] == rb[key], (ra["epoch"], key)
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_run"] == EPOCHS
    assert not (run / "resume.safetensors").exists() and not list(run.glob(".*.tmp*"))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(synth_data, reference, tmp_path):
    out = tmp_path / "run"
    code, _ = _interrupt(synth_data, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    done = len(_history(out))
    assert 1 <= done < EPOCHS and "epochs_run" not in json.loads((out / "run.json").read_text())
    load_checkpoint(out / "last.safetensors")  # what was written before the kill is whole and verified
    r = _run("train", "--resume", out, "--quiet")
    assert r.returncode == 0, r.stderr
    _same_result(out, reference)


@pytest.mark.slow
def test_ctrl_c_saves_a_resumable_state_and_exits_cleanly(synth_data, reference, tmp_path):
    out = tmp_path / "run"
    code, stderr = _interrupt(synth_data, out, signal.SIGINT)
    assert code == 130, stderr
    assert "Traceback" not in stderr and f"unetseg train --resume {out}" in stderr
    assert "SIGINT: stopping after this step" in stderr and "\n\nSIGINT" not in stderr  # no blank line in a log
    state = json.loads((out / "resume.json").read_text())
    assert state["epoch"] >= 2
    newer = shutil.copytree(out, tmp_path / "newer")  # the same run, as a newer version would have recorded it
    info = json.loads((newer / "run.json").read_text())
    info["recipe"]["augment"] = {**(info["recipe"]["augment"] or {}), "from_the_future": 0.5}
    (newer / "run.json").write_text(json.dumps(info))
    before = (newer / "resume.safetensors").read_bytes()
    r = _run("train", "--resume", newer)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "run.json: training setting(s) augment.from_the_future unknown to unetseg" in r.stderr
    assert (newer / "resume.safetensors").read_bytes() == before
    r = _run("train", "--resume", out, "--quiet")
    assert r.returncode == 0, r.stderr
    _same_result(out, reference)
    again = _run("train", "--resume", out)
    assert again.returncode == 2 and "training finished (6 epoch(s)); there is nothing to resume" in again.stderr


@pytest.mark.slow
def test_resume_refuses_recipe_changes_and_missing_state(tmp_path, reference):
    r = _run("train", "--resume", reference, "--epochs", "9")
    assert r.returncode == 2 and "drop --epochs" in r.stderr
    r = _run("train", "--resume", reference, "--init", "water")
    assert r.returncode == 2 and "drop --init" in r.stderr
    r = _run("train", "--resume", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr
    r = _run("train")
    assert r.returncode == 2 and "--out RUN is required" in r.stderr


def test_a_non_finite_loss_stops_training_and_names_the_epoch_and_step(synth_data, tmp_path, monkeypatch):
    import unetseg.training as train_module
    from unetseg.errors import DataError

    calls = {"validated": False, "steps": 0}
    real = train_module.loss_fn

    def poisoned(logits, y, kind="bce", *rest):
        loss = real(logits, y, kind, *rest)
        if not torch.is_grad_enabled():  # validation (inference mode): epoch 1 is over
            calls["validated"] = True
        elif calls["validated"]:
            calls["steps"] += 1
        return loss * float("nan") if calls["steps"] == 3 and torch.is_grad_enabled() else loss  # epoch 2, step 3

    monkeypatch.setattr(train_module, "loss_fn", poisoned)
    out = tmp_path / "run"
    with pytest.raises(DataError) as e:
        train_in_process(synth_data, out)
    message = str(e.value)
    assert message.startswith("epoch 2, step 3: the loss is nan") and "last.safetensors (epoch 1)" in message
    model, info = load_checkpoint(out / "last.safetensors")
    assert info["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(synth_data, tmp_path, monkeypatch):
    import unetseg.checkpoint as ck
    from unetseg.errors import DataError

    real = ck.save_file
    saves = {"n": 0}

    def filling(tensors, path):
        saves["n"] += 1
        if saves["n"] > 3:  # epoch 1 wrote best, last and resume; the disk is full from then on
            with open(path, "wb") as f:
                f.write(b"\0" * 100)  # a part is written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(tensors, path)

    monkeypatch.setattr(ck, "save_file", filling)
    out = tmp_path / "run"
    with pytest.raises(DataError) as e:
        train_in_process(synth_data, out)
    assert "could not be saved (No space left on device); the previous one (epoch 1) is intact" in str(e.value)
    for tag in ("best", "last"):
        _, info = load_checkpoint(out / f"{tag}.safetensors")
        assert info["epoch"] == 1
    assert not list(out.glob(".*.tmp*"))  # no half-written temporary files left


@settings(max_examples=60, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.builds(lambda n: torch.arange(n, dtype=torch.float32), st.integers(0, 4)),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(st.text(min_size=1, max_size=4).filter(lambda k: not k.startswith("__")), children, max_size=3)
    | st.dictionaries(st.integers(0, 9), children, max_size=3),
    max_leaves=12))
def test_training_state_round_trips_through_json_and_safetensors(obj):
    tensors = {}
    skeleton = json.loads(json.dumps(pack(obj, tensors)))  # what is on disk: JSON and named tensors
    back = unpack(skeleton, tensors)

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and torch.equal(a, b)
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return type(a) is type(b) and a == b

    assert same(obj, back)
