"""The flat action index: ``((y * W) + x) * 4 + d``, plus ``H * W * 4`` for a half move."""

import generals_rl
import numpy as np
import pytest
from conftest import DOWN, LEFT, OFFSETS, RIGHT, UP, build_game, step, tile
from generals_rl import PASS, decode_actions, encode_actions
from generals_rl.actions import capturing_moves

SHAPES = [(1, 1), (2, 3), (5, 7), (23, 19), (64, 64)]


@pytest.mark.parametrize("height, width", SHAPES)
def test_every_index_round_trips(height, width):
    full = height * width * 4
    index = np.arange(-1, 2 * full)
    x, y, direction, half = decode_actions(index, height, width)
    passed = index == PASS
    assert (x[passed] == -1).all() and (y[passed] == -1).all() and (direction[passed] == -1).all()
    assert not half[passed].any()
    moves = ~passed
    assert ((x[moves] >= 0) & (x[moves] < width)).all()
    assert ((y[moves] >= 0) & (y[moves] < height)).all()
    assert ((direction[moves] >= 0) & (direction[moves] <= 3)).all()
    assert (half[moves] == (index[moves] >= full)).all()
    again = encode_actions(x[moves], y[moves], direction[moves], half[moves], height, width)
    np.testing.assert_array_equal(again, index[moves])


@pytest.mark.parametrize("height, width", SHAPES)
def test_random_moves_round_trip(height, width):
    rng = np.random.default_rng(height * 1000 + width)
    shape = (40, 250)
    x = rng.integers(0, width, shape)
    y = rng.integers(0, height, shape)
    direction = rng.integers(0, 4, shape)
    half = rng.random(shape) < 0.5
    index = encode_actions(x, y, direction, half, height, width)
    assert index.dtype == np.int32 and index.shape == shape
    decoded = decode_actions(index, height, width)
    for got, want in zip(decoded, (x, y, direction, half), strict=False):
        np.testing.assert_array_equal(got, want)
    assert all(a.shape == shape for a in decoded)


def test_index_layout():
    height, width = 10, 20
    assert int(encode_actions(3, 4, RIGHT, False, height, width)) == (4 * 20 + 3) * 4 + 3
    assert int(encode_actions(3, 4, RIGHT, True, height, width)) == (4 * 20 + 3) * 4 + 3 + 800
    assert int(encode_actions(0, 0, UP, False, height, width)) == 0
    assert int(encode_actions(19, 9, RIGHT, True, height, width)) == 2 * 800 - 1
    assert (UP, DOWN, LEFT, RIGHT) == (0, 1, 2, 3)
    assert PASS == generals_rl.PASS == -1


def test_decoded_arrays_are_int32_and_bool():
    x, y, direction, half = decode_actions([PASS, 0, 5, 100], 4, 4)
    assert x.dtype == y.dtype == direction.dtype == np.int32
    assert half.dtype == bool
    assert x.tolist() == [-1, 0, 1, 1]
    assert y.tolist() == [-1, 0, 0, 2]
    assert direction.tolist() == [-1, 0, 1, 0]
    assert half.tolist() == [False, False, False, True]


@pytest.mark.parametrize(
    "args, message",
    [
        ((-1, 0, UP, False), "x: expected 0..6"),
        ((7, 0, UP, False), "x: expected 0..6"),
        ((0, -1, UP, False), "y: expected 0..4"),
        ((0, 5, UP, False), "y: expected 0..4"),
        ((0, 0, 4, False), "direction: expected 0..3"),
        ((0, 0, -1, False), "direction: expected 0..3"),
        (([0, 1, 9], [0, 0, 0], [0, 0, 0], False), r"x: expected 0..6, got \[9\]"),
    ],
)
def test_encoding_bad_moves_raises(args, message):
    with pytest.raises(ValueError, match=message):
        encode_actions(*args, 5, 7)


@pytest.mark.parametrize("index", [-2, 5 * 7 * 8, 10**9, [0, 1, -7]])
def test_decoding_out_of_range_raises(index):
    with pytest.raises(ValueError, match=r"index: expected -1\.\.279"):
        decode_actions(index, 5, 7)


@pytest.mark.parametrize("direction", [UP, DOWN, LEFT, RIGHT])
@pytest.mark.parametrize("half", [False, True])
def test_engine_moves_where_the_index_says(direction, half):
    game = build_game("""
        .  .     .  G1
        .  .0:8  .  .
        G0 .     .  .
    """)
    step(game, {0: int(encode_actions(1, 1, direction, half, game.height, game.width))})
    dy, dx = OFFSETS[direction]
    assert tile(game, 1, 1) == (0, 4 if half else 1)
    assert tile(game, 1 + dy, 1 + dx) == (0, 4 if half else 7)


def test_game_step_accepts_tuples_and_flat_indices_alike():
    board = """
        G0:9 .  G1
    """
    by_tuple, by_index = build_game(board), build_game(board)
    by_tuple.step([(0, 0, RIGHT, True), None])
    by_index.step([int(encode_actions(0, 0, RIGHT, True, 1, 3)), PASS])
    np.testing.assert_array_equal(by_tuple.army, by_index.army)
    np.testing.assert_array_equal(by_tuple.owner, by_index.owner)
    assert tile(by_tuple, 0, 1) == (0, 4)


def test_capturing_moves_are_the_neighbours_that_beat_the_tile():
    # 3x3, player 1's tile (army 5) in the centre: player 0's tile above moves 6 and
    # takes it, the one on the left moves 5, a tie that does not, the one on the right
    # moves 8 and takes it; nothing of player 0's beats the 50 below.
    owner = np.array([[-1, 0, -1], [0, 1, 0], [-1, 1, -1]]).ravel()
    army = np.array([[0, 7, 0], [6, 5, 9], [0, 50, 0]]).ravel()
    moves = capturing_moves(owner, army, 4, 0, 3, 3)
    assert sorted(moves) == sorted(
        [int(encode_actions(1, 0, DOWN, False, 3, 3)), int(encode_actions(2, 1, LEFT, False, 3, 3))]
    )
    assert capturing_moves(owner, army, 7, 0, 3, 3) == []
    with pytest.raises(ValueError, match=r"tile: expected 0\.\.8, got 9"):
        capturing_moves(owner, army, 9, 0, 3, 3)
