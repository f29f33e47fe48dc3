"""Models shipped inside the package: `unetseg predict water scene.tif` works on a fresh install, offline.

A shipped model is a run folder under `unetseg/zoo/NAME-vN/` (best.safetensors + best.json, run.json,
MODEL_CARD.md) made from a trained run by `unetseg ship`. Its weights are stored in float16 (half the size;
`ship` checks that the masks agree with float32 before it writes) and upcast on load. The SHA-256 of the
weights is pinned here as well as in best.json, so a file changed after release is refused.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import DataError

# name -> (folder inside the package, SHA-256 of its best.safetensors)
SHIPPED: dict[str, tuple[str, str]] = {
    "water": ("water-v2", "f5201cdeb801f3d76cfbea4fd221fc0271c26906612eadc01a7b61d9b07c199f"),
}
MAX_BYTES = 5 * 1024 * 1024


def zoo_dir() -> Path:
    return Path(str(resources.files("unetseg") / "zoo"))


def is_shipped(run_dir: Path) -> bool:
    """Whether a folder is a shipped model's, inside the package (which may be read-only: write elsewhere)."""
    return Path(run_dir).resolve().parent == zoo_dir().resolve()


def resolve_run(run: str | Path) -> Path:
    """A run folder as given, or the folder of a shipped model by its name ('water'), its SHA-256 checked."""
    path = Path(run)
    if path.exists() or str(run) not in SHIPPED:
        return path
    folder, digest = SHIPPED[str(run)]
    found = zoo_dir() / folder
    from .atomic import sha256_file

    from .runfolder import RunFolder

    weights = RunFolder(found).checkpoint()
    if not weights.exists():
        raise DataError(f"the shipped model {run!r} is missing from this installation ({weights})")
    if sha256_file(weights) != digest:
        raise DataError(f"{weights}: SHA-256 differs from the one released with unetseg; reinstall the package")
    return found
