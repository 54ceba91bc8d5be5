"""The built-in policies: legality, determinism, uniformity and strength."""

import numpy as np
import pytest
from generals_rl.actions import capturing_moves
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.vec_env import VecEnv


def assert_legal(env: VecEnv, actions: np.ndarray, alive: np.ndarray) -> None:
    """Every move is a full move the mask allows; a pass only when none is allowed
    (or the player is out)."""
    masks = env.action_masks
    full = env.height * env.width * 4
    moved = actions >= 0
    assert np.all(actions[moved] < full), "bots play full moves"
    assert np.all(actions[~moved] == -1)
    rows, cols = np.nonzero(moved)
    assert masks[rows, cols, actions[moved]].all(), "a move outside the action mask"
    has_move = masks.any(axis=2) & alive
    np.testing.assert_array_equal(moved, has_move)


def test_random_bot_plays_only_legal_moves():
    env = VecEnv(32, players=3, seed=1, max_ticks=150)
    bot = RandomBot(seed=1)
    _, info = env.reset()
    moves = 0
    for _ in range(300):
        actions = bot.act(env)
        assert_legal(env, actions, info["alive"])
        moves += int((actions >= 0).sum())
        _, _, _, _, info = env.step(actions)
    assert moves > 10_000


def test_heuristic_bot_plays_only_legal_moves():
    env = VecEnv(32, seed=2, max_ticks=200)
    bot = HeuristicBot()
    moves = 0
    for _ in range(300):
        actions = bot.act(env)
        moved = actions >= 0
        rows, cols = np.nonzero(moved)
        assert env.action_masks[rows, cols, actions[moved]].all()
        moves += int(moved.sum())
        env.step(actions)
    assert moves > 5_000


def test_random_bot_is_deterministic_for_a_seed():
    def trajectory(seed: int, num_threads: int) -> list[np.ndarray]:
        env = VecEnv(8, seed=4, max_ticks=60, num_threads=num_threads)
        bot = RandomBot(seed=seed)
        actions = []
        for _ in range(100):
            actions.append(bot.act(env).copy())
            env.step(actions[-1])
        return actions

    first = trajectory(seed=7, num_threads=1)
    for a, b in zip(first, trajectory(seed=7, num_threads=2), strict=False):
        np.testing.assert_array_equal(a, b)
    other = trajectory(seed=8, num_threads=1)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=False))


def test_random_bot_draws_differ_between_calls():
    env = VecEnv(4, seed=4)
    for _ in range(6):
        env.step(np.full((4, 2), -1, dtype=np.int32))
    bot = RandomBot(seed=3)
    draws = [bot.act(env).copy() for _ in range(10)]
    assert len({d.tobytes() for d in draws}) > 1


def test_random_bot_is_uniform_over_legal_moves():
    env = VecEnv(1, seed=9, max_ticks=0)
    # Some random play first, so that the player has many legal moves.
    walker = RandomBot(seed=9)
    while env.action_masks[0, 0].sum() < 12:
        env.step(walker.act(env))
    legal = np.flatnonzero(env.action_masks[0, 0])
    bot = RandomBot(seed=10)
    draws = 400 * len(legal)
    counts = np.zeros(env.height * env.width * 4)
    out = np.full((1, 2), -1, dtype=np.int32)
    for _ in range(draws):
        counts[bot.act(env, players=[0], out=out)[0, 0]] += 1
    assert counts.sum() == counts[legal].sum()
    expected = draws / len(legal)
    chi_square = float((((counts[legal] - expected) ** 2) / expected).sum())
    # Far above the 99.9% quantile for len(legal) - 1 degrees of freedom would mean bias.
    assert chi_square < 3 * len(legal) + 30


def test_bots_fill_only_the_requested_players():
    env = VecEnv(5, players=3, seed=2)
    for _ in range(4):
        env.step(np.full((5, 3), -1, dtype=np.int32))
    for bot in (RandomBot(seed=1), HeuristicBot()):
        out = np.full((5, 3), 12345, dtype=np.int32)
        result = bot.act(env, players=[1], out=out)
        assert result is out
        assert (out[:, [0, 2]] == 12345).all() and (out[:, 1] != 12345).all()
    with pytest.raises(ValueError, match="players"):
        RandomBot().act(env, players=[3])
    with pytest.raises(ValueError, match="out"):
        HeuristicBot().act(env, out=np.zeros((5, 2), dtype=np.int32))


@pytest.mark.parametrize(
    "out",
    [
        np.zeros((5, 3), dtype=np.int64),
        np.zeros((5, 3), dtype=np.float32),
        np.zeros((3, 5), dtype=np.int32).T,
        np.zeros((5, 3), dtype=np.int32)[::-1],
        np.zeros((5, 3), dtype=np.int32).reshape(1, 5, 3),
        np.frombuffer(bytearray(61), dtype=np.int32, count=15, offset=1).reshape(5, 3),
    ],
    ids=["int64", "float32", "fortran-order", "reversed-view", "3-d", "misaligned"],
)
def test_bots_refuse_an_out_array_they_would_write_a_copy_of(out):
    env = VecEnv(5, players=3, seed=2)
    for bot in (RandomBot(seed=1), HeuristicBot()):
        with pytest.raises(
            ValueError,
            match=r"out: expected a writeable, aligned, C-contiguous int32 array of shape \(5, 3\)",
        ):
            bot.act(env, out=out)
    read_only = np.zeros((5, 3), dtype=np.int32)
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        RandomBot().act(env, out=read_only)


@pytest.mark.parametrize("heuristic_player", [0, 1])
def test_heuristic_beats_random_in_95_percent_of_games(heuristic_player):
    games = 128
    env = VecEnv(games, seed=100 + heuristic_player, max_ticks=1000)
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=heuristic_player)
    outcome = np.full(games, -2)  # first episode's winner; -1 for a truncated game
    while (outcome == -2).any():
        actions = random_bot.act(env)
        heuristic.act(env, players=[heuristic_player], out=actions)
        _, _, _, _, info = env.step(actions)
        first_end = info["episode_done"] & (outcome == -2)
        outcome[first_end] = info["episode_winner"][first_end]
    wins = int((outcome == heuristic_player).sum())
    print(f"heuristic as player {heuristic_player}: {wins}/{games} wins")
    assert wins >= 0.95 * games, (
        f"heuristic won {wins} of {games} (truncated: {(outcome == -1).sum()})"
    )


def test_heuristic_takes_the_enemy_general_whenever_one_move_does():
    games, size = 32, 10
    env = VecEnv(games, 2, size, size, seed=7, max_ticks=600)
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=7)
    playing = np.ones(games, dtype=bool)  # in its first episode
    offered = 0
    while playing.any():
        actions = random_bot.act(env)
        heuristic.act(env, players=[0], out=actions)
        for game in np.flatnonzero(playing):
            state = env.game_state(game)
            general = state["generals"][1]
            moves = capturing_moves(state["owner"], state["army"], general, 0, size, size)
            if moves:
                offered += 1
                played = actions[game, 0]
                assert played in moves, f"game {game}: played {played}, not {moves}"
        _, _, _, _, info = env.step(actions)
        playing &= ~info["episode_done"]
    assert offered >= games // 2, f"only {offered} states offered the capture"
