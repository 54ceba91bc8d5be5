"""The 9-channel observation and the action mask of one board, from hand-built boards.

Channels: 0 own armies, 1 enemy armies (visible), 2 own territory, 3 enemy territory
(visible), 4 neutral territory (visible), 5 cities and generals (visible), 6 mountains
(visible), 7 visible, 8 fog. A player sees the 3x3 square around every tile it owns.
"""

import math

import numpy as np
import pytest
from conftest import CITY, GENERAL, MOUNTAIN, NEUTRAL, PLAIN, parse_board
from generals_rl import _core
from generals_rl.vec_env import OBSERVATION_CHANNELS, encode_observation

OWN_ARMY, ENEMY_ARMY, OWN_LAND, ENEMY_LAND, NEUTRAL_LAND, CITIES, MOUNTAINS, VISIBLE, FOG = range(9)

# Player 0 holds the top-left corner; player 1 the far right column. Player 0 sees
# rows 0-2, columns 0-3 (around its tiles at (0,0), (0,1), (1,2)).
BOARD = """
G0:5  .0:3   C:40  M     .    .    .1:7
.0:1  M      .0:2  .1:9  .    C:45 G1:20
.     .      .     .     M    .    .1:2
.     C:42   .     .     .    .    .
"""


def observe(board: str, player: int, **scaling):
    kind, owner, army, _ = parse_board(board)
    obs, mask = encode_observation(kind, owner, army, player, **scaling)
    return obs, mask


def reference_visibility(owner: np.ndarray, player: int) -> np.ndarray:
    """The 3x3 neighbourhood of every tile ``player`` owns, by shifting the owned mask."""
    owned = np.pad(owner == player, 1)
    height, width = owner.shape
    visible = np.zeros((height, width), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            visible |= owned[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    return visible


def reference_observation(kind, owner, army, player, army_scaling="linear", army_scale=1000.0):
    """The observation written out from its definition, tile by tile, in float64."""
    visible = reference_visibility(owner, player)
    if army_scaling == "log":
        scaled = np.minimum(np.log1p(army.astype(np.float64)) / math.log1p(army_scale), 1.0)
    else:
        scaled = np.minimum(army / army_scale, 1.0)
    own = owner == player
    enemy = visible & (owner >= 0) & ~own
    channels = [
        np.where(own, scaled, 0.0),
        np.where(enemy, scaled, 0.0),
        own,
        enemy,
        visible & (owner == NEUTRAL) & (kind != MOUNTAIN),
        visible & ((kind == CITY) | (kind == GENERAL)),
        visible & (kind == MOUNTAIN),
        visible,
        ~visible,
    ]
    return np.stack([np.asarray(c, dtype=np.float64) for c in channels])


def random_board(rng: np.random.Generator, height: int, width: int, players: int):
    """Arbitrary (not necessarily playable) kind/owner/army arrays with every tile kind."""
    kind = rng.choice(
        [PLAIN, MOUNTAIN, CITY, GENERAL], p=[0.6, 0.2, 0.15, 0.05], size=(height, width)
    )
    kind = kind.astype(np.uint8)
    owner = rng.integers(NEUTRAL, players, size=(height, width)).astype(np.int16)
    owner[rng.random((height, width)) < 0.5] = NEUTRAL
    owner[kind == MOUNTAIN] = NEUTRAL
    army = rng.integers(0, 3000, size=(height, width)).astype(np.int32)
    army[rng.random((height, width)) < 0.3] = 0
    return kind, owner, army


def test_channel_order_is_published():
    assert len(OBSERVATION_CHANNELS) == 9
    assert OBSERVATION_CHANNELS[ENEMY_ARMY] == "enemy_army"
    assert OBSERVATION_CHANNELS[FOG] == "fog"


def test_shape_dtype_and_range():
    obs, mask = observe(BOARD, 0)
    assert obs.shape == (9, 4, 7) and obs.dtype == np.float32
    assert mask.shape == (4 * 7 * 4,) and mask.dtype == np.bool_
    assert obs.min() >= 0.0 and obs.max() <= 1.0


def test_own_army_channel_is_linear_army_over_1000():
    obs, _ = observe(BOARD, 0)
    assert obs[OWN_ARMY, 0, 0] == pytest.approx(0.005)
    assert obs[OWN_ARMY, 0, 1] == pytest.approx(0.003)
    assert obs[OWN_ARMY, 1, 0] == pytest.approx(0.001)
    assert obs[OWN_ARMY, 1, 2] == pytest.approx(0.002)
    # Neutral and enemy armies are not own armies.
    assert obs[OWN_ARMY, 0, 2] == 0 and obs[OWN_ARMY, 1, 3] == 0
    assert np.count_nonzero(obs[OWN_ARMY]) == 4


def test_enemy_army_channel_shows_only_visible_enemy_tiles():
    obs, _ = observe(BOARD, 0)
    assert obs[ENEMY_ARMY, 1, 3] == pytest.approx(0.009)  # seen: next to (1, 2)
    assert np.count_nonzero(obs[ENEMY_ARMY]) == 1  # the general (1, 6) and others are hidden
    # Player 1 sees its neighbour (1, 2) of player 0 and nothing else of player 0.
    obs1, _ = observe(BOARD, 1)
    assert obs1[ENEMY_ARMY, 1, 2] == pytest.approx(0.002)
    assert np.count_nonzero(obs1[ENEMY_ARMY]) == 1


def test_territory_channels():
    obs, _ = observe(BOARD, 0)
    expected_own = np.zeros((4, 7))
    expected_own[0, 0] = expected_own[0, 1] = expected_own[1, 0] = expected_own[1, 2] = 1
    np.testing.assert_array_equal(obs[OWN_LAND], expected_own)
    expected_enemy = np.zeros((4, 7))
    expected_enemy[1, 3] = 1
    np.testing.assert_array_equal(obs[ENEMY_LAND], expected_enemy)
    # Neutral land: visible, unowned and not a mountain (the neutral city counts).
    neutral = obs[NEUTRAL_LAND]
    assert neutral[0, 2] == 1  # neutral city at (0, 2)
    assert neutral[0, 3] == 0 and neutral[1, 1] == 0  # mountains
    assert neutral[2, 0] == 1 and neutral[2, 3] == 1  # plain, seen from (1, 2)
    assert neutral[2, 4] == 0 and neutral[0, 4] == 0  # out of sight
    # 12 visible tiles: 4 own, 1 enemy, 2 mountains, the other 5 neutral land.
    assert neutral.sum() == 5


def test_cities_mountains_visible_and_fog_channels():
    obs, _ = observe(BOARD, 0)
    assert obs[CITIES, 0, 0] == 1 and obs[CITIES, 0, 2] == 1  # own general, neutral city
    assert obs[CITIES, 1, 5] == 0 and obs[CITIES, 3, 1] == 0  # cities in the fog
    assert obs[CITIES].sum() == 2
    assert obs[MOUNTAINS, 0, 3] == 1 and obs[MOUNTAINS, 1, 1] == 1
    assert obs[MOUNTAINS, 2, 4] == 0  # hidden mountain
    visible = np.zeros((4, 7))
    visible[0:3, 0:4] = 1
    np.testing.assert_array_equal(obs[VISIBLE], visible)
    np.testing.assert_array_equal(obs[FOG], 1 - visible)


def test_linear_scaling_saturates_at_army_scale():
    board = "G0:500 .0:1000 .0:5000 .0:0"
    obs, _ = observe(board, 0)
    np.testing.assert_allclose(obs[OWN_ARMY, 0], [0.5, 1.0, 1.0, 0.0])
    obs, _ = observe(board, 0, army_scale=10.0)
    np.testing.assert_allclose(obs[OWN_ARMY, 0], [1.0, 1.0, 1.0, 0.0])
    obs, _ = observe("G0:4 .0:5 .0:20 .", 0, army_scale=10.0)
    np.testing.assert_allclose(obs[OWN_ARMY, 0], [0.4, 0.5, 1.0, 0.0])


def test_log_scaling():
    obs, _ = observe("G0:1 .0:0 .0:1000 .0:5000 .1:99", 0, army_scaling="log")
    expected = [math.log(2) / math.log(1001), 0.0, 1.0, 1.0]
    np.testing.assert_allclose(obs[OWN_ARMY, 0, :4], expected, rtol=1e-6)
    assert obs[ENEMY_ARMY, 0, 4] == pytest.approx(math.log(100) / math.log(1001), rel=1e-6)
    obs, _ = observe("G0:1 .0:0 .1:99 .", 0, army_scaling="log", army_scale=99.0)
    assert obs[ENEMY_ARMY, 0, 2] == pytest.approx(1.0)
    assert obs[OWN_ARMY, 0, 0] == pytest.approx(math.log(2) / math.log(100), rel=1e-6)


@pytest.mark.parametrize("army_scaling", ["linear", "log"])
def test_matches_reference_on_random_boards(army_scaling):
    rng = np.random.default_rng(3)
    for trial in range(60):
        height, width = rng.integers(1, 25, size=2)
        players = int(rng.integers(2, 5))
        kind, owner, army = random_board(rng, height, width, players)
        scale = float(rng.choice([1000.0, 64.0, 7.5]))
        for player in range(players):
            obs, _ = encode_observation(kind, owner, army, player, army_scaling, scale)
            expected = reference_observation(kind, owner, army, player, army_scaling, scale)
            np.testing.assert_allclose(
                obs, expected, rtol=1e-6, atol=1e-7, err_msg=f"trial {trial}"
            )


def test_hidden_tile_sets_only_the_fog_channel():
    rng = np.random.default_rng(11)
    for _ in range(40):
        kind, owner, army = random_board(rng, 16, 16, 3)
        player = int(rng.integers(0, 3))
        obs, _ = encode_observation(kind, owner, army, player)
        hidden = obs[FOG] == 1
        if not hidden.any():
            continue
        assert np.all(obs[:FOG][:, hidden] == 0)
        # Change everything about the hidden tiles (without giving them to the
        # player, which would move its vision): no channel but fog may change.
        new_kind = kind.copy()
        new_owner = owner.copy()
        new_army = army.copy()
        count = int(hidden.sum())
        new_kind[hidden] = rng.choice([PLAIN, MOUNTAIN, CITY, GENERAL], size=count)
        others = [o for o in range(NEUTRAL, 3) if o != player]
        new_owner[hidden] = rng.choice(others, size=count)
        new_owner[new_kind == MOUNTAIN] = NEUTRAL
        new_army[hidden] = rng.integers(0, 100_000, size=count)
        changed, _ = encode_observation(new_kind, new_owner, new_army, player)
        np.testing.assert_array_equal(changed, obs)


def test_fog_is_exactly_the_complement_of_vision():
    rng = np.random.default_rng(5)
    kind, owner, army = random_board(rng, 12, 9, 2)
    for player in range(2):
        obs, _ = encode_observation(kind, owner, army, player)
        np.testing.assert_array_equal(obs[VISIBLE] + obs[FOG], np.ones((12, 9)))
        np.testing.assert_array_equal(obs[VISIBLE] == 1, reference_visibility(owner, player))


def test_player_with_no_tiles_sees_only_fog():
    obs, mask = observe(BOARD, 2)
    assert np.all(obs[FOG] == 1) and np.all(obs[:FOG] == 0)
    assert not mask.any()


def test_action_mask_on_hand_built_board():
    _, mask = observe(BOARD, 0)
    mask = mask.reshape(4, 7, 4)  # (y, x, direction: up, down, left, right)
    # (0,0) general with 5: down to (1,0) and right to (0,1); up and left leave the board.
    assert mask[0, 0].tolist() == [False, True, False, True]
    # (0,1) with 3: down is a mountain; left and right are open.
    assert mask[0, 1].tolist() == [False, False, True, True]
    # (1,0) has 1 army: no move.
    assert not mask[1, 0].any()
    # (1,2) with 2: up onto the city, down, left into the mountain no, right onto the enemy.
    assert mask[1, 2].tolist() == [True, True, False, True]
    assert mask.sum() == 2 + 2 + 3


# ---------------------------------------------------------------------------
# board size and argument limits


MAX_BOARD_SIDE = _core.MAX_BOARD_SIDE


@pytest.mark.parametrize("height, width", [(3, MAX_BOARD_SIDE), (MAX_BOARD_SIDE, 2)])
def test_visibility_is_right_up_to_the_largest_board(height, width):
    rng = np.random.default_rng(height)
    kind, owner, army = random_board(rng, height, width, players=2)
    owner[:] = NEUTRAL
    owner[0, -1] = owner[-1, 0] = 0  # the far corners, where a fixed row buffer would end
    owner[rng.random(owner.shape) < 0.001] = 0
    obs, _ = encode_observation(kind, owner, army, 0)
    np.testing.assert_array_equal(obs[VISIBLE], reference_visibility(owner, 0))


@pytest.mark.parametrize("width", [MAX_BOARD_SIDE + 1, 1100, 5000])
def test_boards_beyond_the_size_limit_are_refused(width):
    kind = np.zeros((2, width), dtype=np.uint8)
    owner = np.zeros((2, width), dtype=np.int16)
    with pytest.raises(
        ValueError, match=rf"kind: size must be between 1x1 and 1024x1024, got 2x{width}"
    ):
        encode_observation(kind, owner, np.ones((2, width), dtype=np.int32), 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"army_scaling": "Log"}, "army_scaling: expected 'linear' or 'log', got 'Log'"),
        ({"army_scaling": ""}, "army_scaling: expected 'linear' or 'log'"),
        ({"army_scale": 0.0}, "army_scale: must be positive"),
        ({"player": 16}, "player: expected 0..15, got 16"),
        ({"player": -2}, "player: expected 0..15, got -2"),
    ],
)
def test_bad_observation_settings_are_refused(kwargs, message):
    kind, owner, army, _ = parse_board(BOARD)
    args = {"player": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        encode_observation(kind, owner, army, **args)


# ---------------------------------------------------------------------------
# the obstacles channel


def test_obstacles_channel_marks_fogged_mountains_and_cities():
    kind, owner, army, _ = parse_board("""
        G0 .  .  .  M  C:40
        .  M  C:40 . . G1
    """)
    plain, _ = encode_observation(kind, owner, army, 0)
    obs, _ = encode_observation(kind, owner, army, 0, obstacles=True)
    assert (
        plain.shape[0] == len(OBSERVATION_CHANNELS)
        and obs.shape[0] == len(OBSERVATION_CHANNELS) + 1
    )
    assert (obs[:-1] == plain).all()  # the design's channels are unchanged
    fog = obs[OBSERVATION_CHANNELS.index("fog")].astype(bool)
    expected = fog & np.isin(kind, (1, 2))
    assert (obs[-1].astype(bool) == expected).all()
    assert obs[-1, 0, 4] == 1 and obs[-1, 0, 5] == 1  # the mountain and the city out of sight
    assert obs[-1, 1, 1] == 0  # a mountain in sight is in the mountains channel, not here
    assert obs[-1, 1, 5] == 0  # a general in fog is no obstacle


def test_vec_env_obstacles_option():
    from generals_rl import VecEnv

    env = VecEnv(2, height=12, width=12, obstacles=True, seed=4)
    obs, _ = env.reset()
    assert obs.shape == (2, 2, 10, 12, 12) and env.channels[-1] == "obstacles"
    state = env.game_state(0)
    fog = obs[0, 0, 8].astype(bool)
    assert (obs[0, 0, 9].astype(bool) == (fog & np.isin(state["kind"], (1, 2)))).all()
    assert VecEnv(1, height=12, width=12).observations.shape[2] == 9
