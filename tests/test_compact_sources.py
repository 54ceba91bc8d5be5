"""Every source gives the compact form: what the buffer's cursors and sampler return
is what the compact VecEnv showed, and expands to the decoded batches bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl import ExperienceBuffer
from generals_rl.bots import RandomBot
from generals_rl.experience import CompactBatch
from generals_rl.vec_env import VecEnv


def collect(army_scaling: str = "linear", army_scale: float = 1000.0, ticks: int = 40):
    """A compact env recording into a buffer; returns the buffer and what the env
    showed each (game, tick, player): tiles, armies, packed mask."""
    buffer = ExperienceBuffer(
        8, 8, 10_000, "overwrite", army_scaling=army_scaling, army_scale=army_scale
    )
    env = VecEnv(
        6,
        players=2,
        height=8,
        width=8,
        seed=4,
        max_ticks=25,
        buffer=buffer,
        observation_format="compact",
        army_scaling=army_scaling,
        army_scale=army_scale,
    )
    bot = RandomBot(seed=2)
    shown = {}
    obs, info = env.reset()
    for _ in range(ticks):
        for i in range(env.num_envs):
            for p in range(2):
                key = (int(info["game_id"][i]), int(info["tick"][i]), p)
                shown[key] = (
                    obs.tiles[i, p].copy(),
                    obs.armies[i, p].copy(),
                    info["action_masks"][i, p].copy(),
                )
        obs, _, _, _, info = env.step(bot.act(env))
    return buffer, shown


@pytest.mark.parametrize("army_scaling,army_scale", [("linear", 1000.0), ("log", 1e5)])
def test_cursor_reads_what_the_env_showed(army_scaling, army_scale):
    buffer, shown = collect(army_scaling, army_scale)
    compact = buffer.cursor().read_compact(100_000)
    decoded = buffer.cursor().read(100_000)
    assert isinstance(compact, CompactBatch) and len(compact) == len(decoded) > 400
    assert compact.state_armies.dtype == (np.int32 if army_scale > 32768 else np.uint16)
    for row in range(len(compact)):
        key = (int(compact.game_id[row]), int(compact.tick[row]), int(compact.player_id[row]))
        tiles, armies, mask = shown[key]
        assert np.array_equal(compact.state_tiles[row], tiles)
        assert np.array_equal(compact.state_armies[row], armies)
        assert np.array_equal(compact.action_mask[row], mask)
    expanded = compact.expand(army_scaling, army_scale)
    for name in ("state", "next_state", "action_mask", "reward", "sequence"):
        assert getattr(expanded, name).tobytes() == getattr(decoded, name).tobytes(), name


def test_sampler_compact_expands_to_the_decoded_sample():
    buffer, _ = collect()
    options = dict(prioritized=True, n_step=3, gamma=0.9)
    compact = buffer.sample_compact(300, seed=11, **options)
    decoded = buffer.sample(300, seed=11, **options)
    expanded = compact.expand()
    for name in ("state", "next_state", "action_mask", "nstep_next_state", "weight", "sequence"):
        assert getattr(expanded, name).tobytes() == getattr(decoded, name).tobytes(), name


def _buffer_with_armies(army_scale: float, multiply: int) -> ExperienceBuffer:
    """Random games, their armies multiplied (and 70,000 on some tiles with
    ``multiply`` > 1, beyond uint16), appended to a new buffer."""
    source, _ = collect(army_scale=army_scale)
    cursor = source.cursor(start="oldest")
    raw = cursor.read_raw(100_000)
    raw.state_army = raw.state_army * multiply
    if multiply > 1:
        raw.state_army[::7, 2, 3] = 70_000
    buffer = ExperienceBuffer(8, 8, 10_000, "overwrite", army_scale=army_scale)
    buffer.append_raw(raw)
    return buffer


@pytest.mark.parametrize("army_scale", [1000.0, 1e5])
@pytest.mark.parametrize("multiply", [1, 50])
@pytest.mark.parametrize("obstacles", [False, True])
def test_indexed_read_makes_each_view_once_and_equals_the_per_row_read(
    army_scale, multiply, obstacles
):
    buffer = _buffer_with_armies(army_scale, multiply)
    rows = buffer.cursor(start="oldest").read_compact(100_000, obstacles=obstacles)
    cursor = buffer.cursor(start="oldest")
    parts = []
    while part := cursor.read_compact(97, obstacles=obstacles, indexed=True):  # 97: odd edges
        parts.append(part)
    assert sum(len(p) for p in parts) == len(rows) > 400
    assert sum(p.missed for p in parts) == 0 and parts[-1].next_sequence == buffer.head
    start = 0
    for part in parts:
        views = part.views
        assert views is not None
        wide = np.int32 if army_scale > 32768 else np.uint16  # saturating at 65,535
        assert views.armies.dtype == (np.uint8 if multiply == 1 else wide)
        # each distinct (game, tick, player) view once
        keys = set()
        for which in ("state", "next_state"):
            index = getattr(views, f"{which}_view")
            ticks = part.tick + (which == "next_state")
            columns = (part.game_id.tolist(), ticks.tolist(), part.player_id.tolist(), index)
            keys |= set(zip(*columns, strict=True))
        assert len({k[:3] for k in keys}) == len(keys) == len(views.tiles)
        end = start + len(part)
        for name in ("sequence", "game_id", "player_id", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(part, name), getattr(rows, name)[start:end])
        for name in ("state_tiles", "next_state_tiles", "action_mask"):
            np.testing.assert_array_equal(getattr(part, name), getattr(rows, name)[start:end])
        for name in ("state_armies", "next_state_armies"):
            np.testing.assert_array_equal(
                getattr(part, name).astype(np.int64), getattr(rows, name)[start:end]
            )
        start = end


def test_indexed_read_filters_and_stops_at_its_end():
    buffer, _ = collect()
    everything = buffer.cursor(start="oldest").read_compact(100_000)
    cursor = buffer.cursor(start="oldest", player_ids=[1])
    part = cursor.read_compact(10_000, indexed=True, end=300)
    assert part.next_sequence == cursor.position == 300
    chosen = (everything.player_id == 1) & (everything.sequence < 300)
    np.testing.assert_array_equal(part.sequence, everything.sequence[chosen])
    np.testing.assert_array_equal(part.state_tiles, everything.state_tiles[chosen])
    np.testing.assert_array_equal(part.next_state_armies, everything.next_state_armies[chosen])
    assert not len(cursor.read_compact(10, indexed=True, end=300))  # at its end already
    most = 2**64 - 1
    with pytest.raises(ValueError, match=rf"end: must be in 0\.\.{most}, got -1"):
        cursor.read_compact(10, indexed=True, end=-1)
    with pytest.raises(TypeError, match="end: expected a whole number, got '300'"):
        cursor.read_raw(10, end="300")
    with pytest.raises(ValueError, match="army_bytes: expected 2 or 4, got 3"):
        cursor._cursor.read_views(10, 0.0, 300, False, 3)
    with pytest.raises(ValueError, match="timeout"):
        cursor.read_compact(10, float("nan"), indexed=True)
    with pytest.raises(ValueError, match="max_items: at most 65536 rows a read, got 65537"):
        cursor.read_compact(65_537, indexed=True)
    with pytest.raises(ValueError, match="max_items: must be at least 1, got 0"):
        cursor.read_compact(0, indexed=True)
    with pytest.raises(TypeError, match=r"max_items: expected a whole number, got 2\.5"):
        cursor.read_raw(2.5)
