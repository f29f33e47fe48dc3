"""Progress on a terminal as a bar; in a log file or a pipe as a plain line at most once a minute (a bar there
would fill it with carriage returns), so a long epoch or scene written to a log still shows it is moving and how
long is left. Work done within the minute writes nothing: the callers' one line per epoch or file is all."""

from __future__ import annotations

import sys
from typing import Any, TextIO

LOG_EVERY_S = 60.0
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} ({elapsed} elapsed, ~{remaining} left, {rate_fmt}{postfix})"


def on_terminal() -> bool:
    return sys.stderr.isatty()


class _Lines:
    """A stream for tqdm that writes each refresh as one line (no carriage returns, no cleared lines)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, s: str) -> None:
        text = s.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Any = None, enabled: bool = True, every: float | None = None, **options: Any):
    """tqdm(iterable, **options): a bar on a terminal; elsewhere (a log) a line every `every` seconds, the first
    after `every` seconds; nothing unless `enabled`."""
    from tqdm import tqdm

    if not enabled or on_terminal():
        return tqdm(iterable, disable=not enabled, **options)
    every = LOG_EVERY_S if every is None else every
    options = {k: v for k, v in options.items() if k not in ("leave", "dynamic_ncols", "file")}
    return tqdm(iterable, file=_Lines(sys.stderr), mininterval=every, maxinterval=every, delay=every, leave=False,
                bar_format=LOG_FORMAT, **options)
