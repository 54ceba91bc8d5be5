"""Batch plumbing shared by every storage format: checking what a writer is given,
joining batches into shard chunks with each game state stored once, and the
summary of a shard that goes into the partition index."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from .. import _core
from ..experience.batch import (
    DECODED_COLUMNS,
    OBSERVATION_CHANNELS,
    ROW_COLUMNS,
    SOURCE_COLUMNS,
    STATE_TABLES,
    DecodedBatch,
    RawBatch,
)

# The two forms a shard stores its states in (the batch forms RawBatch and
# DecodedBatch). Shards written before 0.2 record the raw form as "compact".
STATE_FORMS = ("raw", "decoded")
_LEGACY_FORMS = {"compact": "raw"}


def stored_form(recorded: str) -> str:
    """The form a shard's recorded ``states`` names (legacy names mapped)."""
    return _LEGACY_FORMS.get(recorded, recorded)


def check_batch(batch, states: str) -> RawBatch | DecodedBatch:
    """``batch`` with every column of its form present, one-dimensional record
    columns of one length, and for a RawBatch everything the core's raw-batch
    check (``_core.check_raw_batch``) asks; TypeError/ValueError name what is
    wrong. A writer storing ``states="raw"`` takes only RawBatch."""
    if states == "raw":
        if not isinstance(batch, RawBatch):
            raise TypeError(
                "write: a raw-state writer takes a RawBatch (Cursor.read_raw), got "
                f"{type(batch).__name__}"
            )
    elif not isinstance(batch, (RawBatch, DecodedBatch)):
        raise TypeError(
            f"write: expected a RawBatch or an DecodedBatch, got {type(batch).__name__}"
        )
    if isinstance(batch, RawBatch):
        try:
            _core.check_raw_batch(batch)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"write: {exc}") from None
    # The source columns are Python's own; a decoded batch's record columns too.
    row_columns = SOURCE_COLUMNS if isinstance(batch, RawBatch) else ROW_COLUMNS
    n = len(batch.sequence)
    for name in row_columns:
        column = getattr(batch, name, None)
        if not isinstance(column, np.ndarray) or column.ndim != 1:
            raise ValueError(f"write: column {name!r} must be a one-dimensional numpy array")
        if len(column) != n:
            raise ValueError(f"write: column {name!r} has {len(column)} rows, 'sequence' has {n}")
    if isinstance(batch, DecodedBatch):
        for name in DECODED_COLUMNS:
            column = getattr(batch, name, None)
            if not isinstance(column, np.ndarray) or len(column) != n:
                raise ValueError(
                    f"write: decoded column {name!r} must hold one entry per row ({n})"
                )
        if batch.state.ndim != 4 or batch.state.shape[1] != OBSERVATION_CHANNELS:
            raise ValueError(
                f"write: 'state' must be (n, 9, height, width), got shape {batch.state.shape}"
            )
    return batch


def board_shape(batch: RawBatch | DecodedBatch) -> tuple[int, int]:
    if isinstance(batch, RawBatch):
        return int(batch.state_kind.shape[1]), int(batch.state_kind.shape[2])
    return int(batch.state.shape[2]), int(batch.state.shape[3])


class Scratch:
    """Reusable memory for the state tables of chunks that are encoded at once and
    then dropped (fresh large arrays cost a page fault per 4 KiB)."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, key: str, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        buffer = self._buffers.get(key)
        if buffer is None or buffer.nbytes < size:
            buffer = self._buffers[key] = np.empty(size + size // 4, dtype=np.uint8)
        return buffer[:size].view(dtype).reshape(shape)


def chunk_of(rows: RawBatch | DecodedBatch, joined: bool, scratch: Scratch | None = None):
    """One chunk as a format encodes it: with ``joined``, a RawBatch's state table
    made compact and sorted (``compact_states``, its tables in ``scratch`` memory
    when given: valid until the next chunk); otherwise the rows as they are."""
    if joined and isinstance(rows, RawBatch):
        return compact_states(rows, scratch=scratch)
    return rows


class ChunkBuffer:
    """Rows waiting to be encoded as one chunk, copied on arrival into memory that
    is reused from chunk to chunk (a RawBatch keeps only the states its rows use).

    Holding the batches as written instead would keep each one's whole state table
    alive until its chunk is encoded, and freeing thousands of them at once leaves
    the C heap so fragmented that a long-running process grows with every chunk.
    ``front`` views the buffered rows without copying them: valid until the next
    ``append`` or ``drop``."""

    def __init__(self) -> None:
        self._columns: dict[str, np.ndarray] = {}  # per-row columns, capacity rows each
        self._tables: dict[str, np.ndarray] = {}  # RawBatch state tables, capacity states each
        self._form: type | None = None
        self.rows = 0
        self._states = 0

    def append(self, batch: RawBatch | DecodedBatch) -> None:
        if self.rows == 0:
            self._form, self._states = type(batch), 0
        n = len(batch)
        if isinstance(batch, RawBatch):
            refs = np.concatenate([batch.state_index, batch.next_state_index])
            marked = np.zeros(len(batch.state_kind), dtype=bool)
            marked[refs] = True
            used = np.flatnonzero(marked)
            index = (np.cumsum(marked, dtype=np.int32) - 1)[
                refs
            ]  # each ref's place among the used states
            for name in STATE_TABLES:
                table = getattr(batch, name)
                target = _reserve(self._tables, name, self._states + len(used), table)
                np.take(table, used, axis=0, out=target[self._states : self._states + len(used)])
            index += np.int32(self._states)
            self._states += len(used)
            columns = {name: getattr(batch, name) for name in ROW_COLUMNS}
            columns.update(state_index=index[:n], next_state_index=index[n:])
        else:
            columns = {name: getattr(batch, name) for name in DecodedBatch.row_fields()}
        for name, column in columns.items():
            _reserve(self._columns, name, self.rows + n, column)[self.rows : self.rows + n] = column
        self.rows += n

    def front(self, limit: int) -> RawBatch | DecodedBatch:
        """The first ``min(limit, rows)`` rows."""
        k = min(limit, self.rows)
        assert self._form is not None  # rows were appended
        columns = {name: array[:k] for name, array in self._columns.items()}
        if self._form is RawBatch:
            columns.update({name: array[: self._states] for name, array in self._tables.items()})
        return self._form(**columns, next_sequence=int(columns["sequence"][k - 1]) + 1)

    def drop(self, k: int) -> None:
        """Forgets the first ``k`` rows (the states stay until every row is gone)."""
        left = self.rows - k
        for array in self._columns.values():
            array[:left] = array[k : self.rows]
        self.rows = left


def _reserve(arrays: dict, name: str, size: int, like: np.ndarray) -> np.ndarray:
    """``arrays[name]``, grown (doubling, keeping its contents) to hold ``size``
    entries shaped and typed like ``like``'s."""
    array = arrays.get(name)
    if (
        array is None
        or len(array) < size
        or array.shape[1:] != like.shape[1:]
        or array.dtype != like.dtype
    ):
        grown = np.empty(
            (max(size, 2 * len(array) if array is not None else size), *like.shape[1:]), like.dtype
        )
        if array is not None and array.shape[1:] == like.shape[1:] and array.dtype == like.dtype:
            grown[: len(array)] = array
        array = arrays[name] = grown
    return array


class BatchQueue:
    """Rows waiting to be encoded, kept as the batches written: for formats that
    encode what is written at once, so at most a batch or two wait."""

    def __init__(self) -> None:
        self._batches: deque = deque()
        self.rows = 0

    def append(self, batch: RawBatch | DecodedBatch) -> None:
        self._batches.append(batch)
        self.rows += len(batch)

    def front(self, limit: int) -> RawBatch | DecodedBatch:
        """Up to ``limit`` rows from the first batch."""
        first = self._batches[0]
        return first if len(first) <= limit else first.take(slice(0, limit))

    def drop(self, k: int) -> None:
        first = self._batches[0]
        if k == len(first):
            self._batches.popleft()
        else:
            self._batches[0] = first.take(slice(k, len(first)))
        self.rows -= k


def join(batches: list, scratch: Scratch | None = None) -> RawBatch | DecodedBatch:
    """One batch of the rows of ``batches`` (all of one form) in order; for RawBatch
    the state table is compact and sorted (see ``compact_states``)."""
    if isinstance(batches[0], RawBatch):
        return compact_states(*batches, scratch=scratch)
    return DecodedBatch.concat(batches)


def record_columns(parts: Sequence) -> dict:
    """The record columns of ``parts`` joined."""
    if len(parts) == 1:
        return {name: getattr(parts[0], name) for name in ROW_COLUMNS}
    return {name: np.concatenate([getattr(p, name) for p in parts]) for name in ROW_COLUMNS}


def compact_states(*batches: RawBatch, scratch: Scratch | None = None) -> RawBatch:
    """The rows of ``batches`` in order with one state table holding only the states
    they use, each once: the states first used by each batch, sorted by game and
    tick, batch after batch. Consecutive ticks of a game differ little, so sorted
    tables compress several times better and faster.

    A game state is identified by ``(game_id, tick)`` (the state of row r is the game
    at ``tick[r]``, its next state the game at ``tick[r] + 1``); copies of one state
    (batches read one after another both hold the states at their boundary) are
    merged after checking that their contents are equal, so distinct contents are
    never merged. The boards are copied once, straight from the batches' tables.
    """
    columns = record_columns(batches)
    n = len(columns["sequence"])
    sizes = [len(b.state_kind) for b in batches]
    starts = np.cumsum([0, *sizes])
    refs = np.empty((n, 2), dtype=np.int64)
    refs[:, 0] = np.concatenate([b.state_index + o for b, o in zip(batches, starts, strict=False)])
    refs[:, 1] = np.concatenate(
        [b.next_state_index + o for b, o in zip(batches, starts, strict=False)]
    )
    used, first_use, ref_to_used = np.unique(
        refs.reshape(-1), return_index=True, return_inverse=True
    )
    # The (game, tick) identity of each used state, from the row that first uses it.
    first_row = first_use // 2
    game = columns["game_id"][first_row]
    tick = columns["tick"][first_row].astype(np.int64) + (first_use % 2)
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
            a = _rows(batches, starts, name, used[by_key[copies]])
            b = _rows(batches, starts, name, used[by_key[leader[copies]]])
            equal &= (a == b).reshape(len(copies), -1).all(axis=1)
        merged[copies[equal]] = True
    # The kept states ordered by (batch, game, tick); a merged copy takes the index
    # of the copy it joined.
    kept = by_key[~merged]
    batch_of = np.searchsorted(starts, used[kept], side="right") - 1
    order = np.lexsort((tick[kept], game[kept], batch_of))
    position = np.empty(len(kept), dtype=np.int64)
    position[order] = np.arange(len(kept))
    index_in_key_order = np.cumsum(~merged) - 1
    index_in_key_order[merged] = index_in_key_order[leader[merged]]
    new_index = np.empty(len(used), dtype=np.int32)
    new_index[by_key] = position[index_in_key_order]
    new_refs = new_index[ref_to_used.reshape(-1)].reshape(n, 2)
    keep = used[kept[order]]
    unchanged = (
        len(batches) == 1 and len(keep) == sizes[0] and bool((keep == np.arange(len(keep))).all())
    )
    tables = {}
    for name in STATE_TABLES:
        if unchanged:
            tables[name] = getattr(batches[0], name)
            continue
        first = getattr(batches[0], name)
        shape = (len(keep), *first.shape[1:])
        out = (
            scratch.array(name, shape, first.dtype)
            if scratch is not None
            else np.empty(shape, first.dtype)
        )
        bounds = np.searchsorted(keep, starts)  # keep is ordered batch by batch
        for i, batch in enumerate(batches):
            a, b = bounds[i], bounds[i + 1]
            if b > a:
                np.take(
                    getattr(batch, name), keep[a:b] - starts[i], axis=0, out=out[a:b], mode="clip"
                )
        tables[name] = out
    return RawBatch(
        **columns,
        state_index=np.ascontiguousarray(new_refs[:, 0]),
        next_state_index=np.ascontiguousarray(new_refs[:, 1]),
        **tables,
        missed=sum(b.missed for b in batches),
        next_sequence=batches[-1].next_sequence,
    )


def _rows(batches: Sequence, starts: np.ndarray, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the batches' ``name`` tables taken as one table."""
    first = getattr(batches[0], name)
    out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    source = np.searchsorted(starts, rows, side="right") - 1
    for i, batch in enumerate(batches):
        picked = np.flatnonzero(source == i)
        if len(picked):
            out[picked] = getattr(batch, name)[rows[picked] - starts[i]]
    return out


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
        "game_ids": games,  # an array: the shard's summary keeps the union
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


def nbytes(batch: RawBatch | DecodedBatch) -> int:
    """Bytes the batch's arrays hold in memory."""
    return sum(v.nbytes for v in vars(batch).values() if isinstance(v, np.ndarray))


def new_rows(batch, taken_through: int):
    """The rows of ``batch`` with a sequence number above ``taken_through``
    (without copying the state table when they are the batch's last rows, the
    usual case: sequence numbers increase)."""
    keep = batch.sequence > taken_through
    if keep.all():
        return batch
    first = int(np.argmax(keep)) if keep.any() else len(batch)
    if keep[first:].all():
        return batch.take(slice(first, len(batch)))
    return batch.select(keep)
