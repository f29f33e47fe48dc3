"""Helpers shared by the tests (importable because pytest puts this folder on sys.path)."""

import os
import struct
import subprocess
import sys
import zlib


def unetseg(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the command line: in this process (the same typer app and `friendly` error handling as the console
    script, without paying for a new Python and its imports on every call), or in a subprocess with
    UNETSEG_TEST_SUBPROCESS=1. An exception that escapes the command is put in stderr as its traceback, so the
    tests' "no traceback" checks hold in both."""
    if os.environ.get("UNETSEG_TEST_SUBPROCESS"):
        return subprocess.run([sys.executable, "-m", "unetseg.cli", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)
    import traceback
    from contextlib import chdir, nullcontext

    from typer.testing import CliRunner

    from unetseg.cli import app

    with chdir(cwd) if cwd else nullcontext():
        result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    code = result.exit_code if result.exception is None or isinstance(result.exception, SystemExit) else 1
    return subprocess.CompletedProcess(["unetseg", *map(str, args)], code, result.stdout, stderr)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in a few dozen bytes: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def shared_dataset(name: str, env: str | None = None):
    """Where the package finds it (workflow.shared_dataset_dir: $ENV, else NAME beside the $UNETSEG_DATA folder),
    else ../shared/data/NAME beside this checkout: required in CI, skipped elsewhere when missing."""
    from pathlib import Path

    import pytest

    from unetseg.workflow import shared_dataset_dir

    path = shared_dataset_dir(name, env or "")
    if not path.is_dir() and not (env and os.environ.get(env)):  # tests may run from another folder
        path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / name
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{name} not found at {path}" + (f": set {env}" if env else "") +
                        " (CI must run the real-data tests)")
        pytest.skip(f"{name} not found at {path}")
    return path


def train_in_process(data, out, log=lambda m: None, **changes) -> dict:
    """A tiny U-Net (width 4, depth 3, 32 px, 3 epochs unless `changes` say otherwise) trained by run_train in
    this process, so that tests can patch the training loop; returns its result."""
    from unetseg.config import ModelConfig, Recipe
    from unetseg.runtime import select_runtime
    from unetseg.workflow import run_train

    recipe = Recipe(name="t", model=ModelConfig(name="unet-bn", base_width=4, depth=3, batch_norm=True),
                    **{"epochs": 3, "batch_size": 8, "image_size": 32, "early_stopping_patience": 0, **changes})
    return run_train(data, out, recipe, select_runtime("fp32"), progress=False, log=log)
