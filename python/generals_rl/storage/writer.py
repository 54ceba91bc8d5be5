"""The writer interface every destination implements, and the policies a
shard writer follows: when a shard rotates, and how failed commits are retried."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..backoff import Backoff
from ..experience.batch import DecodedBatch, RawBatch


@dataclass(frozen=True)
class Rotation:
    """When a shard is closed and the next begins: at ``max_experiences``
    experiences, once its encoded size reaches ``max_bytes`` (checked after each
    chunk), or ``max_age`` seconds after its first experience (checked on every
    write and ``poll``). Batches are encoded once at least ``chunk_size``
    experiences are pending (a Parquet row group holds one such chunk)."""

    max_experiences: int = 500_000
    max_bytes: int = 256 * 1024 * 1024
    max_age: float = 600.0
    chunk_size: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_experiences", "max_bytes", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if (
            isinstance(self.max_age, bool)
            or not isinstance(self.max_age, (int, float))
            or not self.max_age > 0
        ):
            raise ValueError(f"max_age: must be a positive number of seconds, got {self.max_age!r}")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy(Backoff):
    """Backoff between attempts at committing a shard: ``base_delay * 2**k``
    seconds (at most ``max_delay``, with up to 25% jitter); ``flush``/``close`` give
    up after ``attempts`` attempts."""

    attempts: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.attempts) < 1:
            raise ValueError(f"attempts: must be at least 1, got {self.attempts}")


class Writer(abc.ABC):
    """Writes experience batches durably. Use as a context manager or call ``close``.

    ``write`` takes the batches cursors return (``RawBatch``; writers storing decoded
    states also take ``DecodedBatch``). ``durable_sequence`` is the highest
    sequence number known to be durably stored (None before any), and
    ``resume_sequence`` where a producer should continue after a restart.
    """

    @abc.abstractmethod
    def write(self, batch: RawBatch | DecodedBatch) -> None: ...

    @abc.abstractmethod
    def flush(self) -> None:
        """Commits everything written so far (closing the current shard)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flushes and releases the destination; idempotent."""

    def poll(self) -> None:  # noqa: B027 - optional: writers without timed work
        """Time-based work: rotation by age and retries of failed commits."""

    def abort(self) -> None:  # noqa: B027 - optional: writers that hold nothing
        """Releases the destination without committing what is held (it is not
        stored); for giving up on a destination that keeps failing."""

    @property
    @abc.abstractmethod
    def durable_sequence(self) -> int | None: ...

    @property
    def resume_sequence(self) -> int:
        """The first sequence number not durably stored (0 if none is)."""
        durable = self.durable_sequence
        return 0 if durable is None else durable + 1

    @abc.abstractmethod
    def stats(self) -> dict: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
