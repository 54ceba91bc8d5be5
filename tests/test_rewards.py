"""Per-player, per-tick rewards, recomputed from the board before and after each tick.

The VecEnv generates its own maps, so the rewards are checked against a reference
computed from what the env reports: the board before a tick (``game_state``) and
after it (``game_state`` again, or, when the game just ended and was replaced, the
finished game's own-territory channels and episode statistics).
"""

import dataclasses

import numpy as np
import pytest
from conftest import CITY
from generals_rl.actions import decode_actions
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.config import MapConfig
from generals_rl.vec_env import RewardConfig, VecEnv

OWN_LAND = 2
# Cheap neutral cities so that random play captures (and loses) them often.
CHEAP_CITIES = MapConfig(cities=12, city_army_min=0, city_army_max=4)
TERMS = [f.name for f in dataclasses.fields(RewardConfig)]


def only(term: str, weight: float = 1.0) -> RewardConfig:
    """A config where every term but ``term`` weighs 0."""
    return RewardConfig(**{name: (weight if name == term else 0.0) for name in TERMS})


@dataclasses.dataclass
class After:
    owner: np.ndarray
    army: np.ndarray
    land: np.ndarray
    alive: np.ndarray
    winner: int


def state_after(env: VecEnv, info: dict, i: int) -> After:
    """Game ``i`` right after the tick, also when it has just finished and been replaced."""
    if not info["episode_done"][i]:
        return After(
            env.game_state(i)["owner"].ravel(),
            info["army"][i],
            info["land"][i],
            info["alive"][i],
            -1,
        )
    final = info["final_observations"][i]
    owner = np.full(env.height * env.width, -1, dtype=np.int16)
    for p in range(env.players):
        owner[final[p, OWN_LAND].ravel() == 1] = p
    land = info["episode_land"][i]
    return After(owner, info["episode_army"][i], land, land > 0, int(info["episode_winner"][i]))


def targets(actions: np.ndarray, height: int, width: int) -> np.ndarray:
    """The tile each action moves into (-1 for a pass or a move off the board)."""
    x, y, direction, _ = decode_actions(actions, height, width)
    ny = y + np.array([-1, 1, 0, 0])[direction]
    nx = x + np.array([0, 0, -1, 1])[direction]
    on_board = (actions >= 0) & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    return np.where(on_board, ny * width + nx, -1)


def expected_rewards(config: RewardConfig, before: dict, alive_before, land_before, after: After):
    """Every term from its definition, for each player alive before the tick."""
    players = len(alive_before)
    was_city = before["kind"].ravel() == CITY
    owner_before = before["owner"].ravel()
    eliminated = alive_before & ~after.alive
    generals_captured = np.zeros(players)
    for victim in np.flatnonzero(eliminated):
        generals_captured[after.owner[before["generals"][victim]]] += 1
    total_army = after.army.sum()
    rewards = np.zeros(players)
    for p in np.flatnonzero(alive_before):
        gained = np.sum(was_city & (owner_before != p) & (after.owner == p))
        lost = np.sum(was_city & (owner_before == p) & (after.owner != p))
        rewards[p] = (
            config.loss * eliminated[p]
            + config.win * (p == after.winner)
            + config.city_captured * gained
            + config.city_lost * lost
            + config.general_captured * generals_captured[p]
            + config.land_gained * (after.land[p] - land_before[p])
            + (
                config.army_advantage * (2 * after.army[p] - total_army) / total_army
                if total_army
                else 0.0
            )
        )
    return rewards


def cities_changing_hands_ambiguously(before: dict, after: After, moved_into: np.ndarray) -> bool:
    """A city that changed hands this tick while someone other than its new owner moved
    into it: it may have changed hands twice, which the board alone cannot tell."""
    was_city = before["kind"].ravel() == CITY
    changed = np.flatnonzero(was_city & (before["owner"].ravel() != after.owner))
    return any(
        moved_into[p] == t and p != after.owner[t] for t in changed for p in range(len(moved_into))
    )


def play_and_check(
    config: RewardConfig,
    players: int,
    seed: int,
    num_envs: int = 12,
    ticks: int = 300,
    max_ticks: int = 250,
) -> dict:
    """Plays a heuristic player 0 against random players, checks every reward against
    the reference and returns how often each event happened."""
    env = VecEnv(
        num_envs,
        players=players,
        seed=seed,
        max_ticks=max_ticks,
        map_config=CHEAP_CITIES,
        reward_config=config,
    )
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=seed)
    _, info = env.reset()
    counts = dict.fromkeys(
        [
            "ticks",
            "wins",
            "losses",
            "mid_game_losses",
            "city_gains",
            "city_losses",
            "cities_through_elimination",
            "truncations",
            "skipped",
            "nonzero",
        ],
        0,
    )
    for _ in range(ticks):
        actions = random_bot.act(env)
        heuristic.act(env, players=[0], out=actions)
        before = [env.game_state(i) for i in range(num_envs)]
        alive_before, land_before = info["alive"].copy(), info["land"].copy()
        _, rewards, _, truncated, info = env.step(actions)
        for i in range(num_envs):
            after = state_after(env, info, i)
            moved_into = targets(actions[i], env.height, env.width)
            if cities_changing_hands_ambiguously(before[i], after, moved_into):
                counts["skipped"] += 1
                continue
            expected = expected_rewards(config, before[i], alive_before[i], land_before[i], after)
            np.testing.assert_allclose(
                rewards[i],
                expected,
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"env {i} tick {before[i]['tick']}",
            )
            was_city = before[i]["kind"].ravel() == CITY
            owner_before = before[i]["owner"].ravel()
            eliminated = alive_before[i] & ~after.alive
            counts["ticks"] += 1
            counts["nonzero"] += int(np.count_nonzero(rewards[i]))
            counts["wins"] += int(after.winner >= 0)
            counts["losses"] += int(eliminated.sum())
            counts["mid_game_losses"] += int(eliminated.sum()) if not info["episode_done"][i] else 0
            counts["city_gains"] += int(
                np.sum(was_city & (after.owner >= 0) & (owner_before != after.owner))
            )
            counts["city_losses"] += int(
                np.sum(was_city & (owner_before >= 0) & (owner_before != after.owner))
            )
            for victim in np.flatnonzero(eliminated):
                counts["cities_through_elimination"] += int(
                    np.sum(was_city & (owner_before == victim))
                )
            counts["truncations"] += int(truncated[i])
    assert counts["skipped"] <= counts["ticks"] // 100
    return counts


def test_default_weights():
    config = RewardConfig()
    assert (config.win, config.loss, config.city_captured, config.city_lost) == (
        1.0,
        -1.0,
        0.1,
        -0.1,
    )
    assert config.army_advantage == 0.05
    assert config.land_gained == 0.0 and config.general_captured == 0.0


@pytest.mark.parametrize("players", [2, 3])
def test_default_rewards_match_reference(players):
    counts = play_and_check(RewardConfig(), players, seed=players)
    assert counts["wins"] > 0 and counts["city_gains"] > 0 and counts["truncations"] > 0


def test_every_term_weighted_at_once():
    config = RewardConfig(
        win=1.5,
        loss=-2.0,
        city_captured=0.3,
        city_lost=-0.7,
        army_advantage=0.05,
        land_gained=0.01,
        general_captured=0.5,
    )
    counts = play_and_check(config, players=3, seed=11)
    for event in (
        "wins",
        "mid_game_losses",
        "city_gains",
        "city_losses",
        "cities_through_elimination",
    ):
        assert counts[event] > 0, f"no {event} to check"


@pytest.mark.parametrize("term", TERMS)
def test_each_term_alone(term):
    counts = play_and_check(only(term), players=3, seed=5, num_envs=8, ticks=350, max_ticks=300)
    assert counts["nonzero"] > 0, f"{term} never paid out"


def test_win_and_loss_are_paid_on_the_elimination_tick_only():
    env = VecEnv(
        16,
        seed=3,
        max_ticks=0,
        reward_config=RewardConfig(
            win=1.0, loss=-1.0, city_captured=0.0, city_lost=0.0, army_advantage=0.0
        ),
    )
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=3)
    finished = 0
    for _ in range(700):
        actions = random_bot.act(env)
        heuristic.act(env, players=[0], out=actions)
        _, rewards, terminated, _, info = env.step(actions)
        done = info["episode_done"]
        np.testing.assert_array_equal(rewards[~done], 0.0)
        for i in np.flatnonzero(done):
            winner = info["episode_winner"][i]
            assert terminated[i].all()
            assert rewards[i, winner] == 1.0 and rewards[i, 1 - winner] == -1.0
        finished += int(done.sum())
    assert finished >= 16


def test_dead_players_get_nothing_and_stay_terminated():
    env = VecEnv(16, players=3, seed=4, max_ticks=0, map_config=CHEAP_CITIES)
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=4)
    _, info = env.reset()
    dead_ticks = 0
    for _ in range(600):
        actions = random_bot.act(env)
        heuristic.act(env, players=[0], out=actions)
        alive_before = info["alive"].copy()
        _, rewards, terminated, _, info = env.step(actions)
        ongoing = ~info["episode_done"]
        dead = ~alive_before & ongoing[:, None]
        np.testing.assert_array_equal(rewards[dead], 0.0)
        assert terminated[dead].all()
        np.testing.assert_array_equal(terminated[ongoing], ~info["alive"][ongoing])
        dead_ticks += int(dead.sum())
    assert dead_ticks > 0


def test_army_advantage_is_bounded_and_follows_army_totals():
    env = VecEnv(16, seed=8, max_ticks=0, reward_config=only("army_advantage", 0.05))
    bot = RandomBot(seed=8)
    for _ in range(300):
        _, rewards, _, _, info = env.step(bot.act(env))
        assert np.all(np.abs(rewards) <= 0.05 + 1e-7)
        ongoing = ~info["episode_done"]
        army = info["army"][ongoing].astype(np.float64)
        mine, theirs = army[:, 0], army[:, 1]
        np.testing.assert_allclose(
            rewards[ongoing, 0], 0.05 * (mine - theirs) / (mine + theirs), rtol=1e-5
        )
        np.testing.assert_allclose(rewards[ongoing].sum(axis=1), 0.0, atol=1e-6)  # zero-sum in 1v1
