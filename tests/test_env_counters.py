"""The counters a VecEnv keeps in C++ for metrics, reward weights changed
between steps, and the defaults every layer takes from the C++ structs."""

import inspect

import numpy as np
import pytest
from generals_rl import ExperienceBuffer, RewardConfig, VecEnv, _core
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.defaults import MAX_TICKS, REWARD_BUCKETS, REWARD_WEIGHTS
from generals_rl.selfplay import SelfPlayConfig


def play(env: VecEnv, steps: int, seed: int = 0):
    """Steps with random moves (some illegal); returns per-step rewards, alive flags
    before each step, and the finished games' winners and truncation flags."""
    bot, heuristic, rng = RandomBot(seed=seed), HeuristicBot(), np.random.default_rng(seed)
    rewards, alive, winners, truncated = [], [], [], []
    env.reset()
    for _ in range(steps):
        actions = bot.act(env).copy()
        heuristic.act(env, players=[0], out=actions)
        actions[rng.random(actions.shape) < 0.1] = 7  # mostly illegal
        alive.append(env.alive.copy())
        _, r, _, trunc, info = env.step(actions)
        rewards.append(r.copy())
        done = info["episode_done"]
        winners += info["episode_winner"][done].tolist()
        truncated += trunc[done].tolist()
    return np.array(rewards), np.array(alive), winners, truncated


def test_counters_equal_what_the_steps_returned():
    buffer = ExperienceBuffer(8, 8, 200_000, "overwrite")
    env = VecEnv(
        12,
        players=3,
        height=8,
        width=8,
        seed=3,
        max_ticks=150,
        buffer=buffer,
        observations=False,
        action_masks=False,
        reward_config=RewardConfig(land_gained=0.3, army_advantage=0.5),
    )
    rewards, alive, winners, truncated = play(env, 400)
    c = env.counters()
    # One experience per player alive before the tick, exactly what the buffer holds.
    np.testing.assert_array_equal(c["experiences"], alive.sum(axis=(0, 1)))
    assert int(c["experiences"].sum()) == buffer.head
    recorded = rewards[alive]
    bounds = np.array(REWARD_BUCKETS)
    expected = np.bincount(
        np.searchsorted(bounds, recorded.astype(np.float64) - 1e-7, side="left"),
        minlength=len(bounds) + 1,
    )
    np.testing.assert_array_equal(c["reward_buckets"], expected)
    assert c["reward_buckets"].sum() == c["experiences"].sum()
    assert c["reward_sum"] == pytest.approx(float(recorded.sum()), rel=1e-5, abs=1e-3)
    assert (
        c["reward_buckets"][0] > 0 and c["reward_buckets"][-1] > 0
    )  # losses and wins: the end buckets
    assert c["wins"].sum() + c["games_truncated"] + c["games_no_winner"] == len(winners)
    for p in range(3):
        assert c["wins"][p] == winners.count(p)
    assert c["games_truncated"] == sum(truncated)
    assert c["wins"][0] > 0 and c["games_truncated"] > 0
    assert c["illegal_moves"].sum() > 0


def test_reward_weights_change_from_the_next_step():
    env = VecEnv(4, seed=1, max_ticks=0, observations=False, action_masks=False)
    bot = RandomBot(seed=0)
    env.reset()
    for _ in range(30):
        _, before, *_ = env.step(bot.act(env))
    assert np.abs(before).max() > 0
    env.set_reward_config(
        RewardConfig(win=0, loss=0, city_captured=0, city_lost=0, army_advantage=0)
    )
    _, after, *_ = env.step(bot.act(env))
    assert not after.any()
    assert env.engine_reward_config().army_advantage == 0
    with pytest.raises(TypeError, match="reward_config"):
        env.set_reward_config({"win": 1.0})


def test_one_source_of_defaults():
    core = _core.vec_env_defaults()
    assert MAX_TICKS == core["max_ticks"] == 2000
    assert inspect.signature(VecEnv).parameters["max_ticks"].default == MAX_TICKS
    assert SelfPlayConfig().max_ticks == MAX_TICKS
    for name, value in REWARD_WEIGHTS.items():
        assert getattr(RewardConfig(), name) == value
        assert np.float32(value) == np.float32(core["reward"][name])
    assert len(REWARD_BUCKETS) == 21 and REWARD_BUCKETS[0] == -1.0 and REWARD_BUCKETS[-1] == 1.0
