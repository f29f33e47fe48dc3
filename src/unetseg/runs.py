"""Comparing runs: one row per run folder (model, recipe, epochs, time, test scores, and the pooled mean IoU of
every scene set it was scored on with `evaluate --scenes`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .runfolder import RunFolder

COLUMNS = ["run", "model", "recipe", "params", "epochs", "train_min", "test_miou", "water_iou", "tta_miou"]


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _score(d: dict, key: str) -> float:
    """A figure of a metrics file; NaN where it is missing or undefined (null)."""
    v = d.get(key)
    return math.nan if v is None else v


def train_minutes(info: dict) -> float:
    """A run's training time in minutes from its run.json; NaN where it is missing or was not a number (null)."""
    seconds = info.get("train_seconds")
    return round(seconds / 60, 1) if isinstance(seconds, (int, float)) else math.nan


def run_row(run: Path) -> dict:
    folder = RunFolder(run)
    info = _load(folder.info_path)
    metrics = _load(folder.metrics_path())
    tta = max((_score(_load(p), "mean_iou") for p in run.glob("metrics-tta-*.json")), default=math.nan)
    r = info.get("recipe", {})
    finished = "epochs_run" in info  # written when training ends; before that, history.csv has the epochs so far
    return {
        "run": run.name if finished else f"{run.name} (unfinished)", "model": r.get("model", {}).get("name", "?"),
        "recipe": r.get("name", "?"), "params": info.get("parameters", math.nan),
        "epochs": info["epochs_run"] if finished else _epochs_so_far(folder.history_path),
        "epochs_of": r.get("epochs") if r.get("minutes") and finished else None,  # shown as "run/recipe's"
        "train_min": train_minutes(info),
        "test_miou": _score(metrics, "mean_iou"), "water_iou": _score(metrics, "water_iou"),
        "tta_miou": tta,
        **{f"scenes:{p.parent.name.removeprefix('scenes-')}": _score(_load(p), "pooled_mean_iou")
           for p in sorted(run.glob("scenes-*/metrics.json"))},
    }


def _epochs_so_far(history: Path) -> int:
    try:
        return max(0, len(history.read_text().splitlines()) - 1)  # a header, then a row per epoch
    except OSError:
        return 0


def list_runs(root: Path) -> list[dict]:
    """Every folder under root (root included) that has a run.json."""
    return [run_row(p.parent) for p in sorted(Path(root).rglob(RunFolder(root).info_path.name))]


def format_table(rows: list[dict], sort: str = "test_miou", markdown: bool = False) -> str:
    """The runs as a table, `sort`'s column first (numbers highest first); a column per scene set
    (`scenes:NAME`, pooled mean IoU), '-' where a run has not been scored on it."""
    columns = COLUMNS + sorted({k for r in rows for k in r if k.startswith("scenes:")})
    if sort not in columns:
        raise ValueError(f"cannot sort by {sort!r}; choose one of: {', '.join(columns)}")
    rows = [{c: r.get(c, math.nan) for c in columns} | {"epochs_of": r.get("epochs_of")} for r in rows]
    numeric = sort not in ("run", "model", "recipe")
    rows = sorted(rows, key=lambda r: (-r[sort] if not math.isnan(r[sort]) else math.inf) if numeric else r[sort])

    def cell(column: str, r: dict) -> str:
        v = r[column]
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.1f}" if column == "train_min" else f"{v:.4f}"
        if column == "epochs" and r["epochs_of"] not in (None, v):  # a time budget stopped it early
            return f"{v}/{r['epochs_of']}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    table = [columns] + [[cell(c, r) for c in columns] for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(t) + " |" for t in table[:1]] + ["|" + "---|" * len(columns)] +
                         ["| " + " | ".join(t) + " |" for t in table[1:]])
    widths = [max(len(t[i]) for t in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(t, widths)))
                     for t in table)
