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
