"""BufferSink: experiences written on a background thread while the games are
stepped, lossless under backpressure, resumable, and reporting durability."""

from __future__ import annotations

import contextlib
import threading
import time

import generals_rl
import numpy as np
import pytest
from generals_rl.bots import RandomBot
from generals_rl.experience import BufferFullError
from generals_rl.storage import (
    BufferSink,
    ParquetWriter,
    RetryPolicy,
    StorageError,
    Writer,
    continue_numbering,
    open_dataset,
)
from storage_support import assert_same_raw, joined


def selfplay(buffer, steps: int, envs: int = 16, reader=None, seed: int = 0) -> list:
    """Steps ``envs`` games ``steps`` times; ``reader`` (a cursor) is drained after
    each step and what it read is returned."""
    env = generals_rl.VecEnv(envs, buffer=buffer, max_ticks=80, seed=seed)
    bot = RandomBot(seed)
    env.reset()
    read = []
    for _ in range(steps):
        env.step(bot.act(env))
        if reader is not None:
            read.append(reader.read_raw(1 << 20))
    return read


def test_sink_writes_everything_while_games_are_stepped(tmp_path):
    # A small block-policy buffer: the games wait for the sink whenever it lags.
    buffer = generals_rl.ExperienceBuffer(capacity=4_096, policy="block")
    everything = buffer.cursor()
    writer = ParquetWriter(tmp_path, max_experiences=5_000, chunk_size=1_000)
    sink = BufferSink(buffer, writer, batch_size=1_500, poll_interval=0.01).start()
    stepping_thread = threading.get_ident()
    delivered = selfplay(buffer, 300, reader=everything)
    assert sink.running and stepping_thread == threading.get_ident()
    sink.stop(drain=True)
    expected = joined([b for b in delivered if len(b)])
    assert len(expected) == buffer.head
    assert sink.durable_sequence == buffer.head - 1
    stats = sink.stats()
    assert (
        stats["experiences_read"] == buffer.head and stats["missed"] == 0 and not stats["running"]
    )
    assert stats["writer"]["shards_committed"] >= 2 and 0 < stats["bytes_per_experience"] < 150
    assert writer.closed
    assert_same_raw(open_dataset(tmp_path).read(), expected)


def test_sink_from_a_filtered_cursor_and_durable_progress(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    everything = buffer.cursor()
    writer = ParquetWriter(tmp_path, max_experiences=800, chunk_size=200)
    with BufferSink(buffer.cursor(player_ids=[1]), writer, poll_interval=0.01) as sink:
        delivered = selfplay(buffer, 120, envs=8, reader=everything)
        deadline = threading.Event()
        while sink.durable_sequence is None and not deadline.wait(0.01):
            pass
        assert sink.durable_sequence is not None  # shards become durable while the sink runs
    expected = joined(delivered)
    assert_same_raw(open_dataset(tmp_path).read(), expected.select(expected.player_id == 1))


def test_sink_resumes_after_the_writers_durable_sequence(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    everything = buffer.cursor()
    delivered = joined(selfplay(buffer, 60, envs=8, reader=everything))
    first = ParquetWriter(tmp_path)
    first.write(delivered.select(delivered.sequence < 500))
    first.close()
    writer = ParquetWriter(tmp_path)
    sink = BufferSink(buffer, writer).start()  # start="resume": at sequence 500
    sink.stop()
    assert sink.stats()["experiences_read"] == len(delivered) - 500
    assert_same_raw(open_dataset(tmp_path).read(), delivered)


class FailingWriter(Writer):
    """Fails its first ``failures`` writes, then hands batches to ``inner``."""

    def __init__(self, inner: Writer, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def write(self, batch) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("disk unavailable")
        self.inner.write(batch)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    @property
    def durable_sequence(self):
        return self.inner.durable_sequence

    def stats(self) -> dict:
        return self.inner.stats()


def test_sink_retries_a_failing_write_without_dropping_the_batch(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    everything = buffer.cursor()
    delivered = joined(selfplay(buffer, 40, envs=8, reader=everything))
    writer = FailingWriter(ParquetWriter(tmp_path), failures=3)
    sink = BufferSink(buffer, writer, start="oldest", poll_interval=0.01).start()
    sink.stop()
    stats = sink.stats()
    assert stats["write_errors"] == 3 and "disk unavailable" in stats["last_error"]
    assert_same_raw(open_dataset(tmp_path).read(), delivered)


def test_sink_stops_with_the_error_when_the_writer_keeps_failing(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    selfplay(buffer, 10, envs=4)
    sink = BufferSink(
        buffer, FailingWriter(ParquetWriter(tmp_path), failures=10**9), poll_interval=0.01
    )
    sink.start()
    with pytest.raises(StorageError, match="disk unavailable"):
        sink.stop(drain=False, timeout=30)


def test_sink_arguments_are_checked(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=1_000, policy="block")
    writer = ParquetWriter(tmp_path)
    with pytest.raises(TypeError, match="Writer"):
        BufferSink(buffer, object())
    with pytest.raises(TypeError, match="ExperienceBuffer or a Cursor"):
        BufferSink([1, 2], writer)
    with pytest.raises(ValueError, match="start"):
        BufferSink(buffer.cursor(), writer, start="oldest")
    with pytest.raises(ValueError, match="start"):
        BufferSink(buffer, writer, start="latest")
    with pytest.raises(ValueError, match="batch_size"):
        BufferSink(buffer, writer, batch_size=0)
    sink = BufferSink(buffer, writer)
    with pytest.raises(RuntimeError, match="not started"):
        sink.stop()
    sink.start()
    with pytest.raises(RuntimeError, match="already"):
        sink.start()
    sink.stop()
    assert np.isscalar(sink.stats()["experiences_read"])


def test_a_fresh_buffer_continues_the_stored_numbering(tmp_path):
    """After a crash the new process's buffer starts at the writer's resume
    sequence: everything it produces is stored, nothing is numbered twice."""
    old = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    stored_before = joined(selfplay(old, 30, envs=8, reader=old.cursor()))
    with ParquetWriter(tmp_path) as writer:
        writer.write(stored_before)
    fresh = generals_rl.ExperienceBuffer(capacity=100_000, policy="block")
    writer = ParquetWriter(tmp_path)
    assert continue_numbering(fresh, writer) == len(stored_before) == fresh.head
    everything = fresh.cursor()
    sink = BufferSink(fresh, writer).start()
    produced = joined(selfplay(fresh, 30, envs=8, reader=everything, seed=5))
    sink.stop()
    assert produced.sequence[0] == len(stored_before)
    assert_same_raw(open_dataset(tmp_path).read(), joined([stored_before, produced]))
    with pytest.raises(ValueError, match="fresh buffer"):
        continue_numbering(fresh, writer)
    attached = generals_rl.ExperienceBuffer(capacity=1_000, policy="block")
    generals_rl.VecEnv(2, buffer=attached).reset()
    with pytest.raises(ValueError, match="before a VecEnv"):
        continue_numbering(attached, 10)


def test_a_sink_that_gives_up_holds_producers_back_and_tells_its_owner(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=2_000, policy="block")
    writer = FailingWriter(ParquetWriter(tmp_path), failures=10**9)
    sink = BufferSink(
        buffer,
        writer,
        poll_interval=0.01,
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.01),
    ).start()
    env = generals_rl.VecEnv(8, buffer=buffer, max_ticks=80, buffer_timeout=0.05)
    bot = RandomBot(0)
    env.reset()
    deadline = time.monotonic() + 30
    while sink.error is None and time.monotonic() < deadline:
        with contextlib.suppress(BufferFullError):  # the sink holds it full while it retries
            env.step(bot.act(env))
    assert isinstance(sink.error, StorageError)
    deadline = time.monotonic() + 10
    while sink.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sink.running
    assert sink.stats()["write_errors"] == 3
    with pytest.raises(BufferFullError):  # the sink's cursor still holds what it could not store
        for _ in range(1_000):
            env.step(bot.act(env))
    with pytest.raises(StorageError, match="disk unavailable"):
        sink.stop()
    env.step(bot.act(env))  # the owner stopped the sink: its cursor no longer holds producers


def test_a_sink_rides_out_failures_within_its_retry_budget(tmp_path):
    buffer = generals_rl.ExperienceBuffer(capacity=2_000, policy="block")
    everything = buffer.cursor()
    writer = FailingWriter(ParquetWriter(tmp_path), failures=5)
    sink = BufferSink(
        buffer,
        writer,
        start="oldest",
        poll_interval=0.01,
        retry=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05),
    ).start()
    delivered = joined(selfplay(buffer, 100, envs=8, reader=everything))
    sink.stop()
    assert sink.error is None and sink.stats()["write_errors"] == 5
    assert_same_raw(open_dataset(tmp_path).read(), delivered)
