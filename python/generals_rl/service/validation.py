"""Validation of experiences submitted by remote producers.

Every field of every submitted ``Experience`` is checked; the valid ones become
one ``RawBatch`` (each distinct board once) and the invalid ones a list of
``Rejection`` naming the field and the reason. This is the simple path for
producers (one message per experience); the fast path submits a ``PackedBatch``
whose structure is checked by ``packing.unpack``. The values of the rows are
checked by ``row_problems`` on both paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience.batch import OBSERVATION_CHANNELS, RawBatch, parse_game_id
from ..vec_env import encode_observation

MAX_EXPERIENCE_ID_BYTES = 128
_PLAYERS = f"0..{_core.MAX_PLAYERS - 1}"  # the player ids, as messages name them


@dataclass
class Rejection:
    index: int
    experience_id: str
    field: str
    reason: str


class _Board:
    """A compact state checked against the board size; ``problems`` lists what is wrong."""

    def __init__(self, state: pb.RawState, height: int, width: int) -> None:
        self.problems: list[tuple[str, str]] = []
        tiles = height * width
        if (state.height, state.width) != (height, width):
            self.problems.append(
                (
                    "",
                    f"board is {state.height}x{state.width}, the server's buffer holds "
                    f"{height}x{width} boards",
                )
            )
            return
        sizes = (("kind", 1), ("owner", 2), ("army", 4))
        for name, itemsize in sizes:
            got = len(getattr(state, name))
            if got != tiles * itemsize:
                self.problems.append(
                    (
                        name,
                        f"holds {got} bytes, a {height}x{width} board needs {tiles * itemsize} "
                        f"({itemsize} per tile)",
                    )
                )
        if self.problems:
            return
        self.kind = np.frombuffer(state.kind, dtype=np.uint8).reshape(height, width)
        self.owner = np.frombuffer(state.owner, dtype="<i2").astype(np.int16).reshape(height, width)
        self.army = np.frombuffer(state.army, dtype="<i4").astype(np.int32).reshape(height, width)
        if int(self.kind.max()) > 3:
            self.problems.append(
                (
                    "kind",
                    f"tile kind {int(self.kind.max())} is not 0..3 (plain, mountain, city, "
                    "general)",
                )
            )
        if int(self.owner.min()) < -1 or int(self.owner.max()) >= _core.MAX_PLAYERS:
            bad = self.owner[(self.owner < -1) | (self.owner >= _core.MAX_PLAYERS)][0]
            self.problems.append(
                ("owner", f"owner {int(bad)} is not -1 (neutral) or a player {_PLAYERS}")
            )
        if int(self.army.min()) < 0:
            self.problems.append(("army", f"army {int(self.army.min())} is negative"))

    def key(self) -> bytes:
        return self.kind.tobytes() + self.owner.tobytes() + self.army.tobytes()


def _check_tensor(tensor: pb.DecodedState, height: int, width: int) -> str | None:
    expected = [OBSERVATION_CHANNELS, height, width]
    if list(tensor.shape) != expected:
        return f"shape {list(tensor.shape)} is not {expected}"
    needed = OBSERVATION_CHANNELS * height * width
    if len(tensor.data) != needed:
        return f"holds {len(tensor.data)} values, its shape needs {needed}"
    return None


def row_problems(
    player_id, tick, action, reward, legal, height: int, width: int
) -> list[tuple[int, str, str]]:
    """``(row, field, reason)`` for each value of the row columns a submission
    may not hold, field by field; the arrays are one value per row."""
    moves = 2 * height * width * 4  # every direction, full and half moves
    player_id, tick, action, reward, legal = map(
        np.asarray, (player_id, tick, action, reward, legal)
    )
    rules = (
        (
            "player_id",
            (player_id < 0) | (player_id >= _core.MAX_PLAYERS),
            player_id,
            "{} is not a player " + _PLAYERS,
        ),
        ("tick", tick < 0, tick, "{} is negative"),
        # The engine records any submitted index; one off the board is an illegal no-op.
        (
            "legal",
            legal & ((action < -1) | (action >= moves)),
            action,
            f"is true but action {{}} is not -1 (pass) or a move 0..{moves - 1}",
        ),
        # One NaN would poison every aggregate over the buffer (reward_mean).
        ("reward", ~np.isfinite(reward), reward, "{} is not a finite number"),
    )
    return [
        (int(row), field, reason.format(values[row].item()))
        for field, bad, values, reason in rules
        for row in np.flatnonzero(bad)
    ]


def validate_submission(
    experiences, height: int, width: int
) -> tuple[RawBatch | None, list[int], list[Rejection]]:
    """The valid experiences as one ``RawBatch`` (None when there are none), the
    indices they came from, and a rejection per problem of the invalid ones."""
    rows: list[tuple] = []
    indices: list[int] = []
    rejections: list[Rejection] = []
    boards: dict[bytes, int] = {}
    board_list: list[_Board] = []
    full_moves = height * width * 4
    by_row: dict[int, list[tuple[str, str]]] = {}
    for row, field, reason in row_problems(
        player_id=np.array([exp.player_id for exp in experiences], dtype=np.int64),
        tick=np.array([exp.tick for exp in experiences], dtype=np.int64),
        action=np.array([exp.action for exp in experiences], dtype=np.int64),
        reward=np.array([exp.reward for exp in experiences], dtype=np.float32),
        legal=np.array([exp.HasField("legal") and exp.legal for exp in experiences], dtype=bool),
        height=height,
        width=width,
    ):
        by_row.setdefault(row, []).append((field, reason))
    for index, exp in enumerate(experiences):
        label = exp.experience_id
        problems: list[tuple[str, str]] = []
        if len(label.encode()) > MAX_EXPERIENCE_ID_BYTES:
            problems.append(
                (
                    "experience_id",
                    f"is {len(label.encode())} bytes, at most {MAX_EXPERIENCE_ID_BYTES}",
                )
            )
            label = label[:32] + "..."
        try:
            game_id = parse_game_id(exp.game_id)
        except ValueError:
            problems.append(("game_id", f"{exp.game_id[:40]!r} is not 16 hex digits"))
            game_id = 0
        problems.extend(by_row.get(index, ()))
        terminated, truncated = exp.terminated, exp.truncated
        if (terminated or truncated) and not exp.done:
            problems.append(("done", "is false while terminated or truncated is set"))
        if exp.done and not (terminated or truncated):
            terminated = True  # clients that only know `done`
        if exp.metadata:
            problems.append(
                ("metadata", "is not stored by this server; send experiences without it")
            )
        if exp.action_mask and len(exp.action_mask) != full_moves:
            problems.append(
                (
                    "action_mask",
                    f"holds {len(exp.action_mask)} values, a {height}x{width} board has "
                    f"{full_moves}",
                )
            )
        for name in ("state", "next_state"):
            if exp.HasField(name):
                problem = _check_tensor(getattr(exp, name), height, width)
                if problem:
                    problems.append((name, problem))
        row_boards = []
        for name in ("raw_state", "raw_next_state"):
            if not exp.HasField(name):
                tensor_name = "state" if name == "raw_state" else "next_state"
                if exp.HasField(tensor_name):
                    problems.append(
                        (
                            name,
                            (
                                f"is missing: the float DecodedState {tensor_name} cannot be "
                                "stored losslessly "
                                "(fogged tiles and clipped armies are lost); send the board as a "
                                "RawState"
                            ),
                        )
                    )
                else:
                    problems.append((name, "is missing (the board as a RawState is required)"))
                continue
            board = _Board(getattr(exp, name), height, width)
            problems.extend(
                (f"{name}.{sub}" if sub else name, reason) for sub, reason in board.problems
            )
            row_boards.append(board)
        if problems:
            rejections.extend(Rejection(index, label, f, r) for f, r in problems)
            continue
        if exp.HasField("legal"):
            legal = exp.legal
        else:
            legal = -1 <= exp.action < 2 * full_moves and _derived_legal(
                row_boards[0], exp.player_id, exp.action
            )
        state_rows = []
        for board in row_boards:
            key = board.key()
            if key not in boards:
                boards[key] = len(board_list)
                board_list.append(board)
            state_rows.append(boards[key])
        rows.append(
            (
                game_id,
                exp.player_id,
                exp.tick,
                exp.action,
                exp.reward,
                legal,
                terminated,
                truncated,
                *state_rows,
            )
        )
        indices.append(index)
    if not rows:
        return None, indices, rejections
    columns = list(zip(*rows, strict=False))
    n = len(rows)
    raw = RawBatch(
        sequence=np.zeros(n, dtype=np.uint64),
        game_id=np.array(columns[0], dtype=np.uint64),
        player_id=np.array(columns[1], dtype=np.int32),
        tick=np.array(columns[2], dtype=np.int32),
        action=np.array(columns[3], dtype=np.int32),
        reward=np.array(columns[4], dtype=np.float32),
        legal=np.array(columns[5], dtype=bool),
        terminated=np.array(columns[6], dtype=bool),
        truncated=np.array(columns[7], dtype=bool),
        state_index=np.array(columns[8], dtype=np.int32),
        next_state_index=np.array(columns[9], dtype=np.int32),
        state_kind=np.stack([b.kind for b in board_list]),
        state_owner=np.stack([b.owner for b in board_list]),
        state_army=np.stack([b.army for b in board_list]),
    )
    return raw, indices, rejections


def _derived_legal(board: _Board, player: int, action: int) -> bool:
    """Whether ``action`` was legal on ``board`` for ``player`` (a pass always is)."""
    if action == -1:
        return True
    _, mask = encode_observation(board.kind, board.owner, board.army, player)
    return bool(mask[action % mask.size])
