"""Exponential backoff with jitter: the one schedule every retry loop of the
package waits by (storage commits, the sink's writes, a consumer's reconnects)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """``base_delay * 2**(failures - 1)`` seconds, at most ``max_delay``, times a
    jitter factor drawn from ``jitter`` (low, high), so that clients failing
    together do not retry together."""

    base_delay: float = 0.2
    max_delay: float = 10.0
    jitter: tuple[float, float] = (1.0, 1.25)

    def __post_init__(self) -> None:
        if not (self.base_delay >= 0 and self.max_delay >= 0):
            raise ValueError("base_delay, max_delay: must be >= 0")
        low, high = self.jitter
        if not 0 <= low <= high:
            raise ValueError(f"jitter: expected 0 <= low <= high, got {self.jitter!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 for the first)."""
        base = min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1))
        return base * random.uniform(*self.jitter)
