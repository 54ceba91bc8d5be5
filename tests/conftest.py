"""Helpers shared by the test suites: hand-built boards, moves and board sums.

A board is written as rows of whitespace-separated tokens ``<kind><owner>[:<army>]``:

* kind: ``.`` plain, ``M`` mountain, ``C`` city, ``G`` general
* owner: a player index, or nothing for neutral
* army: defaults to 0 (1 for a general)

For example ``"G0:5 .1:3 C:40 M"`` is player 0's general with 5 armies, a plain tile
of player 1 with 3, a neutral city with 40 and a mountain.
"""

from __future__ import annotations

import re
from pathlib import Path

import generals_rl
import numpy as np
from generals_rl.actions import DOWN, LEFT, OFFSETS, RIGHT, UP, encode_actions

PLAIN, MOUNTAIN, CITY, GENERAL = 0, 1, 2, 3
NEUTRAL = -1
DIRECTIONS = (UP, DOWN, LEFT, RIGHT)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REPLAY_DIR = PROJECT_ROOT.parent / "shared" / "replays"

_TOKEN = re.compile(r"^(?P<kind>[.MCG])(?P<owner>\d+)?(?::(?P<army>\d+))?$")
_KINDS = {".": PLAIN, "M": MOUNTAIN, "C": CITY, "G": GENERAL}


def parse_board(text: str):
    """``(kind, owner, army, generals)`` arrays from the text form described above."""
    rows = [line.split() for line in text.strip().splitlines() if line.strip()]
    if len({len(row) for row in rows}) != 1:
        raise ValueError("every board row needs the same number of tiles")
    height, width = len(rows), len(rows[0])
    kind = np.zeros((height, width), dtype=np.uint8)
    owner = np.full((height, width), NEUTRAL, dtype=np.int16)
    army = np.zeros((height, width), dtype=np.int32)
    generals: dict[int, int] = {}
    for y, row in enumerate(rows):
        for x, token in enumerate(row):
            match = _TOKEN.match(token)
            if match is None:
                raise ValueError(f"bad board token {token!r}")
            kind[y, x] = _KINDS[match["kind"]]
            if match["owner"] is not None:
                owner[y, x] = int(match["owner"])
            default_army = 1 if kind[y, x] == GENERAL else 0
            army[y, x] = int(match["army"]) if match["army"] is not None else default_army
            if kind[y, x] == GENERAL:
                generals[int(owner[y, x])] = y * width + x
    players = sorted(generals)
    if players != list(range(len(players))):
        raise ValueError(f"generals must belong to players 0..n-1, got {players}")
    return kind, owner, army, np.array([generals[p] for p in players], dtype=np.int32)


def build_game(text: str, max_ticks: int = 0) -> generals_rl.Game:
    """A game on the board written in ``text``."""
    kind, owner, army, generals = parse_board(text)
    return generals_rl.Game.from_map(kind, owner, army, generals, max_ticks=max_ticks)


def move(game: generals_rl.Game, y: int, x: int, direction: int, half: bool = False) -> int:
    """The flat action index of a move from row ``y``, column ``x``."""
    return int(encode_actions(x, y, direction, half, game.height, game.width))


def step(game: generals_rl.Game, actions: dict[int, int] | None = None) -> bool:
    """One tick where the players in ``actions`` play their action and the rest pass."""
    actions = actions or {}
    return game.step([actions.get(p) for p in range(game.num_players)])


def pass_ticks(game: generals_rl.Game, ticks: int) -> None:
    for _ in range(ticks):
        step(game)


def tile(game: generals_rl.Game, y: int, x: int) -> tuple[int, int]:
    """``(owner, army)`` of one tile."""
    return int(game.owner[y, x]), int(game.army[y, x])


def board_totals(game: generals_rl.Game) -> tuple[np.ndarray, np.ndarray]:
    """Per-player army and land recomputed from the board arrays."""
    owner = np.asarray(game.owner).ravel()
    army = np.asarray(game.army).ravel().astype(np.int64)
    owned = owner >= 0
    players = game.num_players
    armies = np.bincount(owner[owned], weights=army[owned], minlength=players)
    land = np.bincount(owner[owned], minlength=players)
    return armies.astype(np.int64), land.astype(np.int64)


def legal_moves(kind, owner, army, player: int) -> list[tuple[int, int, int]]:
    """Every ``(y, x, direction)`` full move the rules allow ``player`` now, from the arrays."""
    height, width = kind.shape
    moves = []
    for y, x in zip(*np.nonzero((owner == player) & (army >= 2)), strict=False):
        for direction in DIRECTIONS:
            dy, dx = OFFSETS[direction]
            ny, nx = y + dy, x + dx
            if 0 <= ny < height and 0 <= nx < width and kind[ny, nx] != MOUNTAIN:
                moves.append((int(y), int(x), direction))
    return moves
