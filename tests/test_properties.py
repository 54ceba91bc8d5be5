"""Properties of the engine on random boards and random play.

The reference model below is a direct, slow transcription of the README's rules; the
engine must agree with it tile for tile after every tick. Armies change only by
growth and by combat: a move conserves army onto one's own tile, costs both sides
``min(moved, defender)`` in an attack, and a captured general's tiles lose what the
halving takes.
"""

from __future__ import annotations

import random

import generals_rl
import numpy as np
import pytest
from conftest import (
    CITY,
    DIRECTIONS,
    GENERAL,
    MOUNTAIN,
    NEUTRAL,
    OFFSETS,
    PLAIN,
    board_totals,
    legal_moves,
    move,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def boards(draw, max_side: int = 6, max_players: int = 4):
    """``(kind, owner, army, generals)`` of a random valid board."""
    height = draw(st.integers(2, max_side))
    width = draw(st.integers(2, max_side))
    n = height * width
    players = draw(st.integers(2, min(max_players, n)))
    tiles = st.lists(st.integers(0, n - 1), min_size=players, max_size=players, unique=True)
    generals = draw(tiles)
    kind = np.array(
        draw(
            st.lists(st.sampled_from([PLAIN, PLAIN, PLAIN, MOUNTAIN, CITY]), min_size=n, max_size=n)
        ),
        dtype=np.uint8,
    )
    owner = np.array(
        draw(st.lists(st.integers(NEUTRAL, players - 1), min_size=n, max_size=n)), dtype=np.int16
    )
    army = np.array(draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)), dtype=np.int32)
    owner[kind == MOUNTAIN] = NEUTRAL
    army[kind == MOUNTAIN] = 0
    for player, t in enumerate(generals):
        kind[t], owner[t] = GENERAL, player
        army[t] = max(1, army[t])
    shape = (height, width)
    return kind.reshape(shape), owner.reshape(shape), army.reshape(shape), np.array(generals)


def game_on(board) -> generals_rl.Game:
    return generals_rl.Game.from_map(*board)


def total_army(game) -> int:
    return int(np.asarray(game.army, dtype=np.int64).sum())


def growth_of_last_tick(game) -> int:
    """What the advance into the current tick added, from the board after it."""
    owned = np.asarray(game.owner) >= 0
    growth = 0
    if game.tick % 2 == 0:
        standing_generals = sum(1 for g in game.generals if g >= 0)
        growth += standing_generals + int((owned & (np.asarray(game.kind) == CITY)).sum())
    if game.tick % 50 == 0:
        growth += int(owned.sum())
    return growth


class ReferenceModel:
    """The rules of the README, tile by tile in Python."""

    def __init__(self, game):
        self.height, self.width = game.height, game.width
        self.players = game.num_players
        self.kind = np.array(game.kind).ravel()
        self.owner = np.array(game.owner).ravel()
        self.army = np.array(game.army).ravel().astype(np.int64)
        self.generals = list(game.generals)
        self.alive = [True] * self.players
        self.death_order: list[int] = []
        self.illegal = [0] * self.players
        self.tick = 0
        self.growth = 0
        self.combat_loss = 0

    def _move(self, player: int, action: int) -> bool:
        full = self.height * self.width * 4
        if not 0 <= action < 2 * full:
            return False
        half, index = action >= full, action % full
        start, direction = divmod(index, 4)
        y, x = divmod(start, self.width)
        dy, dx = OFFSETS[direction]
        if not (0 <= y + dy < self.height and 0 <= x + dx < self.width):
            return False
        end = (y + dy) * self.width + x + dx
        a = int(self.army[start])
        if self.owner[start] != player or self.kind[end] == MOUNTAIN or a < 2:
            return False
        kept = (a + 1) // 2 if half else 1
        moved = a - kept
        self.army[start] = kept
        defender, held = int(self.owner[end]), int(self.army[end])
        if defender == player:
            self.army[end] += moved
            return True
        self.combat_loss += 2 * min(moved, held)
        if held >= moved:
            self.army[end] -= moved
            return True
        self.owner[end], self.army[end] = player, moved - held
        if defender >= 0 and self.generals[defender] == end:
            victim = self.owner == defender
            self.combat_loss += int((self.army[victim] // 2).sum())
            self.army[victim] -= self.army[victim] // 2
            self.owner[victim] = player
            self.kind[end] = CITY
            self.generals[defender] = -1
            if self.alive[defender]:
                self.alive[defender] = False
                self.death_order.append(defender)
        return True

    def step(self, actions: list[int]) -> None:
        self.growth = self.combat_loss = 0
        before = int(self.army.sum())
        order = range(self.players) if self.tick % 2 == 0 else reversed(range(self.players))
        for p in order:
            if self.alive[p] and actions[p] != -1 and not self._move(p, actions[p]):
                self.illegal[p] += 1
        self.tick += 1
        if self.tick % 2 == 0:
            for g in self.generals:
                if g >= 0:
                    self.army[g] += 1
            self.army[(self.kind == CITY) & (self.owner >= 0)] += 1
        if self.tick % 50 == 0:
            self.army[self.owner >= 0] += 1
        self.growth = int(self.army.sum()) - before + self.combat_loss

    def assert_matches(self, game) -> None:
        np.testing.assert_array_equal(np.asarray(game.kind).ravel(), self.kind)
        np.testing.assert_array_equal(np.asarray(game.owner).ravel(), self.owner)
        np.testing.assert_array_equal(np.asarray(game.army).ravel(), self.army)
        assert list(game.generals) == self.generals
        assert game.alive.tolist() == self.alive
        assert list(game.death_order) == self.death_order
        assert game.illegal_moves.tolist() == self.illegal
        assert game.tick == self.tick


def random_actions(game, rng: random.Random) -> list[int]:
    """One action per player: mostly legal moves, some passes and some illegal indices."""
    kind, owner, army = np.asarray(game.kind), np.asarray(game.owner), np.asarray(game.army)
    full = game.height * game.width * 4
    actions = []
    for p in range(game.num_players):
        roll = rng.random()
        options = legal_moves(kind, owner, army, p)
        if roll < 0.1:
            actions.append(-1)
        elif roll < 0.2 or not options:
            actions.append(rng.randrange(-3, 2 * full + 3))
        else:
            y, x, direction = rng.choice(options)
            actions.append(move(game, y, x, direction, half=rng.random() < 0.25))
    return actions


def assert_totals_match_board(game) -> None:
    army, land = board_totals(game)
    assert game.army_per_player.tolist() == army.tolist()
    assert game.land_per_player.tolist() == land.tolist()


# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(board=boards(), ticks=st.integers(1, 110))
def test_passing_changes_total_army_by_growth_only(board, ticks):
    game = game_on(board)
    for _ in range(ticks):
        before = total_army(game)
        game.step([None] * game.num_players)
        assert total_army(game) - before == growth_of_last_tick(game)


@PROPERTY_SETTINGS
@given(board=boards(), data=st.data())
def test_one_move_changes_total_army_by_combat_and_growth_only(board, data):
    game = game_on(board)
    for _ in range(data.draw(st.integers(0, 3), label="ticks passed first")):
        game.step([None] * game.num_players)
    player = data.draw(st.integers(0, game.num_players - 1), label="player")
    kind, owner, army = (np.array(a) for a in (game.kind, game.owner, game.army))
    options = legal_moves(kind, owner, army, player)
    if not options:
        return
    y, x, direction = data.draw(st.sampled_from(options), label="move")
    half = data.draw(st.booleans(), label="half")
    dy, dx = OFFSETS[direction]
    ty, tx = y + dy, x + dx
    moved = int(army[y, x]) - ((int(army[y, x]) + 1) // 2 if half else 1)
    defender, held = int(owner[ty, tx]), int(army[ty, tx])
    if defender == player:
        loss = 0
    else:
        loss = 2 * min(moved, held)
        end = ty * game.width + tx
        if defender >= 0 and moved > held and game.generals[defender] == end:
            # the victim's other tiles are halved, rounding half up
            victim = owner == defender
            victim.flat[end] = False
            loss += int((army[victim] // 2).sum())
    before = total_army(game)
    actions = [None] * game.num_players
    actions[player] = move(game, y, x, direction, half)
    game.step(actions)
    assert game.illegal_moves.tolist() == [0] * game.num_players
    assert total_army(game) - before == growth_of_last_tick(game) - loss
    assert_totals_match_board(game)


@PROPERTY_SETTINGS
@given(board=boards(), play_seed=st.integers(0, 2**32 - 1), ticks=st.integers(1, 60))
def test_random_play_matches_the_reference_model(board, play_seed, ticks):
    rng = random.Random(play_seed)
    game = game_on(board)
    model = ReferenceModel(game)
    for _ in range(ticks):
        before = total_army(game)
        actions = random_actions(game, rng)
        game.step(actions)
        model.step(actions)
        model.assert_matches(game)
        assert total_army(game) - before == model.growth - model.combat_loss
        assert model.growth == growth_of_last_tick(game)
        if game.done:
            break


@PROPERTY_SETTINGS
@given(board=boards(max_side=8, max_players=6), play_seed=st.integers(0, 2**32 - 1))
def test_per_player_totals_always_match_the_board(board, play_seed):
    rng = random.Random(play_seed)
    game = game_on(board)
    assert_totals_match_board(game)
    for _ in range(50):
        game.step(random_actions(game, rng))
        assert_totals_match_board(game)
        if game.done:
            break


@PROPERTY_SETTINGS
@given(board=boards())
def test_python_legal_moves_agree_with_the_engine(board):
    game = game_on(board)
    kind, owner, army = np.asarray(game.kind), np.asarray(game.owner), np.asarray(game.army)
    core = game._game
    for p in range(game.num_players):
        expected = set(legal_moves(kind, owner, army, p))
        engine = {
            (t // game.width, t % game.width, d)
            for t in range(game.height * game.width)
            for d in DIRECTIONS
            if core.move_is_legal(p, t, d)
        }
        assert engine == expected
        # out-of-range tiles and directions are simply not legal
        assert not core.move_is_legal(p, -1, 0)
        assert not core.move_is_legal(p, game.height * game.width, 0)
        assert not core.move_is_legal(p, 0, 4)
        assert not core.move_is_legal(p, 0, -1)


@pytest.mark.parametrize("players", [2, 3, 5])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), play_seed=st.integers(0, 2**32 - 1))
def test_random_play_on_generated_maps_ends(players, seed, play_seed):
    rng = random.Random(play_seed)
    config = generals_rl.MapConfig(min_side=6, max_side=10, min_general_distance=4)
    max_ticks = 250
    game = generals_rl.Game(seed, players=players, map_config=config, max_ticks=max_ticks)
    done = False
    while not done:
        done = game.step(random_actions(game, rng))
        assert game.tick <= max_ticks
        assert done == game.done
    if game.over:
        assert not game.truncated
        assert game.alive.sum() == 1 and game.winner == int(np.argmax(game.alive))
        assert len(game.death_order) == players - 1
    else:
        assert game.truncated and game.tick == max_ticks and game.winner == -1
    assert_totals_match_board(game)


def test_random_play_to_the_end_on_small_boards():
    """Long aggressive random play on tiny boards does end games with a winner."""
    config = generals_rl.MapConfig(min_side=4, max_side=5, mountain_fraction=0.0, cities=0)
    winners = 0
    for seed in range(20):
        game = generals_rl.Game(seed, map_config=config, max_ticks=3000)
        rng = random.Random(seed)
        while not game.step(random_actions(game, rng)):
            pass
        assert game.done
        winners += game.winner >= 0
    assert winners > 0
