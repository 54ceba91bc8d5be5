"""One generals.io game, played tick by tick."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from . import _core
from .actions import PASS, encode_actions
from .config import MapConfig

TILE_PLAIN, TILE_MOUNTAIN, TILE_CITY, TILE_GENERAL = 0, 1, 2, 3
NEUTRAL = -1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class Game:
    """A single game on the C++ engine.

    Create it from a seed (``Game(seed=7)``) or from an explicit board
    (``Game.from_map(kind, owner, army, generals)``). Board state is exposed as
    read-only ``(height, width)`` numpy views that follow the game as it steps.
    ``teams`` (one team number per player, e.g. ``[0, 0, 1, 1]``) makes a team game;
    ``None`` is free-for-all.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        players: int = 2,
        map_config: MapConfig | None = None,
        max_ticks: int = 0,
        teams: Sequence[int] | None = None,
        _core_game: _core.Game | None = None,
    ) -> None:
        if _core_game is None:
            options = (map_config or MapConfig()).to_core(players)
            _core_game = _core.Game.generate(options, seed, max_ticks, list(teams or ()))
        self._game = _core_game

    @classmethod
    def from_map(
        cls,
        kind,
        owner,
        army,
        generals,
        *,
        max_ticks: int = 0,
        teams: Sequence[int] | None = None,
        neutral_city_regrowth: bool = False,
    ) -> Game:
        """A game on a given board: ``kind`` (0 plain, 1 mountain, 2 city, 3 general),
        ``owner`` (-1 neutral or a player), ``army`` and one general tile index per player.
        ``neutral_city_regrowth``: neutral cities regrow their army (replays before
        version 6 recorded that rule)."""
        return cls(
            _core_game=_core.Game(
                kind,
                owner,
                army,
                generals,
                max_ticks,
                neutral_city_regrowth,
                teams=list(teams or ()),
            )
        )

    def step(self, moves: Sequence) -> bool:
        """Plays one tick. ``moves[p]`` is player p's flat action index, ``None`` or -1
        for a pass, or an ``(x, y, direction, half)`` tuple. Illegal moves are counted
        no-ops. Returns True when the game is over (won or truncated)."""
        if len(moves) != self.num_players:
            raise ValueError(
                f"moves: expected one per player ({self.num_players}), got {len(moves)}"
            )
        actions = np.empty(self.num_players, dtype=np.int32)
        for p, move in enumerate(moves):
            if move is None:
                actions[p] = PASS
            elif isinstance(move, tuple):
                x, y, direction, half = move
                actions[p] = encode_actions(x, y, direction, half, self.height, self.width)
            else:
                try:
                    index = operator.index(
                        move
                    )  # integers only, as VecEnv takes them: 1.5 is no index
                except TypeError:
                    raise ValueError(
                        f"moves[{p}]: expected an action index, None or an "
                        f"(x, y, direction, half) tuple, got {move!r}"
                    ) from None
                # Indices beyond int32 are out of range like any other: counted no-ops.
                actions[p] = min(max(index, _INT32_MIN), _INT32_MAX)
        return self._game.step(actions)

    def play_recorded(self, moves: np.ndarray, afks: np.ndarray, snapshot_every: int = 100) -> dict:
        """Plays a replay's recorded ``moves`` and ``afks`` (``Replay.moves``/``afks``)
        from this game's state to the end, in C++: per tick the armies, land and
        players alive, and the board every ``snapshot_every`` ticks."""
        return _core.run_replay(self._game, moves, afks, snapshot_every)

    def recorded_experiences(
        self,
        moves: np.ndarray,
        afks: np.ndarray,
        *,
        height: int,
        width: int,
        game_id: int,
        first_sequence: int,
        reward_config: _core.RewardConfig,
    ) -> _core.RawBatch:
        """The raw batch of playing ``moves`` and ``afks`` from this game's state: one
        experience per alive player per tick, on boards padded to ``height x width``
        (``Replay.to_experiences`` describes them)."""
        return _core.replay_experiences(
            self._game, moves, afks, height, width, game_id, first_sequence, reward_config
        )

    def visibility(self, player: int) -> np.ndarray:
        """Fog of war: True on every tile within the 3x3 square around a tile ``player`` owns."""
        return self._game.visibility(player)

    height = property(lambda self: self._game.height)
    width = property(lambda self: self._game.width)
    num_players = property(lambda self: self._game.num_players)
    tick = property(lambda self: self._game.tick)
    max_ticks = property(lambda self: self._game.max_ticks)
    over = property(
        lambda self: self._game.over,
        doc="One player (in a team game, one team) is left; not when the last ones died at once.",
    )
    truncated = property(lambda self: self._game.truncated, doc="The tick limit ended the game.")
    done = property(lambda self: self._game.done)
    winner = property(
        lambda self: self._game.winner,
        doc="The winning team, or -1 (in free-for-all each player is the team of its own index).",
    )
    teams = property(lambda self: self._game.teams, doc="Each player's team; None in free-for-all.")
    alive = property(lambda self: self._game.alive)
    death_order = property(lambda self: self._game.death_order)
    generals = property(lambda self: self._game.generals)
    kind = property(lambda self: self._game.kind)
    owner = property(lambda self: self._game.owner)
    army = property(lambda self: self._game.army)
    army_per_player = property(lambda self: self._game.army_per_player)
    land_per_player = property(lambda self: self._game.land_per_player)
    illegal_moves = property(lambda self: self._game.illegal_moves)
