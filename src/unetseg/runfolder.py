"""A run folder: the one place that knows what its files are called and how to read them.

    RUN/run.json          data, recipe, machine, split sizes, training resolution, input statistics
    RUN/split.json        the train/validation/test file names
    RUN/best.*, last.*    checkpoints (safetensors + JSON)
    RUN/history.csv       one row per epoch; curves.png
    RUN/metrics.json      `unetseg evaluate` of the best checkpoint (metrics-tta-d4.json, metrics-last.json, ...)
    RUN/scenes-NAME/      `unetseg evaluate --scenes`
    RUN/report.md         `unetseg reproduce`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def split_path(self) -> Path:
        return self.path / "split.json"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"

    def checkpoint(self, tag: str = "best") -> Path:
        return self.path / f"{tag}.safetensors"

    def evaluation_suffix(self, checkpoint: str = "best", tta: str = "none") -> str:
        """'' for the official figures (best checkpoint, no TTA); '-last', '-tta-d4', '-last-tta-d4' otherwise, so
        that evaluating another checkpoint or with TTA never overwrites them."""
        return ("" if checkpoint == "best" else f"-{checkpoint}") + ("" if tta == "none" else f"-tta-{tta}")

    def metrics_path(self, checkpoint: str = "best", tta: str = "none") -> Path:
        return self.path / f"metrics{self.evaluation_suffix(checkpoint, tta)}.json"

    def scenes_dir(self, name: str) -> Path:
        return self.path / f"scenes-{name}"

    def is_run(self) -> bool:
        return self.info_path.exists()

    def info(self) -> dict:
        """run.json, or a clear error when this is not a run folder."""
        if not self.is_run():
            raise DataError(f"{self.path}: not a run folder (no run.json; make one with `unetseg train`)")
        try:
            return json.loads(self.info_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{self.info_path}: not valid JSON ({e.msg} at line {e.lineno})") from None

    def write_info(self, info: dict) -> None:
        from .atomic import write_json_atomic

        write_json_atomic(self.info_path, info)

    def metrics(self, checkpoint: str = "best", tta: str = "none") -> dict | None:
        path = self.metrics_path(checkpoint, tta)
        return json.loads(path.read_text()) if path.exists() else None
