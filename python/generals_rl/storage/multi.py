"""The same experiences to several destinations, for redundancy."""

from __future__ import annotations

import logging

from ..experience.batch import DecodedBatch, RawBatch
from ._batches import new_rows
from .errors import StorageError
from .writer import Writer

log = logging.getLogger("generals_rl.storage")


class MultiWriter(Writer):
    """Writes every batch to each of ``writers``. A destination that fails is
    reported (``stats()["destinations"][i]["errors"]``, ``last_error``) and keeps
    retrying on its own schedule (a ``ShardWriter`` holds what it took and retries
    with backoff) without holding the others back. A destination that refuses a
    batch (it failed beyond what it holds) makes ``write`` raise StorageError
    after the others took the batch; writing the same batch again gives it only
    to the destinations that have not taken it (batches are told apart by their
    sequence numbers, which increase from batch to batch as a cursor delivers
    them), so no destination has a gap or a duplicate. Bad input (a TypeError or
    ValueError from a writer) is raised at once.

    ``durable_sequence`` is the highest sequence durable at every destination;
    ``durable_sequences`` gives each one's.
    """

    def __init__(self, writers: list[Writer], names: list[str] | None = None) -> None:
        writers = list(writers)
        if not writers:
            raise ValueError("writers: need at least one destination")
        for w in writers:
            if not isinstance(w, Writer):
                raise TypeError(f"writers: {type(w).__name__} is not a generals_rl.storage.Writer")
        if names is not None and len(names) != len(writers):
            raise ValueError(f"names: {len(names)} names for {len(writers)} writers")
        self.writers = writers
        self.names = (
            list(names)
            if names is not None
            else [str(w.stats().get("destination", f"writer {i}")) for i, w in enumerate(writers)]
        )
        self._errors = [0] * len(writers)
        self._last_error: list[str | None] = [None] * len(writers)
        self._taken_through: list[int | None] = [None] * len(writers)  # the last sequence each took
        self._closed = False

    def _each(self, action: str, call) -> list[tuple[str, Exception]]:
        failures = []
        for i, writer in enumerate(self.writers):
            try:
                call(i, writer)
            except (TypeError, ValueError):
                raise
            except Exception as exc:
                self._errors[i] += 1
                self._last_error[i] = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s failed: %s", self.names[i], action, exc)
                failures.append((self.names[i], exc))
        return failures

    def write(self, batch: RawBatch | DecodedBatch) -> None:
        if self._closed:
            raise StorageError("write after close")
        if len(batch) == 0:
            return
        last = int(batch.sequence.max())

        def write_new_rows(i: int, writer: Writer) -> None:
            taken = self._taken_through[i]
            rows = batch if taken is None else new_rows(batch, taken)
            if len(rows):
                writer.write(rows)
                self._taken_through[i] = last

        failures = self._each("write", write_new_rows)
        if failures:
            raise StorageError("refused by " + "; ".join(f"{n}: {e}" for n, e in failures))

    def poll(self) -> None:
        self._each("poll", lambda _, w: w.poll())

    def flush(self) -> None:
        failures = self._each("flush", lambda _, w: w.flush())
        if failures:
            raise StorageError("flush failed for " + "; ".join(f"{n}: {e}" for n, e in failures))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        failures = self._each("close", lambda _, w: w.close())
        if failures:
            raise StorageError("close failed for " + "; ".join(f"{n}: {e}" for n, e in failures))

    def abort(self) -> None:
        self._closed = True
        for writer in self.writers:
            writer.abort()

    @property
    def durable_sequences(self) -> list[int | None]:
        return [w.durable_sequence for w in self.writers]

    @property
    def durable_sequence(self) -> int | None:
        sequences = self.durable_sequences
        known = [s for s in sequences if s is not None]
        return min(known) if len(known) == len(sequences) else None

    def stats(self) -> dict:
        destinations = []
        for i, writer in enumerate(self.writers):
            s = writer.stats()
            s.update(
                name=self.names[i],
                errors=self._errors[i],
                last_error=self._last_error[i] or s.get("last_error"),
            )
            destinations.append(s)
        return {"durable_sequence": self.durable_sequence, "destinations": destinations}
