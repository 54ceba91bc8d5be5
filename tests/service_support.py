"""Helpers shared by the experience service tests: buffers filled by real
self-play, a background producer, and a server on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import numpy as np
from generals_rl import ExperienceBuffer, VecEnv
from generals_rl.bots import RandomBot
from generals_rl.experience import BufferFullError, RawBatch
from generals_rl.service import ExperienceServer

HEIGHT = WIDTH = 10  # small boards keep decoding cheap


def make_buffer(capacity: int = 100_000, policy: str = "block", **kwargs) -> ExperienceBuffer:
    return ExperienceBuffer(HEIGHT, WIDTH, capacity, policy, **kwargs)


def make_env(
    buffer: ExperienceBuffer, num_envs: int = 8, seed: int = 0, max_ticks: int = 300
) -> VecEnv:
    return VecEnv(
        num_envs,
        2,
        HEIGHT,
        WIDTH,
        seed=seed,
        max_ticks=max_ticks,
        num_threads=1,
        observations=False,
        action_masks=False,
        buffer=buffer,
        buffer_timeout=0.05,
    )


def fill(
    buffer: ExperienceBuffer, count: int, num_envs: int = 8, seed: int = 0, max_ticks: int = 300
) -> None:
    """Plays random games into ``buffer`` until it has ``count`` experiences or more."""
    env = make_env(buffer, num_envs, seed, max_ticks)
    env.reset()
    bot = RandomBot(seed)
    while buffer.head < count:
        env.step(bot.act(env))


class Producer(threading.Thread):
    """Plays random games into a buffer on a background thread until ``target``
    experiences (or ``stop()``), at most ``rate`` experiences per second and, with
    ``paced_by`` (a reader's position), at most ``max_lead`` experiences ahead of it."""

    def __init__(
        self,
        buffer: ExperienceBuffer,
        target: int | None = None,
        rate: float | None = None,
        num_envs: int = 8,
        seed: int = 1,
        max_ticks: int = 300,
        paced_by: Callable[[], int] | None = None,
        max_lead: int = 0,
    ) -> None:
        super().__init__(daemon=True)
        self.buffer, self.target, self.rate = buffer, target, rate
        self.paced_by, self.max_lead = paced_by, max_lead
        self.env = make_env(buffer, num_envs, seed, max_ticks)
        self.bot = RandomBot(seed)
        self.blocked_steps = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        self.env.reset()
        start, produced = time.monotonic(), self.buffer.head
        while not self._stop_event.is_set() and (
            self.target is None or self.buffer.head < self.target
        ):
            if self.paced_by is not None and self.buffer.head - self.paced_by() > self.max_lead:
                time.sleep(0.001)
                continue
            try:
                self.env.step(self.bot.act(self.env))
            except BufferFullError:
                self.blocked_steps += 1
                continue
            if self.rate:
                ahead = (self.buffer.head - produced) / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


@contextlib.contextmanager
def serving(buffer: ExperienceBuffer, **kwargs):
    server = ExperienceServer(buffer, "127.0.0.1:0", **kwargs).start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


@contextlib.contextmanager
def port_in_use():
    """A port on 127.0.0.1 that another listener holds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def everything(buffer: ExperienceBuffer) -> RawBatch:
    """All resident experiences, read straight from the buffer (the ground truth)."""
    cursor = buffer.cursor(start="oldest")
    parts = []
    while True:
        batch = cursor.read_raw(65536, 0.0)
        if not len(batch):
            break
        parts.append(batch)
    cursor.close()
    return RawBatch.concat(parts)


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def assert_contiguous(sequences: np.ndarray, start: int, stop: int) -> None:
    """Exactly ``start..stop-1``, each once, in order."""
    sequences = np.asarray(sequences, dtype=np.int64)
    assert len(sequences) == stop - start, (
        f"got {len(sequences)} experiences, expected {stop - start}"
    )
    np.testing.assert_array_equal(sequences, np.arange(start, stop))
