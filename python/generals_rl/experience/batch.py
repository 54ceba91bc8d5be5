"""Batches of experiences as numpy arrays, in their two forms: raw (the game
states as stored: tile kind, owner, army; for transport and storage) and
decoded (observation tensors and action masks computed from them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import _core

if TYPE_CHECKING:
    from typing_extensions import Self


def _columns(specs: tuple) -> dict[str, type]:
    """name -> numpy scalar type of a column list of the schema (``_core``)."""
    return {name: np.dtype(dtype).type for name, dtype, _shape in specs}


# The schema is defined once, in C++ (cpp/core/schema.hpp), and read from _core.
# Columns shared by both forms (one value per experience): name -> dtype.
RECORD_COLUMNS = _columns(_core.RECORD_COLUMNS)
# Where an imported experience came from: its replay's id (ASCII, at most
# REPLAY_ID_BYTES) and the acting player's stars. Self-play and older stored
# experiences hold SOURCE_DEFAULTS. Stored with every format, not in the buffer.
REPLAY_ID_BYTES = 16
SOURCE_COLUMNS: dict[str, Any] = {
    "replay_id": np.dtype(f"S{REPLAY_ID_BYTES}"),
    "stars": np.int32,
}
SOURCE_DEFAULTS = {"replay_id": b"", "stars": -1}
# Every per-row column a batch carries.
ROW_COLUMNS = {**RECORD_COLUMNS, **SOURCE_COLUMNS}
# Raw form only: each row's state and next_state as rows of the state tables.
STATE_COLUMNS = _columns(_core.STATE_INDEX_COLUMNS)
# Raw form only, (states, H, W) each: kind (TILE_* of _core), owner (-1 neutral,
# else the player) and army of every tile of each distinct state.
STATE_TABLES = _columns(_core.STATE_TABLES)
# Decoded form only: observation tensors (n, OBSERVATION_CHANNELS, H, W) of each
# row's state and next_state, and the action mask (n, H*W*4) of its state.
DECODED_COLUMNS = _columns(_core.DECODED_COLUMNS)
OBSERVATION_CHANNELS = len(_core.OBSERVATION_CHANNELS)


_GAME_ID = re.compile(r"[0-9a-fA-F]{16}")


def format_game_id(game_id: int) -> str:
    """The string form of a game id: 16 lowercase hex digits."""
    return f"{int(game_id):016x}"


def parse_game_id(text: str) -> int:
    """A game id from its string form; ValueError names a malformed id."""
    if not isinstance(text, str) or _GAME_ID.fullmatch(text) is None:
        raise ValueError(f"game_id: {text!r} is not 16 hex digits")
    return int(text, 16)


@dataclass(kw_only=True)
class _Records:
    """The record columns (one value per row) shared by both batch forms.
    ``missed`` counts experiences lost to overwriting before this batch;
    ``next_sequence`` is where reading resumes. A consumer's batches also name
    their ``source`` (the stream's key) and the ``buffer_id`` its sequence
    numbers belong to."""

    sequence: np.ndarray
    game_id: np.ndarray
    player_id: np.ndarray
    tick: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    legal: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    replay_id: np.ndarray | None = None  # SOURCE_DEFAULTS when not given
    stars: np.ndarray | None = None
    missed: int = 0
    next_sequence: int = 0
    # Not fields (no annotation): storage, concat and select leave them out.
    source = None  # the consumer stream (server key) the batch came from
    buffer_id = None  # the server buffer its sequence numbers belong to

    def __post_init__(self) -> None:
        for name, dtype in SOURCE_COLUMNS.items():
            if getattr(self, name) is None:
                setattr(self, name, np.full(len(self.sequence), SOURCE_DEFAULTS[name], dtype=dtype))

    def __len__(self) -> int:
        return len(self.sequence)

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @classmethod
    def from_core(cls, batch: _core.RawBatch | _core.DecodedBatch, **columns: Any) -> Self:
        """The batch a C++ call returned, its columns viewing the C++ batch's memory
        (no copy; they keep it alive), with ``columns`` added (the source columns)."""
        # Each attribute read once: every read makes a new view.
        names = [f.name for f in fields(cls) if f.name not in columns]
        read = {name: getattr(batch, name, None) for name in names}
        return cls(**{name: value for name, value in read.items() if value is not None}, **columns)

    # Fields that are not one value per row: kept whole when rows are taken.
    _BATCH_FIELDS: ClassVar[tuple[str, ...]] = ("missed", "next_sequence")

    @classmethod
    def row_fields(cls) -> list[str]:
        """The fields holding one entry per row, in order."""
        return [f.name for f in fields(cls) if f.name not in cls._BATCH_FIELDS]

    def take(self, rows) -> Self:
        """Rows ``rows`` (a slice, boolean mask or index array) as a batch of this
        form; whole-batch fields (a raw batch's state tables) are shared, so a
        slice copies nothing."""
        columns: dict[str, Any] = {}
        for name in self.row_fields():
            column = getattr(self, name)
            columns[name] = None if column is None else column[rows]
        shared = {name: getattr(self, name) for name in self._BATCH_FIELDS}
        return type(self)(**columns, **shared)

    def select(self, rows) -> Self:
        """The rows picked by a boolean mask or index array."""
        return self.take(rows)

    @classmethod
    def concat(cls, batches: list[Self]) -> Self:
        """One batch holding the rows of all, in order: a column missing from any
        part is left out, and mixed dtypes (16- and 32-bit armies) widen."""
        if not batches:
            raise ValueError("batches: need at least one batch to concatenate")
        if len(batches) == 1:
            return batches[0]
        columns: dict[str, Any] = {}
        for name in cls.row_fields():
            parts = [getattr(b, name) for b in batches]
            columns[name] = None if any(p is None for p in parts) else np.concatenate(parts)
        return cls(
            **columns,
            missed=sum(b.missed for b in batches),
            next_sequence=batches[-1].next_sequence,
        )

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(kw_only=True)
class DecodedBatch(_Records):
    """Experiences with decoded states: ``state``/``next_state`` float32
    ``(n, 9, H, W)``, ``action_mask`` bool ``(n, H*W*4)`` (of ``state``), and the
    record columns."""

    state: np.ndarray
    next_state: np.ndarray
    action_mask: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


@dataclass(kw_only=True)
class RawBatch(_Records):
    """Experiences with compact states: the record columns plus ``state_index`` and
    ``next_state_index`` into the state tables ``state_kind``, ``state_owner`` and
    ``state_army`` (each ``(states, H, W)``), where each distinct game state of the
    batch appears once."""

    state_index: np.ndarray
    next_state_index: np.ndarray
    state_kind: np.ndarray
    state_owner: np.ndarray
    state_army: np.ndarray

    _BATCH_FIELDS: ClassVar[tuple[str, ...]] = (*_Records._BATCH_FIELDS, *STATE_TABLES)

    @property
    def height(self) -> int:
        return self.state_kind.shape[1]

    @property
    def width(self) -> int:
        return self.state_kind.shape[2]

    def decode(self, army_scaling: str = "linear", army_scale: float = 1000.0) -> DecodedBatch:
        """The decoded batch (observation tensors and masks computed in C++)."""
        out = _core.decode_batch(self, self.height, self.width, army_scaling, army_scale)
        return self._decoded(out, {name: getattr(self, name) for name in SOURCE_COLUMNS})

    def _decoded(self, out: _core.DecodedBatch, columns: dict) -> DecodedBatch:
        return DecodedBatch.from_core(out, **columns)

    def select(self, rows: np.ndarray) -> RawBatch:
        """The rows picked by a boolean mask or index array, keeping only their states."""
        rows = np.arange(len(self))[rows]
        used, inverse = np.unique(
            np.concatenate([self.state_index[rows], self.next_state_index[rows]]),
            return_inverse=True,
        )
        n = len(rows)
        columns = {name: getattr(self, name)[rows] for name in ROW_COLUMNS}
        return RawBatch(
            **columns,
            state_index=inverse[:n].astype(np.int32),
            next_state_index=inverse[n:].astype(np.int32),
            state_kind=self.state_kind[used],
            state_owner=self.state_owner[used],
            state_army=self.state_army[used],
            missed=self.missed,
            next_sequence=self.next_sequence,
        )

    @classmethod
    def concat(cls, batches: list[RawBatch]) -> RawBatch:
        """One batch holding the rows of all, in order, with their state tables."""
        if not batches:
            raise ValueError("batches: need at least one batch to concatenate")
        offsets = np.cumsum([0] + [len(b.state_kind) for b in batches[:-1]])
        columns = {
            name: np.concatenate([getattr(b, name) for b in batches]) for name in ROW_COLUMNS
        }
        return RawBatch(
            **columns,
            state_index=np.concatenate(
                [b.state_index + o for b, o in zip(batches, offsets, strict=False)]
            ).astype(np.int32),
            next_state_index=np.concatenate(
                [b.next_state_index + o for b, o in zip(batches, offsets, strict=False)]
            ).astype(np.int32),
            state_kind=np.concatenate([b.state_kind for b in batches]),
            state_owner=np.concatenate([b.state_owner for b in batches]),
            state_army=np.concatenate([b.state_army for b in batches]),
            missed=sum(b.missed for b in batches),
            next_sequence=batches[-1].next_sequence,
        )


# The name of DecodedBatch before 0.2 (the protocol has an ExperienceBatch message).
ExperienceBatch = DecodedBatch


@dataclass(kw_only=True)
class _SampleColumns:
    """What sampling adds on request (None otherwise): the importance weights of a
    prioritized sample, and n-step returns: the discounted reward over up to n
    experiences of the same player and game, how many it spans, and whether the last
    one terminated (its next state, to bootstrap from, is ``nstep_next_state``)."""

    weight: np.ndarray | None = None
    nstep_reward: np.ndarray | None = None
    nstep_length: np.ndarray | None = None
    nstep_done: np.ndarray | None = None


@dataclass(kw_only=True)
class SampledBatch(DecodedBatch, _SampleColumns):
    """A sampled ``DecodedBatch``; ``nstep_next_state`` float32 ``(n, 9, H, W)``."""

    nstep_next_state: np.ndarray | None = None


@dataclass(kw_only=True)
class SampledRawBatch(RawBatch, _SampleColumns):
    """A sampled ``RawBatch``; ``nstep_next_state_index`` rows of the state tables."""

    nstep_next_state_index: np.ndarray | None = None

    def _decoded(self, out: _core.DecodedBatch, columns: dict) -> SampledBatch:
        extra = {f.name: getattr(self, f.name) for f in fields(_SampleColumns)}
        return SampledBatch.from_core(out, **columns, **extra)
