"""The Gymnasium and PettingZoo environments built on the VecEnv."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")
pettingzoo = pytest.importorskip("pettingzoo")

from generals_rl.bots import HeuristicBot
from generals_rl.envs import ENV_ID, GeneralsEnv, GeneralsParallelEnv
from generals_rl.vec_env import encode_observation
from gymnasium.utils.env_checker import check_env

with warnings.catch_warnings():  # pettingzoo.test imports PettingZoo's own deprecated examples
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.test import parallel_api_test

HEIGHT, WIDTH = 20, 20
PASS = HEIGHT * WIDTH * 8
FULL = HEIGHT * WIDTH * 4


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def assert_observation_of_board(observation: dict, state: dict, player: int) -> None:
    expected, mask = encode_observation(state["kind"], state["owner"], state["army"], player)
    np.testing.assert_array_equal(observation["observation"], expected)
    np.testing.assert_array_equal(observation["action_mask"], np.concatenate([mask, mask, [True]]))


# ---------------------------------------------------------------------------
# optional imports and registration


def test_importing_the_package_does_not_import_the_wrappers_dependencies():
    loaded = run_python(
        "import sys, generals_rl, generals_rl.vec_env, generals_rl.bots\n"
        "print(sorted(m for m in ('gymnasium', 'pettingzoo') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_gymnasium_make_imports_the_module_itself():
    shape = run_python(
        "import gymnasium\n"
        "env = gymnasium.make('generals_rl.envs:generals_rl/Generals-v0', max_ticks=10)\n"
        "obs, _ = env.reset(seed=1)\n"
        "print(obs['observation'].shape)"
    )
    assert shape == "(9, 20, 20)"


def test_registered_id_makes_the_env():
    env = gymnasium.make(ENV_ID, opponent="random", max_ticks=10)
    assert isinstance(env.unwrapped, GeneralsEnv) and env.unwrapped.opponent == "random"


# ---------------------------------------------------------------------------
# Gymnasium


@pytest.mark.parametrize("opponent", ["heuristic", "random"])
def test_gymnasium_checker_passes(opponent):
    env = gymnasium.make(ENV_ID, opponent=opponent, max_ticks=50, render_mode="ansi").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=False)


def test_spaces_and_pass_action():
    env = GeneralsEnv()
    assert env.action_space.n == PASS + 1
    assert env.observation_space["observation"].shape == (9, HEIGHT, WIDTH)
    assert env.observation_space["observation"].dtype == np.float32
    assert env.observation_space["action_mask"].n == PASS + 1
    obs, _ = env.reset(seed=3)
    assert obs["action_mask"][PASS] == 1 and obs["action_mask"].dtype == np.int8
    # At tick 0 the general has 1 army: passing is the only legal action.
    assert obs["action_mask"].sum() == 1
    with pytest.raises(ValueError, match="action"):
        env.step(PASS + 1)
    with pytest.raises(ValueError, match="action"):
        env.step(-1)


def test_gymnasium_episode_follows_the_game():
    env = GeneralsEnv(opponent="heuristic", max_ticks=400)
    obs, info = env.reset(seed=7)
    rng = np.random.default_rng(0)
    total, steps, illegal = 0.0, 0, 0
    terminated = truncated = False
    while not (terminated or truncated):
        assert env.observation_space.contains(obs)
        assert_observation_of_board(obs, env.vec_env.game_state(0), player=0)
        legal = np.flatnonzero(obs["action_mask"])
        action = int(rng.choice(legal))
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        # A legal move turns illegal only when the opponent, moving first, took the tile.
        illegal += info["illegal"]
    assert illegal <= steps // 20
    assert env.observation_space.contains(obs)
    assert info["tick"] == steps
    assert info["episode_return"][0] == pytest.approx(total, rel=1e-5, abs=1e-5)
    assert np.flatnonzero(obs["action_mask"]).tolist() == [PASS]  # nothing left to play
    if terminated:  # the heuristic beat random play: the agent owns nothing and sees only fog
        assert info["winner"] == 1 and obs["observation"][8].all()
    else:
        assert info["winner"] == -1 and steps == 400


def test_illegal_action_is_reported_and_half_moves_work():
    env = GeneralsEnv(opponent="random")
    obs, info = env.reset(seed=2)
    for _ in range(4):  # let the general grow
        obs, *_ = env.step(PASS)
    move = int(np.flatnonzero(obs["action_mask"][:FULL])[0])
    start = move // 4
    army_before = int(env.vec_env.game_state(0)["army"].ravel()[start])
    obs, _, _, _, info = env.step(FULL + move)  # the half move
    assert not info["illegal"]
    assert int(env.vec_env.game_state(0)["army"].ravel()[start]) == (army_before + 1) // 2
    blocked = int(np.flatnonzero(obs["action_mask"][:FULL] == 0)[0])
    _, _, _, _, info = env.step(blocked)
    assert info["illegal"]


def test_seeded_resets_repeat_and_differ_across_seeds():
    env = GeneralsEnv()
    first, _ = env.reset(seed=11)
    again, _ = env.reset(seed=11)
    other, _ = env.reset(seed=12)
    np.testing.assert_array_equal(first["observation"], again["observation"])
    assert not np.array_equal(first["observation"], other["observation"])
    next_game, _ = env.reset()
    assert not np.array_equal(next_game["observation"], other["observation"])


def test_agent_can_take_the_second_seat():
    env = GeneralsEnv(agent_player=1)
    obs, _ = env.reset(seed=4)
    assert_observation_of_board(obs, env.vec_env.game_state(0), player=1)


def test_ansi_render_draws_the_board():
    env = GeneralsEnv(render_mode="ansi")
    env.reset(seed=1)
    text = env.render()
    assert text.splitlines()[0] == "tick 0" and len(text.splitlines()) == HEIGHT + 1
    assert text.count("G0") == 1 and text.count("G1") == 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"opponent": "genius"}, "opponent"),
        ({"agent_player": 2}, "agent_player"),
        ({"render_mode": "human"}, "render_mode"),
        ({"max_ticks": -1}, "max_ticks"),
    ],
)
def test_bad_gymnasium_arguments_raise_naming_them(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GeneralsEnv(**kwargs)


# ---------------------------------------------------------------------------
# PettingZoo


@pytest.mark.parametrize("players", [2, 3])
def test_pettingzoo_parallel_api_passes(players):
    env = GeneralsParallelEnv(players=players, max_ticks=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=200)


def test_pettingzoo_observations_are_each_players_view():
    env = GeneralsParallelEnv(players=3)
    observations, _ = env.reset(seed=5)
    assert env.agents == ["player_0", "player_1", "player_2"]
    for _ in range(3):
        state = env.vec_env.game_state(0)
        for p, agent in enumerate(env.agents):
            assert_observation_of_board(observations[agent], state, p)
        observations, *_ = env.step({agent: PASS for agent in env.agents})
    with pytest.raises(ValueError, match="agent"):
        env.step({"player_9": PASS})


def test_pettingzoo_eliminated_player_leaves_and_game_goes_on():
    env = GeneralsParallelEnv(players=3, max_ticks=0)
    env.reset(seed=3)
    heuristic = HeuristicBot()
    rng = np.random.default_rng(3)
    observations = env.reset(seed=3)[0]
    left = None
    for _ in range(3000):
        bot_moves = heuristic.act(env.vec_env, players=[0])
        actions = {
            agent: (
                int(bot_moves[0, 0])
                if agent == "player_0" and bot_moves[0, 0] >= 0
                else int(rng.choice(np.flatnonzero(observations[agent]["action_mask"])))
            )
            for agent in env.agents
        }
        agents_before = list(env.agents)
        observations, rewards, terminations, truncations, _ = env.step(actions)
        assert set(rewards) == set(agents_before)
        gone = [a for a in agents_before if a not in env.agents]
        if gone and env.agents:
            (left,) = gone
            assert terminations[left] and not truncations[left]
            assert rewards[left] <= -1.0 + 0.05  # the loss, plus at most the army term
            assert observations[left]["observation"][8].all()
            break
    assert left is not None and len(env.agents) == 2
    observations, rewards, *_ = env.step({agent: PASS for agent in env.agents})
    assert left not in rewards and left not in observations


def test_pettingzoo_truncation_ends_every_agent():
    env = GeneralsParallelEnv(players=2, max_ticks=5)
    env.reset(seed=1)
    for _tick in range(5):
        _, _, terminations, truncations, infos = env.step({a: PASS for a in env.agents})
    assert all(truncations.values()) and not any(terminations.values())
    assert env.agents == [] and infos["player_0"]["winner"] == -1 and infos["player_0"]["tick"] == 5
