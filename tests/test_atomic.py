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
