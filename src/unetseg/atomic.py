"""Atomic writes: a temporary file beside the target, then a rename; outputs are never half-written."""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


_NAMES = itertools.count()  # temporary names: this process's id and a counter (next() is atomic)


def _create_temp(path: Path) -> tuple[str, int]:
    """A new temporary file beside `path` (O_EXCL, 0666 less the umask; the folder made if missing): its name and
    an open descriptor. Named by this process's id and a counter, so threads never collide."""
    folder = str(path.parent)
    while True:
        tmp = os.path.join(folder, f".{path.name}.{os.getpid()}-{next(_NAMES)}.tmp{path.suffix}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # left by a killed process that had the same id: take the next name
            continue
        except FileNotFoundError:  # the folder is missing (checked only then: one call less per file)
            if path.parent.is_dir():
                raise
            path.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to `path` only if the block succeeds. The
    temporary file is created new (O_EXCL) with the usual permissions (0666 less the umask)."""
    path = Path(path)
    tmp, fd = _create_temp(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def scratch_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` for an intermediate result: removed at the end, whatever happens."""
    tmp, fd = _create_temp(Path(path))
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_files_atomic(files: dict[Path, bytes]) -> None:
    """Each file's bytes into a temporary beside it, then every one renamed into place: all or none (the
    renames come last). Plain system calls: many small outputs (a folder of images) pay little per file."""
    written: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            tmp, fd = _create_temp(path)
            written.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that atomic_path leaves when a process is killed mid-write."""
    stale = [p for p in Path(folder).glob(".*.tmp*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj) -> None:
    """Strict JSON (RFC 8259): undefined figures (NaN, such as the water IoU of a scene where no water is drawn or
    found) are written as null, since NaN is not JSON and jq and browsers refuse a file that holds it."""
    write_text_atomic(path, strict_json(obj))


def strict_json(obj, **kwargs) -> str:
    """json.dumps with undefined figures as null (see write_json_atomic)."""
    return json.dumps(_finite(obj), indent=1, allow_nan=False, **kwargs)


def _finite(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_files_atomic({Path(path): data})


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (whole), on failure it is removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_new_file(path: str | Path, overwrite: bool) -> None:
    """An output file must not exist (a dangling link counts) unless --overwrite; a folder is never replaced.
    With --overwrite the rename replaces a link itself, never the file it points to."""
    from .errors import DataError

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name")
    if os.path.lexists(path) and not overwrite:
        raise DataError(f"{path}: exists (use --overwrite to replace it)")


def output_file(folder: str | Path, name: str) -> Path:
    """folder/name, refusing any name that would land outside `folder` (separators, '..', absolute paths)."""
    from .errors import DataError

    if not name or name in (".", "..") or "\0" in name or any(s and s in name for s in ("/", os.sep, os.altsep)):
        raise DataError(f"{name!r}: not usable as a file name inside {folder}")
    return Path(folder) / name


def check_output_dir(path: str | Path, overwrite: bool) -> None:
    """An output folder must be new or empty unless --overwrite."""
    from .errors import DataError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{path}: output folder is not empty (use --overwrite to replace it)")


def sha256_file(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_csv_atomic(path: str | Path, fields: list[str], rows: list[dict], **options) -> None:
    """Rows of dicts as CSV with a header, written atomically; `options` go to csv.DictWriter."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, **options)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())
