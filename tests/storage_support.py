"""Shared by the storage suites: real self-play experiences as the buffer delivers
them, comparisons of stored experiences against them, and an S3 server."""

from __future__ import annotations

import contextlib
import functools
import os
import re

import generals_rl
import numpy as np
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.experience import RawBatch
from generals_rl.experience.batch import RECORD_COLUMNS, STATE_TABLES

RECORD = tuple(RECORD_COLUMNS)
TABLES = tuple(STATE_TABLES)
SHARD_KEY = re.compile(
    r"^year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/game_([0-9a-f]{16})_(\d{4,})\.([a-z.]+)$"
)


def play(
    steps: int,
    envs: int = 8,
    seed: int = 0,
    max_ticks: int = 60,
    read_every: int = 7,
    heuristic: bool = False,
) -> list[RawBatch]:
    """The batches a cursor delivers while ``envs`` 1v1 games on 20x20 boards are
    played for ``steps`` steps (games end by elimination or at ``max_ticks``)."""
    buffer = generals_rl.ExperienceBuffer(capacity=steps * envs * 2 + 16, policy="block")
    cursor = buffer.cursor()
    env = generals_rl.VecEnv(envs, buffer=buffer, max_ticks=max_ticks, seed=seed)
    env.reset()
    bot = HeuristicBot() if heuristic else RandomBot(seed)
    batches = []
    for step in range(steps):
        env.step(bot.act(env))
        if step % read_every == read_every - 1:
            batches.append(cursor.read_raw(1 << 20))
    tail = cursor.read_raw(1 << 20)
    if len(tail):
        batches.append(tail)
    return batches


@functools.lru_cache(maxsize=4)
def played(
    steps: int = 150, envs: int = 8, seed: int = 0, heuristic: bool = False
) -> tuple[RawBatch, ...]:
    """``play`` once per argument set (tests share them and must not change them)."""
    return tuple(play(steps, envs, seed, heuristic=heuristic))


def joined(batches) -> RawBatch:
    return RawBatch.concat(list(batches))


def rows_states(batch: RawBatch) -> dict:
    """Each row's state and next state boards, resolved from the state tables."""
    out = {}
    for table in TABLES:
        values = getattr(batch, table)
        out[table] = values[batch.state_index]
        out["next_" + table] = values[batch.next_state_index]
    return out


def assert_same_raw(got: RawBatch, expected: RawBatch, game_ids: str = "equal") -> None:
    """Equal experiences row by row: record columns and each row's boards. With
    ``game_ids="renamed"`` the game ids may differ (they are drawn per process, and
    a game split by a restart has two) but each id must name one game."""
    assert len(got) == len(expected)
    if game_ids == "renamed":
        pairs = np.unique(np.stack([got.game_id, expected.game_id], axis=1), axis=0)
        assert len(np.unique(pairs[:, 0])) == len(pairs)
    for name in RECORD:
        if name == "game_id" and game_ids == "renamed":
            continue
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    ours, theirs = rows_states(got), rows_states(expected)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def assert_same_decoded(got, expected) -> None:
    """Equal decoded batches: record columns, observations and masks."""
    assert len(got) == len(expected)
    for name in (*RECORD, "state", "next_state", "action_mask"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


@contextlib.contextmanager
def moto_s3():
    """A real S3-compatible HTTP server (moto in server mode) on loopback, with
    test credentials in the environment meanwhile; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_EC2_METADATA_DISABLED",
        )
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
