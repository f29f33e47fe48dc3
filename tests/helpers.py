"""Helpers shared by the tests (importable because pytest puts this folder on sys.path)."""

import os
import struct
import subprocess
import sys
import zlib


def unetseg(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "unetseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in a few dozen bytes: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def shared_dataset(name: str, env: str | None = None):
    """../shared/data/NAME (or $ENV): required in CI, skipped elsewhere when missing."""
    from pathlib import Path

    import pytest

    path = Path(os.environ.get(env or "") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / name)
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{name} not found at {path}" + (f": set {env}" if env else "") +
                        " (CI must run the real-data tests)")
        pytest.skip(f"{name} not found at {path}")
    return path
