"""A background thread moving experiences from an ExperienceBuffer cursor into a
writer, so that writing never runs on the threads that step the games."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..experience.buffer import Cursor, ExperienceBuffer
from .errors import StorageError
from .writer import RetryPolicy, Writer

log = logging.getLogger("generals_rl.storage")

# The sink's retry budget: 12 attempts over about 15 s.
DEFAULT_RETRY = RetryPolicy(attempts=12, base_delay=0.05, max_delay=2.0)


class BufferSink:
    """Reads compact batches (``Cursor.read_raw``) of up to ``batch_size``
    experiences and writes them with ``writer`` on its own thread.

    ``source`` is an ExperienceBuffer (the sink opens its own cursor at ``start``:
    "resume" — the writer's ``resume_sequence`` when it holds data, else the oldest
    resident —, "oldest", "newest" or a sequence number) or a Cursor to read from.
    A failing ``write`` (or ``flush``) is retried with the same batch, with the
    delays of ``retry``: nothing read is dropped, and with the buffer's block
    policy producers wait meanwhile. After ``retry.attempts`` failures in a row
    (about 15 s by default) the sink gives up: it stops writing, sets ``error``
    for its owner to act on, and keeps its cursor open (so producers in block
    mode stay held back) until ``stop``.

    ``durable_sequence`` is the highest sequence the writer has made durable.
    """

    def __init__(
        self,
        source: ExperienceBuffer | Cursor,
        writer: Writer,
        *,
        batch_size: int = 4096,
        poll_interval: float = 0.05,
        start: str | int = "resume",
        retry: RetryPolicy | None = None,
        close_writer: bool = True,
    ) -> None:
        if not isinstance(writer, Writer):
            raise TypeError(
                f"writer: expected a generals_rl.storage.Writer, got {type(writer).__name__}"
            )
        if isinstance(source, Cursor):
            if start != "resume":
                raise ValueError(
                    "start: only for an ExperienceBuffer source; a Cursor reads from where it is"
                )
        elif not isinstance(source, ExperienceBuffer):
            raise TypeError(
                f"source: expected an ExperienceBuffer or a Cursor, got {type(source).__name__}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: must be at least 1, got {batch_size}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval: must be positive, got {poll_interval}")
        if isinstance(start, str) and start not in ("resume", "oldest", "newest"):
            raise ValueError(
                f"start: expected 'resume', 'oldest', 'newest' or a sequence number, got {start!r}"
            )
        self.source = source
        self.writer = writer
        self.batch_size = int(batch_size)
        self.poll_interval = float(poll_interval)
        self.start_at = start
        self.retry = retry or DEFAULT_RETRY
        self.close_writer = close_writer
        self._cursor: Cursor | None = source if isinstance(source, Cursor) else None
        self._owns_cursor = not isinstance(source, Cursor)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._drain = True
        self.error: BaseException | None = None
        self._started_at: float | None = None
        self._stats: dict[str, Any] = {
            "experiences_read": 0,
            "batches_read": 0,
            "missed": 0,
            "write_errors": 0,
            "last_error": None,
        }

    # -- control --

    def start(self) -> BufferSink:
        if self._thread is not None:
            raise RuntimeError("start: the sink was started already")
        if self._cursor is None:
            start = self.start_at
            if start == "resume":
                start = (
                    self.writer.resume_sequence
                    if self.writer.durable_sequence is not None
                    else "oldest"
                )
            assert isinstance(self.source, ExperienceBuffer)  # a Cursor source is _cursor
            self._cursor = self.source.cursor(start=start)
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, name="generals-rl-buffer-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stops the thread: with ``drain`` after writing everything appended so far
        and flushing the writer; closes the writer (``close_writer``) and the cursor
        the sink opened. Raises the error that stopped the sink, if any (the
        writer is then aborted: what it held is not stored)."""
        if self._thread is None:
            raise RuntimeError("stop: the sink was not started")
        self._drain = drain
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StorageError(f"stop: the sink did not finish within {timeout} s")
        if self._owns_cursor and self._cursor is not None and not self._cursor.closed:
            self._cursor.close()
        if self.error is not None:
            if self.close_writer:
                self.writer.abort()
            raise StorageError(f"the sink stopped on an error: {self.error}") from self.error

    def __enter__(self) -> BufferSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(drain=exc[0] is None)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def durable_sequence(self) -> int | None:
        return self.writer.durable_sequence

    def stats(self) -> dict:
        s: dict[str, Any] = dict(self._stats)
        s["running"] = self.running
        s["lag"] = (
            self._cursor.lag if self._cursor is not None and not self._cursor.closed else None
        )
        s["durable_sequence"] = self.durable_sequence
        elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        s["experiences_per_second"] = s["experiences_read"] / elapsed if elapsed > 0 else None
        s["writer"] = self.writer.stats()
        s["bytes_per_experience"] = s["writer"].get("bytes_per_experience")
        s["error"] = None if self.error is None else f"{type(self.error).__name__}: {self.error}"
        return s

    # -- the thread --

    def _run(self) -> None:
        cursor = self._cursor
        assert cursor is not None  # opened by start
        try:
            while not self._stop.is_set():
                batch = cursor.read_raw(self.batch_size, self.poll_interval)
                if len(batch):
                    self._write(batch)
                self._guarded(self.writer.poll)
            if self._drain:
                while cursor.lag > 0:
                    batch = cursor.read_raw(self.batch_size, 0.0)
                    if not len(batch):
                        break
                    self._write(batch)
                self._guarded(self.writer.flush)
            if self.close_writer:
                self._guarded(self.writer.close)
        except BaseException as exc:
            self.error = exc
            log.warning("buffer sink stopped: %s", exc)

    def _write(self, batch) -> None:
        self._stats["experiences_read"] += len(batch)
        self._stats["batches_read"] += 1
        self._stats["missed"] += int(batch.missed)
        self._guarded(lambda: self.writer.write(batch))

    def _guarded(self, call) -> None:
        """Runs ``call``, retrying failures with the delays of ``retry``; raises the
        last failure after ``retry.attempts`` of them, or at once when the sink is
        stopped without draining."""
        failures = 0
        while True:
            try:
                call()
                return
            except (TypeError, ValueError):
                raise
            except Exception as exc:
                failures += 1
                self._stats["write_errors"] += 1
                self._stats["last_error"] = f"{type(exc).__name__}: {exc}"
                log.warning("buffer sink: %s (attempt %d)", exc, failures)
                if failures >= self.retry.attempts or (self._stop.is_set() and not self._drain):
                    raise
                time.sleep(self.retry.delay(failures))


def continue_numbering(buffer: ExperienceBuffer, writer: Writer | int) -> int:
    """Makes a fresh ``buffer`` number its experiences from ``writer.resume_sequence``
    (or the sequence given), so that a producer restarted after a crash continues
    the stored sequence numbers instead of repeating ones the destination holds
    (which a resuming writer would skip). Call it before a VecEnv is given the
    buffer. Returns the first sequence number the buffer will give."""
    if not isinstance(buffer, ExperienceBuffer):
        raise TypeError(f"buffer: expected an ExperienceBuffer, got {type(buffer).__name__}")
    start = writer.resume_sequence if isinstance(writer, Writer) else int(writer)
    if start < 0:
        raise ValueError(f"sequence: must be >= 0, got {start}")
    stats = buffer.stats()
    if buffer.head != 0 or stats["total_states"] != 0:
        raise ValueError(
            "buffer: continue the numbering of a fresh buffer, before a VecEnv records into it "
            f"({buffer.head} experiences and {stats['total_states']} states appended so far)"
        )
    buffer.start_at(start)
    return int(buffer.head)
