"""The batched environment: views of the game state, masks, auto-reset, determinism,
input validation and padding."""

import numpy as np
import pytest
from generals_rl import _core
from generals_rl.actions import decode_actions, encode_actions
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.config import MapConfig
from generals_rl.vec_env import RewardConfig, VecEnv, encode_observation

MOUNTAIN = 1


def mixed_actions(env: VecEnv, bot: RandomBot, rng: np.random.Generator) -> np.ndarray:
    """Mostly random legal moves, with some half moves, passes and illegal indices."""
    actions = bot.act(env).copy()
    roll = rng.random(actions.shape)
    full = env.height * env.width * 4
    actions[(roll < 0.2) & (actions >= 0)] += full  # the half move of the same move
    actions[roll > 0.95] = -1
    illegal = roll > 0.9
    actions[illegal & (roll <= 0.95)] = rng.integers(
        0, 2 * full, size=int((illegal & (roll <= 0.95)).sum())
    )
    return actions


def core_game(state: dict) -> _core.Game:
    """An engine game on a copy of a VecEnv game's board."""
    return _core.Game(state["kind"], state["owner"], state["army"], state["generals"])


# ---------------------------------------------------------------------------
# observations and masks are views of the game state


@pytest.mark.parametrize("players, army_scaling", [(2, "linear"), (3, "log")])
def test_observations_and_masks_equal_encoding_of_game_state(players, army_scaling):
    env = VecEnv(6, players=players, seed=4, max_ticks=120, army_scaling=army_scaling)
    bot, rng = RandomBot(seed=1), np.random.default_rng(0)
    obs, info = env.reset()
    for tick in range(150):
        if tick % 10 == 0:
            for i in range(env.num_envs):
                state = env.game_state(i)
                assert state["tick"] == info["tick"][i]
                for p in range(players):
                    expected_obs, expected_mask = encode_observation(
                        state["kind"], state["owner"], state["army"], p, army_scaling
                    )
                    np.testing.assert_array_equal(obs[i, p], expected_obs)
                    np.testing.assert_array_equal(info["action_masks"][i, p], expected_mask)
        obs, _, _, _, info = env.step(mixed_actions(env, bot, rng))


def test_info_army_and_land_match_the_board():
    env = VecEnv(4, players=3, seed=8, max_ticks=0)
    bot = RandomBot(seed=2)
    for _ in range(120):
        _, _, _, _, info = env.step(bot.act(env))
    for i in range(env.num_envs):
        state = env.game_state(i)
        owner, army = state["owner"].ravel(), state["army"].ravel().astype(np.int64)
        owned = owner >= 0
        np.testing.assert_array_equal(
            info["army"][i], np.bincount(owner[owned], weights=army[owned], minlength=3)
        )
        np.testing.assert_array_equal(info["land"][i], np.bincount(owner[owned], minlength=3))
        np.testing.assert_array_equal(info["alive"][i], info["land"][i] > 0)


def test_action_masks_agree_with_engine_move_validation():
    env = VecEnv(4, players=2, seed=21, max_ticks=0)
    bot, rng = RandomBot(seed=5), np.random.default_rng(9)
    tiles = env.height * env.width
    checked_legal = 0
    for tick in range(1, 161):
        env.step(mixed_actions(env, bot, rng))
        if tick % 40:
            continue
        for i in range(env.num_envs):
            state = env.game_state(i)
            game = core_game(state)
            for p in range(2):
                mask = env.action_masks[i, p].reshape(tiles, 4)
                legal = np.array(
                    [[game.move_is_legal(p, t, d) for d in range(4)] for t in range(tiles)]
                )
                np.testing.assert_array_equal(mask, legal)
                checked_legal += int(legal.sum())
                # Applying a sample of moves on a fresh copy: it succeeds exactly when masked in.
                index = np.concatenate(
                    [
                        rng.choice(
                            np.flatnonzero(mask.ravel()),
                            size=min(15, int(mask.sum())),
                            replace=False,
                        ),
                        rng.choice(np.flatnonzero(~mask.ravel()), size=15, replace=False),
                    ]
                )
                x, y, direction, _ = decode_actions(index, env.height, env.width)
                for k, (xx, yy, dd) in enumerate(zip(x, y, direction, strict=False)):
                    ny, nx = yy + (-1, 1, 0, 0)[dd], xx + (0, 0, -1, 1)[dd]
                    on_board = 0 <= ny < env.height and 0 <= nx < env.width
                    end = ny * env.width + nx if on_board else -1
                    for half in (False, True):
                        applied = core_game(state).apply_move(
                            p, int(yy * env.width + xx), int(end), half
                        )
                        assert applied == bool(mask.ravel()[index[k]])
    assert checked_legal > 100


def test_action_index_round_trip():
    height, width = 7, 11
    index = np.arange(-1, height * width * 8, dtype=np.int64)
    x, y, direction, half = decode_actions(index, height, width)
    moves = index >= 0
    np.testing.assert_array_equal(
        encode_actions(x[moves], y[moves], direction[moves], half[moves], height, width),
        index[moves],
    )
    assert (x[0], y[0], direction[0], half[0]) == (-1, -1, -1, False)
    # The definition: ((y * W) + x) * 4 + d, plus H*W*4 for the half move.
    assert int(encode_actions(3, 2, 1, False, height, width)) == ((2 * width) + 3) * 4 + 1
    assert (
        int(encode_actions(3, 2, 1, True, height, width))
        == ((2 * width) + 3) * 4 + 1 + height * width * 4
    )
    grid = np.meshgrid(
        np.arange(width), np.arange(height), np.arange(4), [False, True], indexing="ij"
    )
    flat = encode_actions(*[g.ravel() for g in grid], height, width)
    assert sorted(flat.tolist()) == list(range(height * width * 8))


def test_actions_out_of_range_are_rejected_by_decode():
    with pytest.raises(ValueError, match="index"):
        decode_actions([5 * 5 * 8], 5, 5)
    with pytest.raises(ValueError, match="direction"):
        encode_actions(0, 0, 4, False, 5, 5)


# ---------------------------------------------------------------------------
# illegal moves


def test_illegal_moves_are_counted_no_ops():
    env = VecEnv(3, seed=2, max_ticks=0)
    env.reset()
    before = [env.game_state(i) for i in range(3)]
    # Every player moves a tile it does not own (a mountain of the padding or a neutral tile).
    actions = np.zeros((3, 2), dtype=np.int32)
    for i, state in enumerate(before):
        for p in range(2):
            t = int(np.flatnonzero(state["owner"].ravel() != p)[0])
            actions[i, p] = t * 4 + 1
    _, _, _, _, info = env.step(actions)
    assert info["illegal"].all()
    for i, state in enumerate(before):
        after = env.game_state(i)
        np.testing.assert_array_equal(after["owner"], state["owner"])
    _, _, _, _, info = env.step(np.full((3, 2), -1, dtype=np.int32))
    assert not info["illegal"].any()  # a pass is not illegal


# ---------------------------------------------------------------------------
# auto-reset


def test_auto_reset_after_truncation():
    max_ticks = 30
    env = VecEnv(5, seed=13, max_ticks=max_ticks)
    # The same games without a tick limit show the finished state itself.
    unlimited = VecEnv(5, seed=13, max_ticks=0)
    bot, rng = RandomBot(seed=3), np.random.default_rng(1)
    first_maps = [env.game_state(i)["kind"].copy() for i in range(5)]
    returns = np.zeros((5, 2))
    illegal = np.zeros((5, 2), dtype=np.int64)
    for tick in range(1, max_ticks + 1):
        actions = mixed_actions(env, bot, rng)
        obs, rewards, terminated, truncated, info = env.step(actions)
        unlimited.step(actions)
        returns += rewards
        illegal += info["illegal"]
        if tick < max_ticks:
            assert not info["episode_done"].any() and not truncated.any()
    assert info["episode_done"].all() and truncated.all()
    assert not terminated.any()  # nobody died: truncation, not termination
    np.testing.assert_array_equal(info["final_observations"], unlimited.observations)
    np.testing.assert_array_equal(info["episode_length"], max_ticks)
    np.testing.assert_array_equal(info["episode_winner"], -1)
    np.testing.assert_allclose(info["episode_return"], returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(info["episode_illegal_moves"], illegal)
    # The new games start at tick 0 on fresh maps, the ones of episode 1 of each env.
    np.testing.assert_array_equal(info["tick"], 0)
    options = MapConfig().to_core(2, 20, 20)
    for i in range(5):
        state = env.game_state(i)
        assert state["tick"] == 0
        assert not np.array_equal(state["kind"], first_maps[i])
        np.testing.assert_array_equal(
            state["kind"], _core.generate_map(options, env.env_seed(i, 1))["kind"]
        )
        expected, _ = encode_observation(state["kind"], state["owner"], state["army"], 0)
        np.testing.assert_array_equal(obs[i, 0], expected)
    # The step after a reset no longer reports a finished episode.
    _, _, _, truncated, info = env.step(np.full((5, 2), -1, dtype=np.int32))
    assert not info["episode_done"].any() and not truncated.any()


def test_a_truncating_step_ends_every_unfinished_game_and_marks_its_experiences():
    from generals_rl import ExperienceBuffer

    buffer = ExperienceBuffer(capacity=10_000, policy="block")
    cursor = buffer.cursor()
    env = VecEnv(4, seed=5, max_ticks=0, buffer=buffer)
    env.reset()
    pass_all = np.full((4, 2), -1, dtype=np.int32)
    for _ in range(10):
        env.step(pass_all)
    _, _, terminated, truncated, info = env.step(pass_all, truncate=True)
    assert info["episode_done"].all() and truncated.all() and not terminated.any()
    np.testing.assert_array_equal(info["episode_length"], 11)
    np.testing.assert_array_equal(info["episode_winner"], -1)
    np.testing.assert_array_equal(info["tick"], 0)  # fresh games
    records = cursor.read_records(1_000)
    last = records.tick == 10
    assert last.sum() == 8 and records.truncated[last].all() and not records.truncated[~last].any()


def test_episode_army_and_land_are_those_of_the_finished_game():
    env = VecEnv(3, seed=31, max_ticks=40)
    unlimited = VecEnv(3, seed=31, max_ticks=0)
    bot = RandomBot(seed=4)
    for _ in range(40):
        actions = bot.act(env).copy()
        _, _, _, _, info = env.step(actions)
        _, _, _, _, unlimited_info = unlimited.step(actions)
    assert info["episode_done"].all()
    np.testing.assert_array_equal(info["episode_army"], unlimited_info["army"])
    np.testing.assert_array_equal(info["episode_land"], unlimited_info["land"])


def test_auto_reset_after_elimination():
    env = VecEnv(8, seed=6, max_ticks=0)
    heuristic, random_bot = HeuristicBot(), RandomBot(seed=6)
    finished = 0
    ticks_before = np.zeros(env.num_envs, dtype=np.int32)
    for _ in range(1500):
        actions = random_bot.act(env)
        heuristic.act(env, players=[0], out=actions)
        _, _, terminated, truncated, info = env.step(actions)
        done = info["episode_done"]
        for i in np.flatnonzero(done):
            finished += 1
            winner = info["episode_winner"][i]
            loser = 1 - winner
            assert winner in (0, 1) and not truncated[i] and terminated[i].all()
            assert info["episode_length"][i] == ticks_before[i] + 1
            final = info["final_observations"][i]
            # The loser owns nothing and sees only fog; the winner took its land.
            assert final[loser, 2].sum() == 0 and final[loser, 8].all()
            assert final[winner, 2].sum() == info["episode_land"][i, winner]
            assert info["episode_land"][i, loser] == 0 and info["episode_army"][i, loser] == 0
            assert info["tick"][i] == 0 and info["alive"][i].all()
        if finished >= 8:
            break
        ticks_before = info["tick"].copy()
    assert finished >= 8


# ---------------------------------------------------------------------------
# determinism


def test_same_seed_and_actions_give_same_trajectories_on_1_and_2_threads():
    envs = [VecEnv(12, players=2, seed=77, max_ticks=45, num_threads=t) for t in (1, 2)]
    assert [e.num_threads for e in envs] == [1, 2]
    bot, rng = RandomBot(seed=8), np.random.default_rng(2)
    resets = 0
    for _ in range(200):
        actions = mixed_actions(envs[0], bot, rng)
        one = envs[0].step(actions)
        two = envs[1].step(actions)
        for a, b in zip(one[:4], two[:4], strict=False):
            np.testing.assert_array_equal(a, b)
        for key in (
            "action_masks",
            "final_observations",
            "episode_done",
            "episode_return",
            "army",
            "tick",
        ):
            np.testing.assert_array_equal(one[4][key], two[4][key])
        resets += int(one[4]["episode_done"].sum())
    assert resets >= 12 * 4


def test_same_seed_same_maps_and_different_seed_different_maps():
    a, b, c = VecEnv(3, seed=5), VecEnv(3, seed=5), VecEnv(3, seed=6)
    for i in range(3):
        np.testing.assert_array_equal(a.game_state(i)["kind"], b.game_state(i)["kind"])
    assert any(
        not np.array_equal(a.game_state(i)["kind"], c.game_state(i)["kind"]) for i in range(3)
    )
    # Games of one env differ from each other.
    assert not np.array_equal(a.game_state(0)["kind"], a.game_state(1)["kind"])


def test_reset_starts_fresh_games():
    env = VecEnv(2, seed=3)
    first = env.game_state(0)["kind"].copy()
    bot = RandomBot(seed=1)
    for _ in range(10):
        env.step(bot.act(env))
    obs, info = env.reset()
    np.testing.assert_array_equal(info["tick"], 0)
    assert not np.array_equal(env.game_state(0)["kind"], first)
    state = env.game_state(0)
    np.testing.assert_array_equal(
        obs[0, 1], encode_observation(state["kind"], state["owner"], state["army"], 1)[0]
    )


# ---------------------------------------------------------------------------
# outputs


def test_output_shapes_and_dtypes():
    env = VecEnv(
        3, players=4, height=24, width=22, seed=1, map_config=MapConfig(min_side=20, max_side=22)
    )
    obs, info = env.reset()
    assert obs.shape == (3, 4, 9, 24, 22) and obs.dtype == np.float32
    assert (
        info["action_masks"].shape == (3, 4, 24 * 22 * 4) and info["action_masks"].dtype == np.bool_
    )
    _, rewards, terminated, truncated, info = env.step(np.full((3, 4), -1, dtype=np.int32))
    assert rewards.shape == (3, 4) and rewards.dtype == np.float32
    assert terminated.shape == (3, 4) and truncated.shape == (3,)
    assert info["army"].shape == (3, 4) and info["winner"].shape == (3,)
    assert not obs.flags.writeable  # views of buffers the env owns


def test_observations_and_masks_can_be_turned_off():
    env = VecEnv(2, seed=1, observations=False, action_masks=False)
    obs, info = env.reset()
    assert obs is None and "action_masks" not in info
    _, rewards, _, _, info = env.step(RandomBot(seed=1).act(env))
    assert rewards.shape == (2, 2) and info["tick"].tolist() == [1, 1]


def test_boards_smaller_than_the_env_are_padded_with_mountains():
    env = VecEnv(4, height=20, width=24, seed=9, map_config=MapConfig(min_side=12, max_side=14))
    unpadded = MapConfig(min_side=12, max_side=14).to_core(2)
    for i in range(4):
        kind = env.game_state(i)["kind"]
        assert kind.shape == (20, 24)
        generated = _core.generate_map(unpadded, env.env_seed(i, 0))["kind"]
        h, w = generated.shape
        assert 12 <= h <= 14 and 12 <= w <= 14
        np.testing.assert_array_equal(kind[:h, :w], generated)
        assert (kind[h:, :] == MOUNTAIN).all() and (kind[:, w:] == MOUNTAIN).all()
        # The padding shows as mountains where seen, never as land.
        obs = env.observations[i]
        assert obs[:, 4, h:, :].sum() == 0 and obs[:, 4, :, w:].sum() == 0


# ---------------------------------------------------------------------------
# input validation


def test_wrong_action_shape_raises_naming_actions():
    env = VecEnv(3, seed=1)
    with pytest.raises(ValueError, match="actions"):
        env.step(np.zeros((3,), dtype=np.int32))
    with pytest.raises(ValueError, match="actions"):
        env.step(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="actions"):
        core_config = _core.VecEnvConfig()
        core_config.num_envs = 3
        _core.VecEnv(core_config).step(np.zeros(5, dtype=np.int32))


def test_actions_outside_int32_are_illegal_not_wrapped():
    env = VecEnv(1, seed=1, max_ticks=0)
    for _ in range(2):  # the general grows to 2 armies
        env.step(np.full((1, 2), -1, dtype=np.int32))
    mask = env.action_masks[0, 0]
    legal = int(np.flatnonzero(mask)[0])
    # legal + 2**32 would wrap around to the legal index if it were cast blindly.
    _, _, _, _, info = env.step(np.array([[legal + 2**32, -1]], dtype=np.int64))
    assert info["illegal"][0, 0]
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([[0.5, -1.0]]))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_threads": 0}, "num_threads"),
        # A pool failing to start its threads terminated the process.
        ({"num_threads": 10**6}, r"num_threads: must be in 1..1024, got 1000000"),
        ({"army_scaling": "Log"}, "army_scaling: expected 'linear' or 'log', got 'Log'"),
        ({"height": 1}, "height"),
        ({"width": 1000}, "width"),
        ({"max_ticks": -5}, "max_ticks"),
        ({"players": 1}, "players"),
        ({"players": 17}, "players"),
        ({"army_scaling": "cubic"}, "army_scaling"),
        ({"army_scale": 0.0}, "army_scale"),
        ({"map_config": MapConfig(mountain_fraction=0.9)}, "mountain_fraction"),
        ({"map_config": MapConfig(min_side=10, max_side=8)}, "max_side"),
        ({"map_config": MapConfig(cities=-3)}, "cities"),
    ],
)
def test_bad_config_raises_naming_the_field(kwargs, field):
    args = {"num_envs": 2, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=field):
        VecEnv(**args)


def test_bad_reward_term_raises_naming_it():
    with pytest.raises(ValueError, match="bonus"):
        _core.RewardConfig(bonus=1.0)
    with pytest.raises(TypeError):
        RewardConfig(bonus=1.0)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"army_scaling": "cubic"}, "army_scaling"), ({"army_scale": -1.0}, "army_scale")],
)
def test_encode_observation_rejects_bad_scaling(kwargs, field):
    kind = np.zeros((3, 3), dtype=np.uint8)
    owner = np.full((3, 3), -1, dtype=np.int16)
    with pytest.raises(ValueError, match=field):
        encode_observation(kind, owner, np.zeros((3, 3), dtype=np.int32), 0, **kwargs)


def test_encode_observation_rejects_mismatched_arrays():
    kind = np.zeros((3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="owner"):
        encode_observation(kind, np.zeros(8, dtype=np.int16), np.zeros(9, dtype=np.int32), 0)
    with pytest.raises(ValueError, match="kind"):
        encode_observation(np.zeros(9, dtype=np.uint8), np.zeros(9, dtype=np.int16), np.zeros(9), 0)


def test_float_observations_too_large_to_cache_are_the_compact_ones_expanded():
    """600 games of 20x20 hold 17 MB of float observations: written with streaming
    stores, they equal the compact env's views expanded, finals included."""
    common = dict(num_envs=600, height=20, width=20, seed=5, max_ticks=4, num_threads=2)
    float_env = VecEnv(**common, map_config=MapConfig(min_side=20, max_side=20))
    compact_env = VecEnv(
        **common, map_config=MapConfig(min_side=20, max_side=20), observation_format="compact"
    )
    assert float_env.reset()[0].nbytes >= 16 << 20
    compact_env.reset()
    bot = RandomBot(seed=2)
    finals = 0
    for _ in range(6):
        actions = bot.act(float_env)
        obs_f, *_, info_f = float_env.step(actions)
        obs_c, *_, info_c = compact_env.step(actions)
        assert compact_env.expand(obs_c).tobytes() == obs_f.tobytes()
        done = info_f["episode_done"]
        finals += int(done.sum())
        got = compact_env.expand(info_c["final_observations"])[done]
        assert got.tobytes() == info_f["final_observations"][done].tobytes()
    assert finals > 0
