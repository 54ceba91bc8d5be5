"""The generals.io rules, one at a time, on hand-built boards.

Moves are played at tick 0 unless said otherwise: the tick then advances to 1, an odd
tick, where nothing grows, so every army change comes from the move alone.
"""

import generals_rl
import numpy as np
import pytest
from conftest import (
    CITY,
    DOWN,
    GENERAL,
    LEFT,
    NEUTRAL,
    RIGHT,
    UP,
    board_totals,
    build_game,
    move,
    parse_board,
    pass_ticks,
    step,
    tile,
)

# ---------------------------------------------------------------------------
# moving


@pytest.mark.parametrize("army", [2, 3, 10, 1000])
def test_full_move_leaves_one_behind_and_adds_onto_own_tile(army):
    game = build_game(f"""
        G0    .0:{army} .0:2
        .     .         G1
    """)
    step(game, {0: move(game, 0, 1, RIGHT)})
    assert tile(game, 0, 1) == (0, 1)
    assert tile(game, 0, 2) == (0, 2 + army - 1)
    assert game.illegal_moves.tolist() == [0, 0]


@pytest.mark.parametrize("army, kept", [(2, 1), (3, 2), (4, 2), (5, 3), (9, 5), (10, 5), (101, 51)])
def test_half_move_keeps_half_rounded_up(army, kept):
    game = build_game(f"""
        G0    .0:{army} .0:2
        .     .         G1
    """)
    step(game, {0: move(game, 0, 1, RIGHT, half=True)})
    assert tile(game, 0, 1) == (0, kept)
    assert tile(game, 0, 2) == (0, 2 + army - kept)


def test_move_onto_own_general_adds():
    game = build_game("""
        G0:4 .0:7
        .    G1
    """)
    step(game, {0: move(game, 0, 1, LEFT)})
    assert tile(game, 0, 0) == (0, 10)
    assert tile(game, 0, 1) == (0, 1)


# ---------------------------------------------------------------------------
# combat


@pytest.mark.parametrize("defender", ["1", ""], ids=["enemy", "neutral"])
def test_attack_smaller_than_defender_only_reduces_it(defender):
    game = build_game(f"""
        G0 .0:5 .{defender}:6
        .  .    G1
    """)
    step(game, {0: move(game, 0, 1, RIGHT)})
    expected_owner = 1 if defender else NEUTRAL
    assert tile(game, 0, 1) == (0, 1)
    assert tile(game, 0, 2) == (expected_owner, 2)


@pytest.mark.parametrize("defender", ["1", ""], ids=["enemy", "neutral"])
def test_tie_leaves_defender_holding_zero(defender):
    game = build_game(f"""
        G0 .0:5 .{defender}:4
        .  .    G1
    """)
    land_before = game.land_per_player.tolist()
    step(game, {0: move(game, 0, 1, RIGHT)})
    expected_owner = 1 if defender else NEUTRAL
    assert tile(game, 0, 2) == (expected_owner, 0)
    assert game.land_per_player.tolist() == land_before


@pytest.mark.parametrize("defender", ["1", ""], ids=["enemy", "neutral"])
def test_takeover_holds_the_difference(defender):
    game = build_game(f"""
        G0 .0:10 .{defender}:4
        .  .     G1
    """)
    land_before = game.land_per_player.tolist()
    step(game, {0: move(game, 0, 1, RIGHT)})
    assert tile(game, 0, 1) == (0, 1)
    assert tile(game, 0, 2) == (0, 5)
    assert game.land_per_player[0] == land_before[0] + 1
    assert game.land_per_player[1] == land_before[1] - (1 if defender else 0)


def test_taken_city_stays_a_city_and_grows_for_its_new_owner():
    game = build_game("""
        G0 .0:45 C:40
        .  .     G1
    """)
    step(game, {0: move(game, 0, 1, RIGHT)})  # tick 0 -> 1: no growth
    assert tile(game, 0, 2) == (0, 4)
    assert game.kind[0, 2] == CITY
    step(game)  # tick 1 -> 2: owned cities grow
    assert tile(game, 0, 2) == (0, 5)


def test_general_capture_hands_over_all_tiles_with_halved_armies():
    game = build_game("""
        .0:10 G1:2 .1:3
        .1:5  .1:4 .1:1
        G0    .    .1:2
    """)
    done = step(game, {0: move(game, 0, 0, RIGHT)})
    # the general falls with 9 - 2 = 7 and becomes a city of the captor
    assert tile(game, 0, 1) == (0, 7)
    assert game.kind[0, 1] == CITY
    # every other tile of the victim: halved, rounding half up (3->2, 5->3, 4->2, 1->1, 2->1)
    assert tile(game, 0, 2) == (0, 2)
    assert tile(game, 1, 0) == (0, 3)
    assert tile(game, 1, 1) == (0, 2)
    assert tile(game, 1, 2) == (0, 1)
    assert tile(game, 2, 2) == (0, 1)
    assert not (np.asarray(game.owner) == 1).any()
    assert game.alive.tolist() == [True, False]
    assert list(game.death_order) == [1]
    assert game.generals[1] == -1
    assert done and game.done and game.over
    assert game.winner == 0
    assert not game.truncated


def test_captured_general_grows_as_a_city_afterwards():
    game = build_game("""
        G0 .0:10 G1:2 .  G2
    """)
    step(game, {0: move(game, 0, 1, RIGHT)})  # tick 0 -> 1
    assert tile(game, 0, 2) == (0, 7)
    assert not game.over  # two players are left
    step(game)  # tick 1 -> 2: the new city grows, the fallen general no longer does
    assert tile(game, 0, 2) == (0, 8)
    assert game.kind[0, 2] == CITY


def test_attack_on_a_general_that_does_not_take_it_is_plain_combat():
    game = build_game("""
        .0:4 G1:5
        G0   .
    """)
    step(game, {0: move(game, 0, 0, RIGHT)})
    assert tile(game, 0, 1) == (1, 2)
    assert game.kind[0, 1] == GENERAL
    assert game.alive.tolist() == [True, True]
    assert not game.over


# ---------------------------------------------------------------------------
# growth

GROWTH_BOARD = """
    G0 C0:10 C:40 .0:3
    .  .     .    G1
"""


def test_odd_ticks_grow_nothing():
    game = build_game(GROWTH_BOARD)
    army_before = np.array(game.army)
    step(game)
    assert game.tick == 1
    np.testing.assert_array_equal(game.army, army_before)


def test_even_ticks_grow_generals_and_owned_cities_only():
    game = build_game(GROWTH_BOARD)
    pass_ticks(game, 2)
    assert game.tick == 2
    assert tile(game, 0, 0) == (0, 2)  # general
    assert tile(game, 1, 3) == (1, 2)  # general
    assert tile(game, 0, 1) == (0, 11)  # owned city
    assert tile(game, 0, 2) == (NEUTRAL, 40)  # neutral city: no regrowth in live games
    assert tile(game, 0, 3) == (0, 3)  # owned plain


def test_every_50th_tick_grows_every_owned_tile():
    game = build_game(GROWTH_BOARD)
    pass_ticks(game, 49)
    assert tile(game, 0, 3) == (0, 3)
    pass_ticks(game, 1)
    assert game.tick == 50
    assert tile(game, 0, 3) == (0, 4)  # owned plain: only the 50th tick
    assert tile(game, 0, 0) == (0, 1 + 25 + 1)  # general: 25 even ticks and the 50th
    assert tile(game, 0, 1) == (0, 10 + 25 + 1)  # owned city
    assert tile(game, 0, 2) == (NEUTRAL, 40)
    assert tile(game, 1, 0) == (NEUTRAL, 0)
    pass_ticks(game, 50)
    assert tile(game, 0, 3) == (0, 5)
    assert tile(game, 0, 0) == (0, 1 + 50 + 2)


# ---------------------------------------------------------------------------
# move order: ascending player index on even ticks, descending on odd ticks


def _play_at_parity(board: str, actions, odd: bool):
    game = build_game(board)
    if odd:
        step(game)  # tick 0 -> 1 grows nothing
    step(game, {p: move(game, *a) for p, a in actions.items()})
    return game


CONTESTED_TILE = "G0 .0:5 .:3 .1:3 G1"


@pytest.mark.parametrize(
    "odd, expected",
    [
        # player 0 first: takes the tile (4 - 3 = 1), then player 1 takes it back (2 - 1 = 1)
        (False, (1, 1)),
        # player 1 first: leaves the neutral tile 1 (3 - 2), then player 0 takes it (4 - 1 = 3)
        (True, (0, 3)),
    ],
    ids=["even-tick", "odd-tick"],
)
def test_moves_into_one_tile_resolve_in_tick_parity_order(odd, expected):
    game = _play_at_parity(CONTESTED_TILE, {0: (0, 1, RIGHT), 1: (0, 3, LEFT)}, odd)
    assert tile(game, 0, 2) == expected
    assert game.illegal_moves.tolist() == [0, 0]


SOURCE_UNDER_ATTACK = "G0 .0:9 .1:4 .:0 G1"


def test_earlier_move_on_even_tick_makes_later_move_illegal():
    game = _play_at_parity(SOURCE_UNDER_ATTACK, {0: (0, 1, RIGHT), 1: (0, 2, RIGHT)}, odd=False)
    # player 0 moves first and takes player 1's source tile: player 1's move is void
    assert tile(game, 0, 2) == (0, 4)
    assert tile(game, 0, 3) == (NEUTRAL, 0)
    assert game.illegal_moves.tolist() == [0, 1]


def test_later_player_moves_first_on_odd_tick():
    game = _play_at_parity(SOURCE_UNDER_ATTACK, {0: (0, 1, RIGHT), 1: (0, 2, RIGHT)}, odd=True)
    # player 1 moves out first (3 onto the empty tile), then player 0 takes the 1 left
    assert tile(game, 0, 3) == (1, 3)
    assert tile(game, 0, 2) == (0, 7)
    assert game.illegal_moves.tolist() == [0, 0]


# ---------------------------------------------------------------------------
# illegal moves: counted no-ops that never raise

ILLEGAL_BOARD = """
    M    .0:5 .0:1
    .0:5 G0:1 .:2
    .    .1:4 G1:3
"""


@pytest.mark.parametrize(
    "player, action",
    [
        (0, (0, 2, LEFT, False)),  # a tile of army 1
        (0, (0, 2, LEFT, True)),  # a half move of army 1
        (0, (1, 1, UP, False)),  # a general of army 1
        (0, (1, 2, LEFT, False)),  # a neutral tile
        (0, (2, 1, UP, False)),  # the enemy's tile
        (1, (0, 1, DOWN, False)),  # the enemy's tile, from the other side
        (0, (0, 1, LEFT, False)),  # into a mountain
        (0, (0, 1, UP, False)),  # off the top edge
        (0, (1, 0, LEFT, False)),  # off the left edge
        (1, (2, 1, DOWN, False)),  # off the bottom edge
        (1, (2, 2, RIGHT, True)),  # off the right edge
        (0, -2),  # below the pass index
        (0, 3 * 3 * 8),  # one past the last action index
        (1, 10**6),
        (1, 2**31 - 1),
        (0, 2**40),  # not even a 32-bit integer
        (1, -(2**40)),
    ],
)
def test_illegal_move_is_a_counted_no_op(player, action):
    game = build_game(ILLEGAL_BOARD)
    owner_before, army_before = np.array(game.owner), np.array(game.army)
    if isinstance(action, tuple):
        y, x, direction, half = action
        action = move(game, y, x, direction, half)
    step(game, {player: action})
    assert game.tick == 1
    np.testing.assert_array_equal(game.owner, owner_before)
    np.testing.assert_array_equal(game.army, army_before)
    expected = [0, 0]
    expected[player] = 1
    assert game.illegal_moves.tolist() == expected


def test_illegal_moves_accumulate_per_player():
    game = build_game(ILLEGAL_BOARD)
    for _ in range(3):
        step(game, {0: -5, 1: move(game, 2, 1, DOWN)})
    step(game, {0: move(game, 1, 0, DOWN)})  # legal
    assert game.illegal_moves.tolist() == [3, 3]


@pytest.mark.parametrize("pass_action", [None, -1, generals_rl.PASS])
def test_pass_is_not_counted(pass_action):
    game = build_game(ILLEGAL_BOARD)
    game.step([pass_action, pass_action])
    assert game.illegal_moves.tolist() == [0, 0]


def test_eliminated_player_actions_are_ignored():
    game = build_game("G0 .0:10 G1:2 .1:5 G2")
    step(game, {0: move(game, 0, 1, RIGHT)})
    assert game.alive.tolist() == [True, False, True]
    # a dead player's action is not played at all, so not even counted as illegal
    step(game, {1: -5})
    step(game, {1: move(game, 0, 3, RIGHT)})
    assert tile(game, 0, 3) == (0, 3)
    assert game.illegal_moves.tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------
# elimination, game end and truncation


def test_game_ends_when_one_player_is_left():
    game = build_game("""
        G0:30 .0:2 .   .
        .     .    .   G1:2
        .     .    .   G2:3
    """)
    assert not step(game, {0: move(game, 0, 0, DOWN)})
    # 29 armies walk to player 1's general
    path = [(1, 0, RIGHT), (1, 1, RIGHT), (1, 2, RIGHT)]
    for y, x, direction in path:
        assert not game.done
        step(game, {0: move(game, y, x, direction)})
    assert game.alive.tolist() == [True, False, True]
    assert list(game.death_order) == [1]
    assert not game.over and game.winner == -1
    # and on to player 2's
    assert step(game, {0: move(game, 1, 3, DOWN)})
    assert game.alive.tolist() == [True, False, False]
    assert list(game.death_order) == [1, 2]
    assert game.over and game.done and not game.truncated
    assert game.winner == 0


def test_max_ticks_truncates_without_a_winner():
    game = build_game("G0 . . G1", max_ticks=3)
    assert [step(game) for _ in range(3)] == [False, False, True]
    assert game.tick == 3
    assert game.truncated and game.done
    assert not game.over
    assert game.winner == -1
    assert game.alive.tolist() == [True, True]


def test_win_on_the_last_tick_is_not_a_truncation():
    game = build_game("G0 .0:10 G1:2", max_ticks=1)
    assert step(game, {0: move(game, 0, 1, RIGHT)})
    assert game.over and not game.truncated
    assert game.winner == 0


def test_no_tick_limit_by_default():
    game = build_game("G0 . . G1")
    pass_ticks(game, 300)
    assert not game.done and game.max_ticks == 0


# ---------------------------------------------------------------------------
# fog of war


def _seen_by(owner: np.ndarray, player: int) -> np.ndarray:
    """Tiles within the 3x3 square of any tile the player owns, by brute force."""
    seen = np.zeros_like(owner, dtype=bool)
    for y, x in zip(*np.nonzero(owner == player), strict=False):
        seen[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = True
    return seen


def test_visibility_is_the_3x3_square_around_owned_tiles():
    game = build_game("""
        .  .  .  .  G1
        .  .  .  .  .
        .  .  G0 .0:4 .
        .  .  .  .  .
        .  .  .  .  .
    """)
    center = np.zeros((5, 5), dtype=bool)
    center[1:4, 1:5] = True
    np.testing.assert_array_equal(game.visibility(0), center)
    corner = np.zeros((5, 5), dtype=bool)
    corner[0:2, 3:5] = True
    np.testing.assert_array_equal(game.visibility(1), corner)


def test_visibility_follows_the_land():
    game = build_game("""
        .  .    .  .  .  .
        .  G0:9 .  .  .  .
        .  .    .  .  .  G1
    """)
    step(game, {0: move(game, 1, 1, RIGHT)})
    step(game, {0: move(game, 1, 2, RIGHT)})
    for player in (0, 1):
        visible = game.visibility(player)
        assert visible.dtype == bool
        np.testing.assert_array_equal(visible, _seen_by(np.asarray(game.owner), player))
    assert game.visibility(0)[:, 4].all() and not game.visibility(0)[:, 5].any()


def test_visibility_of_unknown_player_raises():
    game = build_game("G0 . G1")
    with pytest.raises(ValueError, match="player"):
        game.visibility(2)


# ---------------------------------------------------------------------------
# per-player totals


def test_per_player_totals():
    game = build_game("""
        G0:5 .0:3 C0:12 M
        .:7  .1:2 C:40  G1:4
    """)
    assert game.army_per_player.tolist() == [20, 6]
    assert game.land_per_player.tolist() == [3, 2]
    step(game, {0: move(game, 0, 1, DOWN), 1: move(game, 1, 3, UP)})  # 2 vs 2: a tie
    assert game.army_per_player.tolist() == [18, 4]
    assert game.land_per_player.tolist() == [3, 2]
    army, land = board_totals(game)
    assert game.army_per_player.tolist() == army.tolist()
    assert game.land_per_player.tolist() == land.tolist()


# ---------------------------------------------------------------------------
# input checks


@pytest.mark.parametrize("count", [0, 1, 3])
def test_step_needs_one_action_per_player(count):
    game = build_game("G0 . G1")
    with pytest.raises(ValueError, match=r"one per player \(2\), got " + str(count)):
        game.step([None] * count)
    assert game.tick == 0


def test_step_rejects_a_move_tuple_off_the_board():
    game = build_game("G0 . G1")
    with pytest.raises(ValueError, match=r"x: expected 0\.\.2"):
        game.step([(3, 0, RIGHT, False), None])
    assert game.tick == 0


@pytest.mark.parametrize("bad", [1.5, "3", 2.0], ids=["float", "string", "integral-float"])
def test_step_rejects_a_move_that_is_no_index(bad):
    # VecEnv refuses float actions; a game must not truncate them into other moves.
    game = build_game("G0:9 . G1")
    with pytest.raises(ValueError, match=r"moves\[0\]: expected an action index"):
        game.step([bad, None])
    assert game.tick == 0
    game.step([np.int64(move(game, 0, 0, RIGHT)), None])  # numpy integers are indices
    assert tile(game, 0, 1) == (0, 8)


# ---------------------------------------------------------------------------
# the army bound: armies saturate at MAX_ARMY, never wrap


MAX_ARMY = generals_rl._core.MAX_ARMY


def test_armies_saturate_at_the_bound_and_totals_agree():
    assert MAX_ARMY == 2**31 - 1
    game = build_game(f"G0:{MAX_ARMY} .0:{MAX_ARMY} .0:5 C0:{MAX_ARMY - 1} G1")
    pass_ticks(game, 50)  # generals and cities grow on even ticks, every tile on tick 50
    assert game.army[0].tolist() == [MAX_ARMY, MAX_ARMY, 6, MAX_ARMY, 27]
    armies, _ = board_totals(game)
    assert game.army_per_player.tolist() == armies.tolist()
    step(game, {0: move(game, 0, 1, RIGHT)})  # merging onto a 6: saturates too
    assert game.army[0, :3].tolist() == [MAX_ARMY, 1, MAX_ARMY]
    assert game.army_per_player.tolist() == board_totals(game)[0].tolist()


def test_half_moves_and_general_captures_of_the_largest_army():
    game = build_game(f"G0:{MAX_ARMY} .1:2 G1:3")
    step(game, {0: move(game, 0, 0, RIGHT, half=True)})  # keeps ceil(a / 2)
    assert tile(game, 0, 0) == (0, 2**30) and tile(game, 0, 1) == (0, 2**30 - 1 - 2)
    game = build_game(f"G1:9 G0:1 .0:{MAX_ARMY}")
    step(game, {1: move(game, 0, 0, RIGHT)})  # takes the general: its land passes on halved
    assert game.over and tile(game, 0, 2) == (1, 2**30)
    assert game.army_per_player.tolist() == board_totals(game)[0].tolist()


def _board_arrays():
    return parse_board("""
        G0 .  M
        .  .  G1
    """)


def _changed(name: str, update):
    """The board arrays with one of them replaced by ``update(kind, owner, army, generals)``."""
    arrays = list(_board_arrays())
    arrays[["kind", "owner", "army", "generals"].index(name)] = update(*arrays)
    return arrays


@pytest.mark.parametrize(
    "arrays, message",
    [
        (_changed("kind", lambda k, o, a, g: k.ravel()), "kind: expected a 2-D"),
        (_changed("owner", lambda k, o, a, g: o[:1]), "owner: expected 6 elements, got 3"),
        (_changed("army", lambda k, o, a, g: a[:, :2]), "army: expected 6 elements, got 4"),
        (_changed("generals", lambda k, o, a, g: np.array([0, 4])), "general owned by player 1"),
        (_changed("generals", lambda k, o, a, g: np.array([0, 99])), "off the board"),
        (_changed("generals", lambda k, o, a, g: g[:0]), "players"),
        (
            _changed("owner", lambda k, o, a, g: np.where(k == 1, 0, o).astype(np.int16)),
            "mountain tile 2 cannot be owned",
        ),
        (_changed("owner", lambda k, o, a, g: np.full_like(o, 2)), "owner 2 outside -1..1"),
        (_changed("kind", lambda k, o, a, g: np.where(k == 0, 7, k)), "unknown kind 7"),
        (_changed("army", lambda k, o, a, g: a - 1), "negative army"),
    ],
    ids=[
        "flat-kind",
        "owner-shape",
        "army-shape",
        "general-not-owned",
        "general-off-board",
        "no-players",
        "owned-mountain",
        "owner-out-of-range",
        "unknown-kind",
        "negative-army",
    ],
)
def test_bad_board_raises_a_clear_value_error(arrays, message):
    kind, owner, army, generals = arrays
    with pytest.raises(ValueError, match=message):
        generals_rl.Game.from_map(kind, owner, army, generals)


def test_hand_built_board_is_exposed_as_given():
    kind, owner, army, generals = _board_arrays()
    game = generals_rl.Game.from_map(kind, owner, army, generals, max_ticks=9)
    assert (game.height, game.width, game.num_players) == (2, 3, 2)
    np.testing.assert_array_equal(game.kind, kind)
    np.testing.assert_array_equal(game.owner, owner)
    np.testing.assert_array_equal(game.army, army)
    assert list(game.generals) == generals.tolist()
    assert game.max_ticks == 9 and game.tick == 0
