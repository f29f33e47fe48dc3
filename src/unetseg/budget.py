"""Training to a time budget (`train --minutes`): how many epochs fit, planned from the pace measured so far."""

from __future__ import annotations

PROBE_FROM = 3  # the first steps warm up (memory, oneDNN kernels): the pace is timed after them...
PROBE_STEPS = 20  # ...over this many steps of the first epoch, to plan before a whole epoch has gone by
VALIDATION_COST = 1 / 3  # a validation image costs about a third of a training image (forward pass only)


def epochs_that_fit(budget_s: float, spent_s: float, done: int, epoch_s: float, most: int) -> int:
    """The epochs to plan in all: the `done` ones and as many more of `epoch_s` seconds as end within the budget;
    at least one, at most `most`."""
    more = int((budget_s - spent_s) // epoch_s) if epoch_s > 0 else most
    return max(done, 1, min(most, done + max(more, 0)))


def epoch_seconds(step_s: float, steps: int, batch_size: int, n_val: int) -> float:
    """An epoch's expected seconds from one training step's: its steps, then validating n_val images."""
    return step_s * (steps + VALIDATION_COST * n_val / batch_size)


def recent_epoch_seconds(history: list[dict], last: int = 2) -> float:
    """The pace now: the mean duration of the last epochs (the host's speed drifts, so not of all of them)."""
    rows = history[-last:]
    return sum(r["seconds"] for r in rows) / len(rows)
