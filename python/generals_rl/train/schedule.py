"""The schedules PPO and the distributed learner share: how far a run is, by its steps
or by its training wall time against a budget, and a learning rate decaying over it."""

from __future__ import annotations

import math


def check_time_budget(time_budget: float | None) -> None:
    """Refuses a ``time_budget`` that is not None or positive, finite seconds."""
    if time_budget is not None and not 0 < time_budget < math.inf:
        raise ValueError(f"time_budget: must be positive seconds, got {time_budget}")


def run_progress(done: int, total: int, wall_time: float, time_budget: float | None) -> float:
    """0 to 1: ``done`` of ``total`` steps, or ``wall_time`` of ``time_budget`` seconds
    if further."""
    progress = done / total
    if time_budget is not None:
        progress = max(progress, wall_time / time_budget)
    return min(1.0, progress)


def decayed_lr(lr: float, final_fraction: float, progress: float) -> float:
    """``lr`` decayed linearly with ``progress`` to ``final_fraction`` of it."""
    return lr * max(final_fraction, 1.0 - progress)
