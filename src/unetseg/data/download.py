"""Fetch the public Kaggle dataset with kagglehub and lay it out as OUT/Images and OUT/Masks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..atomic import atomic_dir, check_output_dir
from ..errors import DataError
from .folder import scan_folder

KAGGLE_DATASET = "franciscoescobar/satellite-images-of-water-bodies"


def find_dataset_root(top: Path) -> Path:
    """The first folder under `top` (itself included) that holds both Images/ and Masks/."""
    for folder, dirs, _ in os.walk(top):
        if {"Images", "Masks"} <= set(dirs):
            return Path(folder)
    raise DataError(f"{top}: downloaded files have no folder with Images/ and Masks/")


def download_dataset(out: Path, handle: str = KAGGLE_DATASET, overwrite: bool = False) -> tuple[Path, int]:
    """Download with kagglehub (its cache, its credentials), copy into OUT atomically; (OUT, pairs)."""
    check_output_dir(out, overwrite)
    try:
        import kagglehub
    except ImportError:
        raise DataError("kagglehub is not installed: pip install 'unetseg[download]'") from None
    try:
        fetched = Path(kagglehub.dataset_download(handle))
    except Exception as e:  # kagglehub raises requests, credential and HTTP errors of many kinds
        kind = type(e).__name__
        hint = ("no internet connection?" if "Connection" in kind or "Timeout" in kind
                else "Kaggle credentials missing or refused? (KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json)"
                if "Credential" in kind or "Unauthenticated" in kind or "401" in str(e) or "403" in str(e)
                else "see the message")
        raise DataError(f"could not download Kaggle dataset {handle}: {kind}: {str(e).splitlines()[0][:160] if str(e) else ''} "
                        f"({hint})") from None
    root = find_dataset_root(fetched)
    with atomic_dir(out) as tmp:
        for sub in ("Images", "Masks"):
            shutil.copytree(root / sub, tmp / sub)
        pairs = len(scan_folder(tmp).pairs)
    return Path(out), pairs
