"""Progress bars on a terminal only: in a log file or a pipe they would fill it with carriage returns and
counts that never advance, so there the callers' one line per epoch or per file is all that is written."""

from __future__ import annotations

import sys
from typing import Any


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(iterable: Any = None, enabled: bool = True, **options: Any):
    """tqdm(iterable, **options), switched off unless `enabled` and stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (enabled and on_terminal()), **options)
