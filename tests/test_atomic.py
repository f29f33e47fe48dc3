"""Outputs are written whole or not at all: temporaries beside the targets, renamed at the end."""

from __future__ import annotations

import os
import stat

import pytest

from unetseg.atomic import atomic_path, write_files_atomic


def test_files_are_written_together_into_a_new_folder_with_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        a, b = tmp_path / "new" / "deeper" / "a.png", tmp_path / "new" / "deeper" / "b.jpg"
        write_files_atomic({a: b"first", b: b"second"})
    finally:
        os.umask(old)
    assert a.read_bytes() == b"first" and b.read_bytes() == b"second"
    assert stat.S_IMODE(a.stat().st_mode) == 0o640
    assert sorted(p.name for p in a.parent.iterdir()) == ["a.png", "b.jpg"]  # no temporaries left


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"old")
    with pytest.raises(NotADirectoryError):  # the second file cannot be created (its "folder" is a file)
        write_files_atomic({keep: b"new", keep / "b.png": b"x"})
    assert keep.read_bytes() == b"old"  # the first file was written, but not renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_atomic_path_renames_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stopped")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(target.parent.iterdir()) == [target]


def test_run_json_and_checkpoint_json_hold_strict_json_where_a_figure_is_undefined(tmp_path):
    """run.json, a checkpoint's .json and predictions.json are read by jq and browsers: NaN, which is not JSON,
    goes in as null (a multi-class run's water IoU under torchrun, say), and `unetseg runs` reads it back."""
    import json
    import math

    from unetseg.checkpoint import save_checkpoint
    from unetseg.models import build_model
    from unetseg.config import ModelConfig
    from unetseg.runfolder import RunFolder
    from unetseg.runs import run_row

    def strict(path):
        return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path.name}: {c}"))

    run = tmp_path / "run"
    run.mkdir()
    RunFolder(run).write_info({"train_seconds": math.nan, "epochs_run": 1, "recipe": {"name": "t"}})
    assert strict(run / "run.json")["train_seconds"] is None
    assert math.isnan(run_row(run)["train_min"])
    model = build_model(ModelConfig(name="unet-bn", base_width=2, depth=2, batch_norm=True))
    save_checkpoint(run, "best", model, {"epoch": 1, "validation": {"water_iou": math.nan}})
    assert strict(run / "best.json")["validation"]["water_iou"] is None
