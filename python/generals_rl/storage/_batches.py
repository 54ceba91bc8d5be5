"""Batch plumbing shared by every storage format: checking what a writer is given,
joining batches into shard chunks with each game state stored once, and the
summary of a shard that goes into the partition index."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from ..experience.batch import (
    RECORD_COLUMNS,
    STATE_COLUMNS,
    STATE_TABLES,
    ExperienceBatch,
    RawBatch,
)

# Decoded form only: name -> dtype.
DECODED_COLUMNS = {
    "state": np.float32,  # (n, 9, H, W)
    "next_state": np.float32,  # (n, 9, H, W)
    "action_mask": np.bool_,  # (n, H*W*4)
}
OBSERVATION_CHANNELS = 9
STATE_MODES = ("compact", "decoded")


def check_batch(batch, states: str) -> RawBatch | ExperienceBatch:
    """``batch`` with every column of its form present, one-dimensional record
    columns of one length and state tables of whole boards; TypeError/ValueError
    name what is wrong. A writer storing ``states="compact"`` takes only RawBatch."""
    if states == "compact":
        if not isinstance(batch, RawBatch):
            raise TypeError(
                f"write: a compact-state writer takes a RawBatch (Cursor.read_raw), got {type(batch).__name__}"
            )
    elif not isinstance(batch, (RawBatch, ExperienceBatch)):
        raise TypeError(f"write: expected a RawBatch or an ExperienceBatch, got {type(batch).__name__}")
    n = None
    for name in RECORD_COLUMNS:
        column = getattr(batch, name, None)
        if not isinstance(column, np.ndarray) or column.ndim != 1:
            raise ValueError(f"write: column {name!r} must be a one-dimensional numpy array")
        if n is None:
            n = len(column)
        elif len(column) != n:
            raise ValueError(f"write: column {name!r} has {len(column)} rows, 'sequence' has {n}")
    if isinstance(batch, RawBatch):
        for name in STATE_COLUMNS:
            column = batch.state_index if name == "state_index" else batch.next_state_index
            if not isinstance(column, np.ndarray) or column.shape != (n,):
                raise ValueError(f"write: column {name!r} must hold one index per row ({n})")
        shape = np.shape(batch.state_kind)
        if len(shape) != 3:
            raise ValueError(f"write: state tables must be (states, height, width), got shape {shape}")
        for name in STATE_TABLES:
            if np.shape(getattr(batch, name)) != shape:
                raise ValueError(f"write: state table {name!r} has shape {np.shape(getattr(batch, name))}, "
                                 f"state_kind has {shape}")
        if n:
            low = min(batch.state_index.min(), batch.next_state_index.min())
            high = max(batch.state_index.max(), batch.next_state_index.max())
            if low < 0 or high >= shape[0]:
                raise ValueError(f"write: state indices {low}..{high} fall outside the {shape[0]} states")
    else:
        for name in DECODED_COLUMNS:
            column = getattr(batch, name, None)
            if not isinstance(column, np.ndarray) or len(column) != n:
                raise ValueError(f"write: decoded column {name!r} must hold one entry per row ({n})")
        if batch.state.ndim != 4 or batch.state.shape[1] != OBSERVATION_CHANNELS:
            raise ValueError(f"write: 'state' must be (n, 9, height, width), got shape {batch.state.shape}")
    return batch


def board_shape(batch: RawBatch | ExperienceBatch) -> tuple[int, int]:
    if isinstance(batch, RawBatch):
        return int(batch.state_kind.shape[1]), int(batch.state_kind.shape[2])
    return int(batch.state.shape[2]), int(batch.state.shape[3])


def take_rows(batch: RawBatch | ExperienceBatch, rows: slice) -> RawBatch | ExperienceBatch:
    """Rows ``rows`` (a slice) of either form; a RawBatch keeps its whole state table
    (chunking compacts it later)."""
    if isinstance(batch, RawBatch):
        out = {name: getattr(batch, name)[rows] for name in (*RECORD_COLUMNS, *STATE_COLUMNS)}
        out.update({name: getattr(batch, name) for name in STATE_TABLES})
        return RawBatch(**out, missed=batch.missed, next_sequence=batch.next_sequence)
    return ExperienceBatch(
        **{f.name: getattr(batch, f.name)[rows] for f in fields(ExperienceBatch) if f.name not in ("missed", "next_sequence")},
        missed=batch.missed,
        next_sequence=batch.next_sequence,
    )


def as_parts(batches: list) -> list:
    """The batches of one chunk, each RawBatch with a compact state table (see
    ``compact_states``; batches straight from a cursor already are and are not
    copied). States are not merged across parts: a state both parts use is stored
    by each."""
    return [compact_states(b) if isinstance(b, RawBatch) else b for b in batches]


def join(batches: list) -> RawBatch | ExperienceBatch:
    """One batch of the rows of ``batches`` (all of one form) in order; for RawBatch
    each game state is stored once, ordered by first use (see ``compact_states``)."""
    if isinstance(batches[0], RawBatch):
        return compact_states(batches[0] if len(batches) == 1 else RawBatch.concat(batches))
    columns = {
        f.name: np.concatenate([getattr(b, f.name) for b in batches])
        for f in fields(ExperienceBatch)
        if f.name not in ("missed", "next_sequence")
    }
    return ExperienceBatch(**columns, missed=sum(b.missed for b in batches), next_sequence=batches[-1].next_sequence)


def record_columns(parts: list) -> dict:
    """The record columns of ``parts`` joined."""
    if len(parts) == 1:
        return {name: getattr(parts[0], name) for name in RECORD_COLUMNS}
    return {name: np.concatenate([getattr(p, name) for p in parts]) for name in RECORD_COLUMNS}


def _first_use_runs(batch: RawBatch) -> np.ndarray:
    """The running maximum of the state references in row order (state before
    next state), shape (n, 2)."""
    refs = np.empty((len(batch), 2), dtype=np.int32)
    refs[:, 0] = batch.state_index
    refs[:, 1] = batch.next_state_index
    return np.maximum.accumulate(refs.reshape(-1)).reshape(-1, 2), refs


def is_compact(batch: RawBatch) -> bool:
    """Whether every state of the table is used and the table is in order of first
    use (each reference is to a used state or to the next new one)."""
    if len(batch) == 0:
        return len(batch.state_kind) == 0
    running, _ = _first_use_runs(batch)
    flat = running.reshape(-1)
    steps = np.diff(flat)
    return bool(flat[0] == 0 and flat[-1] == len(batch.state_kind) - 1 and (steps <= 1).all())


def compact_states(batch: RawBatch) -> RawBatch:
    """``batch`` with a state table holding only the states its rows use, each once,
    in order of first use (row by row, a row's state before its next state).

    A game state is identified by ``(game_id, tick)`` (the state of row r is the game
    at ``tick[r]``, its next state the game at ``tick[r] + 1``); copies of one state
    that batches joined by ``RawBatch.concat`` both hold are merged after checking
    that their contents are equal, so distinct contents are never merged.
    """
    if is_compact(batch):
        return batch
    n = len(batch)
    refs = np.empty(2 * n, dtype=np.int64)
    refs[0::2] = batch.state_index
    refs[1::2] = batch.next_state_index
    used, first_use, ref_to_used = np.unique(refs, return_index=True, return_inverse=True)
    # The (game, tick) identity of each used state, from the row that first uses it.
    first_row = first_use // 2
    game = batch.game_id[first_row]
    tick = batch.tick[first_row].astype(np.int64) + (first_use % 2)
    # Sorted by (game, tick, first use): copies of one state follow the copy used first.
    by_key = np.lexsort((first_use, tick, game))
    same_key = np.zeros(len(used), dtype=bool)
    same_key[1:] = (game[by_key][1:] == game[by_key][:-1]) & (tick[by_key][1:] == tick[by_key][:-1])
    merged = np.zeros(len(used), dtype=bool)
    leader = np.maximum.accumulate(np.where(same_key, 0, np.arange(len(used))))
    if same_key.any():
        # A copy joins the first copy of its key only when the contents are equal.
        copies = np.flatnonzero(same_key)
        equal = np.ones(len(copies), dtype=bool)
        for name in STATE_TABLES:
            table = getattr(batch, name)
            a, b = table[used[by_key[copies]]], table[used[by_key[leader[copies]]]]
            equal &= (a == b).reshape(len(copies), -1).all(axis=1)
        merged[copies[equal]] = True
    group = np.cumsum(~merged) - 1
    group[merged] = group[leader[merged]]
    group_of_used = np.empty(len(used), dtype=np.int64)
    group_of_used[by_key] = group
    heads = by_key[~merged]  # one used state per group, the one used first
    group_state = used[heads]
    group_first_use = first_use[heads]
    order = np.argsort(group_first_use, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    new_refs = rank[group_of_used[ref_to_used.reshape(-1)]].astype(np.int32)
    keep = group_state[order]
    identity = len(keep) == len(batch.state_kind) and bool((keep == np.arange(len(keep))).all())
    columns = {name: getattr(batch, name) for name in RECORD_COLUMNS}
    return RawBatch(
        **columns,
        state_index=new_refs[0::2].copy(),
        next_state_index=new_refs[1::2].copy(),
        **{name: getattr(batch, name) if identity else getattr(batch, name)[keep] for name in STATE_TABLES},
        missed=batch.missed,
        next_sequence=batch.next_sequence,
    )


def states_introduced(batch: RawBatch) -> np.ndarray:
    """For a compact batch: how many states each row uses first (0, 1 or 2); their
    running sum splits the state table over the rows."""
    if len(batch) == 0:
        return np.zeros(0, dtype=np.int32)
    running, _ = _first_use_runs(batch)
    flat = running.reshape(-1)
    new = np.empty(len(flat), dtype=bool)
    new[0] = True
    new[1:] = flat[1:] > flat[:-1]
    return new.reshape(-1, 2).sum(axis=1, dtype=np.int32)


def describe(parts: list) -> dict:
    """The index summary of the rows of ``parts`` (batches of one board size):
    counts and the sequence, game, player and tick ranges."""
    columns = record_columns(parts)
    n = len(columns["sequence"])
    if n == 0:
        return {"experiences": 0}
    games = np.unique(columns["game_id"])
    height, width = board_shape(parts[0])
    return {
        "experiences": n,
        "sequence_first": int(columns["sequence"].min()),
        "sequence_last": int(columns["sequence"].max()),
        "games": len(games),
        "game_id_min": f"{int(games[0]):016x}",
        "game_id_max": f"{int(games[-1]):016x}",
        "players": [int(p) for p in np.unique(columns["player_id"])],
        "tick_min": int(columns["tick"].min()),
        "tick_max": int(columns["tick"].max()),
        "height": height,
        "width": width,
    }


def empty_like(form: type, height: int, width: int) -> RawBatch | ExperienceBatch:
    columns = {name: np.empty(0, dtype) for name, dtype in RECORD_COLUMNS.items()}
    if form is RawBatch:
        columns.update({name: np.empty(0, dtype) for name, dtype in STATE_COLUMNS.items()})
        columns.update({name: np.empty((0, height, width), dtype) for name, dtype in STATE_TABLES.items()})
        return RawBatch(**columns)
    return ExperienceBatch(
        **columns,
        state=np.empty((0, OBSERVATION_CHANNELS, height, width), np.float32),
        next_state=np.empty((0, OBSERVATION_CHANNELS, height, width), np.float32),
        action_mask=np.empty((0, height * width * 4), bool),
    )


def nbytes(batch: RawBatch | ExperienceBatch) -> int:
    """Bytes the batch's arrays hold in memory."""
    return sum(v.nbytes for v in vars(batch).values() if isinstance(v, np.ndarray))
