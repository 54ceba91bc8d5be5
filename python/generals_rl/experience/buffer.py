"""The experience buffer: a bounded ring in C++ with cursors, sampling and
versioned, checksummed save files.

Longer than 400 lines: the buffer's Python face (cursors, sampling options,
save and load with their checks) wraps one C++ object and stays with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _core
from .._arguments import whole_number
from ..observations import army_dtype
from .batch import (
    RECORD_COLUMNS,
    ROW_COLUMNS,
    STATE_COLUMNS,
    STATE_TABLES,
    DecodedBatch,
    RawBatch,
    SampledBatch,
    SampledRawBatch,
)
from .compact import CompactBatch, IndexedViews

if TYPE_CHECKING:
    from typing_extensions import Self

BufferFullError = _core.BufferFullError

_MAGIC = b"GRLEXPB\n"
_FORMAT_VERSION = 3  # 3 adds the priorities (optional column "priority")
_READABLE_VERSIONS = (2, 3)
_PRIORITY_COLUMN = "priority"
_HEADER = struct.Struct("<8sII")  # magic, format version, header length
_DIGEST_SIZE = 32  # the file ends with the BLAKE2b digest of everything before it
_NO_END = 2**64 - 1  # a read without an end


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).digest()


class BufferFileError(ValueError):
    """A saved buffer file that is damaged, foreign or of an unsupported version."""


class Cursor:
    """Reads every experience of the buffer in sequence order (optionally
    filtered), like a log. Create with ``ExperienceBuffer.cursor``."""

    def __init__(self, core: _core.Cursor, army_scale: float = 1000.0) -> None:
        self._cursor = core
        self._army_scale = army_scale  # the buffer's: whether compact reads need wide armies

    def read(self, max_items: int = 1024, timeout: float = 0.0) -> DecodedBatch:
        """Up to ``max_items`` matching experiences with decoded states. Returns what is
        there at once; when nothing is, waits up to ``timeout`` seconds for the first
        (0: no waiting)."""
        return DecodedBatch.from_core(
            self._cursor.read_decoded(_positive(max_items, "max_items"), timeout)
        )

    def read_raw(
        self, max_items: int = 1024, timeout: float = 0.0, *, end: int | None = None
    ) -> RawBatch:
        """As ``read`` but with compact states (no float decoding); with ``end``, stops
        before that sequence number (the cursor then rests there)."""
        return RawBatch.from_core(
            self._cursor.read_raw(_positive(max_items, "max_items"), timeout, True, _end(end))
        )

    def read_compact(
        self,
        max_items: int = 1024,
        timeout: float = 0.0,
        *,
        obstacles: bool = False,
        indexed: bool = False,
        end: int | None = None,
    ) -> CompactBatch:
        """As ``read`` but with compact views (``CompactBatch``), its ``expand()`` the
        decoded batch bit for bit; ``end`` as for ``read_raw``. ``indexed``: in the
        indexed form (at most ``_core.MAX_VIEW_ROWS`` rows a read), each distinct
        (state, player) view made once in C++ as its state is read, armies uint8 when
        every army of those states fits (else as ``observations.army_dtype``), the
        action masks made from the views when asked for."""
        if not indexed:
            return CompactBatch.from_raw(
                self.read_raw(max_items, timeout, end=end),
                army_scale=self._army_scale,
                obstacles=obstacles,
            )
        rows, tiles, armies, state_view, next_state_view = self._cursor.read_views(
            _positive(max_items, "max_items"),
            timeout,
            _end(end),
            obstacles,
            army_dtype(self._army_scale).itemsize,
        )
        records = RawBatch.from_core(rows)
        return CompactBatch.from_views(
            IndexedViews(tiles, armies, state_view, next_state_view),
            **{name: getattr(records, name) for name in ROW_COLUMNS},
            missed=records.missed,
            next_sequence=records.next_sequence,
        )

    def read_records(self, max_items: int = 1024, timeout: float = 0.0) -> RawBatch:
        """As ``read_raw`` but without the boards: the record columns only (state
        indices are -1 and the state tables empty), for readers that count or filter."""
        return RawBatch.from_core(
            self._cursor.read_raw(_positive(max_items, "max_items"), timeout, False)
        )

    def close(self) -> None:
        """Stops holding producers back (block policy)."""
        self._cursor.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def position(self) -> int:
        """The next sequence number this cursor reads."""
        return self._cursor.position

    @property
    def lag(self) -> int:
        """Experiences appended that this cursor has not read yet."""
        return self._cursor.lag

    @property
    def total_missed(self) -> int:
        return self._cursor.total_missed

    @property
    def closed(self) -> bool:
        return self._cursor.closed


def _end(end: int | None) -> int:
    """A read's end for the core: a sequence number, or none (the largest)."""
    return _NO_END if end is None else whole_number(end, "end", 0, _NO_END)


def _positive(value: int, name: str) -> int:
    return whole_number(value, name, 1)


class ExperienceBuffer:
    """A bounded ring of experiences for ``height x width`` boards.

    ``policy="block"`` is lossless: producers wait while an open cursor would be
    overrun. ``policy="overwrite"`` replaces the oldest entries; cursors that fell
    behind are told how many they missed. Game states are stored once per game tick
    (``state_capacity`` of them, by default ``capacity // 2 + 4096``); observations
    are decoded on read with ``army_scaling``/``army_scale``.
    """

    def __init__(
        self,
        height: int = 20,
        width: int = 20,
        capacity: int = 1_000_000,
        policy: str = "block",
        state_capacity: int | None = None,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
    ) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        if state_capacity is not None and int(state_capacity) < 2:
            raise ValueError(f"state_capacity: must be at least 2, got {state_capacity}")
        self._buffer = _core.ExperienceBuffer(
            height,
            width,
            int(capacity),
            policy,
            int(state_capacity or 0),
            army_scaling,
            float(army_scale),
        )

    height = property(lambda self: self._buffer.height)
    width = property(lambda self: self._buffer.width)
    capacity = property(lambda self: self._buffer.capacity)
    state_capacity = property(lambda self: self._buffer.state_capacity)
    policy = property(lambda self: self._buffer.policy)
    army_scaling = property(lambda self: self._buffer.army_scaling)
    army_scale = property(lambda self: self._buffer.army_scale)
    head = property(lambda self: self._buffer.head, doc="The next sequence number to be appended.")
    oldest = property(lambda self: self._buffer.oldest, doc="The oldest resident sequence number.")

    def cursor(
        self,
        game_ids: Iterable[int] | None = None,
        player_ids: Iterable[int] | None = None,
        min_tick: int = 0,
        start: str | int = "oldest",
    ) -> Cursor:
        """A cursor over experiences of the given games and players (default: all) at
        ticks >= ``min_tick``, starting at the ``"oldest"`` resident, the ``"newest"``
        (only what comes next) or a sequence number."""
        if isinstance(start, str):
            if start not in ("oldest", "newest"):
                raise ValueError(
                    f"start: expected 'oldest', 'newest' or a sequence number, got {start!r}"
                )
            kind, at = start, 0
        else:
            if int(start) < 0:
                raise ValueError(f"start: a sequence number must be >= 0, got {start}")
            kind, at = "at", int(start)
        # The C++ side checks every value's range, naming the argument.
        games = () if game_ids is None else game_ids
        players = () if player_ids is None else player_ids
        return Cursor(
            self._buffer.open_cursor(kind, at, games, players, min_tick), self._buffer.army_scale
        )

    def sample(
        self,
        count: int,
        seed: int | None = None,
        *,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        player_ids: Iterable[int] | None = None,
        n_step: int | None = None,
        gamma: float = 0.99,
        raw: bool = False,
    ) -> SampledBatch | SampledRawBatch:
        """``count`` experiences drawn (with replacement) from what is resident, of the
        given players (default: any): uniformly, or with ``prioritized=True`` with
        probability ``priority**alpha / sum(priority**alpha)`` and importance weights
        ``batch.weight = (N * P(i))**-beta`` divided by their maximum over the buffer.
        New experiences enter at the highest priority given so far (1.0 at first);
        ``batch.sequence`` identifies them to ``update_priorities``. Changing ``alpha``
        between calls recomputes every priority (O(capacity)).

        ``n_step=n`` adds n-step returns: ``nstep_reward`` sums ``gamma**k * reward``
        over up to ``n`` consecutive experiences of the same player in the same game,
        stopping after one that is terminated or truncated (or not resident);
        ``nstep_length`` is how many, ``nstep_done`` whether the last one terminated,
        ``nstep_next_state`` (``nstep_next_state_index`` raw) its next state, to
        bootstrap from with ``gamma**nstep_length``.

        ``raw=True`` returns a ``RawBatch`` (compact states) instead of decoding."""
        core_sample = self._buffer.sample_raw if raw else self._buffer.sample
        out = core_sample(
            _positive(count, "count"),
            _seed(seed),
            **_sample_options(prioritized, alpha, beta, player_ids, n_step, gamma),
        )
        return SampledRawBatch.from_core(out) if raw else SampledBatch.from_core(out)

    def sample_raw(self, count: int, seed: int | None = None, **options) -> SampledRawBatch:
        """``sample(..., raw=True)``."""
        batch = self.sample(count, seed, raw=True, **options)
        assert isinstance(batch, SampledRawBatch)
        return batch

    def sample_compact(
        self, count: int, seed: int | None = None, *, obstacles: bool = False, **options
    ) -> CompactBatch:
        """``sample`` with compact views (``CompactBatch``; ``options`` as ``sample``'s)."""
        raw = self.sample_raw(count, seed, **options)
        return CompactBatch.from_raw(raw, army_scale=self._buffer.army_scale, obstacles=obstacles)

    def update_priorities(self, sequences, priorities) -> int:
        """Sets the priorities of the experiences ``sequences`` (as sampled) in bulk, in
        C++. Experiences no longer resident are ignored; returns how many were.
        Priorities must be finite and >= 0 (0: never sampled)."""
        return self._buffer.update_priorities(sequences, priorities)

    def priorities(self, sequences) -> np.ndarray:
        """The current priorities of ``sequences`` (float32; -1 for those not resident,
        or all before prioritized sampling or updates were first used)."""
        return self._buffer.priorities(sequences)

    def record_steps_of(self, env: _core.VecEnv, timeout: float) -> None:
        """Records every step of the C++ ``env`` into this buffer (``VecEnv(buffer=...)``
        calls it); in block mode a step waits up to ``timeout`` seconds for room."""
        _core.set_buffer(env, self._buffer, timeout)

    def start_at(self, sequence: int) -> None:
        """Numbers the next experience ``sequence``: a fresh buffer only (nothing
        appended, no state stored)."""
        empty: dict[str, Any] = {
            name: np.empty(0, dtype) for name, dtype in {**RECORD_COLUMNS, **STATE_COLUMNS}.items()
        }
        empty.update(
            {
                name: np.empty((0, self.height, self.width), dtype)
                for name, dtype in STATE_TABLES.items()
            }
        )
        self._buffer.import_resident(RawBatch(**empty, next_sequence=sequence))

    def append_raw(self, batch: RawBatch) -> int:
        """Appends experiences from elsewhere (new sequence numbers); returns the first."""
        return self._buffer.append_raw(batch)

    def decode(self, batch: RawBatch) -> DecodedBatch:
        return batch.decode(self._buffer.army_scaling, self._buffer.army_scale)

    def stats(self) -> dict:
        """capacity, resident, bytes_used, bytes_per_experience, total_appended,
        total_overwritten, cursor_lag (one per open cursor) and state counts."""
        stats = self._buffer.stats()
        stats["bytes_per_experience"] = (
            stats["bytes_used"] / stats["resident"] if stats["resident"] else None
        )
        stats["priorities"] = self._buffer.priority_stats()
        return stats

    # ---- persistence --------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Writes the resident contents and sequence counters to ``path``
        (zstd-compressed, ending with a BLAKE2b checksum of the whole file), atomically."""
        import zstandard

        raw = self._buffer.export_resident()
        columns = {**RECORD_COLUMNS, **STATE_COLUMNS, **STATE_TABLES}
        values = {name: getattr(raw, name) for name in columns}
        prioritized = self._buffer.priority_stats()
        if prioritized["enabled"]:  # -1 for experiences outside the trees
            values[_PRIORITY_COLUMN] = self._buffer.priorities(raw.sequence)
            columns[_PRIORITY_COLUMN] = np.float32
        arrays: list[np.ndarray] = [
            np.ascontiguousarray(values[name], dtype=dtype) for name, dtype in columns.items()
        ]
        payload = zstandard.ZstdCompressor(level=3).compress(b"".join(a.tobytes() for a in arrays))
        header = {
            "height": self.height,
            "width": self.width,
            "capacity": self.capacity,
            "state_capacity": self.state_capacity,
            "policy": self.policy,
            "army_scaling": self._buffer.army_scaling,
            "army_scale": self._buffer.army_scale,
            "next_sequence": raw.next_sequence,
            "max_priority": prioritized["max_priority"] if prioritized["enabled"] else None,
            "columns": [
                [name, np.dtype(dtype).str, list(a.shape)]
                for (name, dtype), a in zip(columns.items(), arrays, strict=False)
            ],
        }
        header_bytes = json.dumps(header).encode()
        data = _HEADER.pack(_MAGIC, _FORMAT_VERSION, len(header_bytes)) + header_bytes + payload
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.write(_digest(data))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, capacity: int | None = None) -> ExperienceBuffer:
        """A buffer holding what ``save`` wrote; sequence numbers continue from there.
        Raises ``BufferFileError`` for a damaged, foreign or unsupported file."""
        import zstandard

        data = Path(path).read_bytes()
        if len(data) < _HEADER.size or data[:8] != _MAGIC:
            raise BufferFileError(f"{path}: not a generals-rl experience buffer file")
        _, version, header_len = _HEADER.unpack_from(data)
        if version not in _READABLE_VERSIONS:
            raise BufferFileError(
                f"{path}: buffer file format version {version} is not supported (expected "
                f"{_FORMAT_VERSION})"
            )
        if (
            len(data) < _HEADER.size + _DIGEST_SIZE
            or _digest(data[:-_DIGEST_SIZE]) != data[-_DIGEST_SIZE:]
        ):
            raise BufferFileError(f"{path}: checksum mismatch, the file is damaged or truncated")
        try:
            header = json.loads(data[_HEADER.size : _HEADER.size + header_len])
            if not isinstance(header, dict):
                raise BufferFileError(f"{path}: the header is not an object")
            # The rings are allocated first: the buffer bounds its sizes (and the
            # machine's memory bounds the buffer); the columns must then fit them.
            buffer = cls(
                header["height"],
                header["width"],
                capacity or header["capacity"],
                header["policy"],
                header["state_capacity"],
                header["army_scaling"],
                header["army_scale"],
            )
            shapes = _column_shapes(header["columns"], buffer)
            expected = sum(
                int(np.prod(shape)) * np.dtype(dtype).itemsize for dtype, shape in shapes.values()
            )
            payload = data[_HEADER.size + header_len : -_DIGEST_SIZE]
            # Checked before inflating: the frame states its size, which must be the columns'.
            if zstandard.frame_content_size(payload) != expected:
                raise BufferFileError(f"{path}: payload size does not match its columns")
            body = zstandard.ZstdDecompressor().decompress(payload)
            if len(body) != expected:
                raise BufferFileError(f"{path}: payload size does not match its columns")
            raw, offset = {}, 0
            for name, (dtype, shape) in shapes.items():
                count = int(np.prod(shape))
                raw[name] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(
                    shape
                )
                offset += count * np.dtype(dtype).itemsize
            priority = raw.pop(_PRIORITY_COLUMN, None)
            buffer._buffer.import_resident(RawBatch(**raw, next_sequence=header["next_sequence"]))
            if priority is not None:
                if priority.shape != raw["sequence"].shape:
                    raise BufferFileError(f"{path}: the priorities do not match the experiences")
                kept = priority >= 0  # -1: outside the trees when saved
                buffer._buffer.restore_priorities(
                    raw["sequence"][kept], priority[kept], float(header["max_priority"])
                )
        except BufferFileError:
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            RecursionError,
            zstandard.ZstdError,
        ) as exc:
            # ValueError covers JSON errors and the C++ checks of sizes and contents.
            raise BufferFileError(f"{path}: malformed buffer file ({exc})") from None
        return buffer


def _column_shapes(columns, buffer: ExperienceBuffer) -> dict:
    """name -> (dtype, shape) of a saved file's columns: exactly the columns
    ``save`` writes, records at most ``capacity`` rows and state tables at most
    ``state_capacity`` boards of the buffer's size. ValueError otherwise."""
    expected = {**RECORD_COLUMNS, **STATE_COLUMNS, **STATE_TABLES}
    if not (
        isinstance(columns, list) and all(isinstance(c, list) and len(c) == 3 for c in columns)
    ):
        raise ValueError("columns: expected a list of [name, dtype, shape]")
    names = [c[0] for c in columns]
    if names == [*expected, _PRIORITY_COLUMN]:
        expected[_PRIORITY_COLUMN] = np.float32
    if names != list(expected):
        raise ValueError(
            f"columns: expected {list(expected)} (and optionally {_PRIORITY_COLUMN!r})"
        )
    shapes = {}
    for name, dtype, shape in columns:
        # Compared as text: numpy parses any other dtype string, and some of them as Python code.
        if dtype != np.dtype(expected[name]).str:
            raise ValueError(
                f"column {name}: dtype {dtype!r}, expected {np.dtype(expected[name]).str!r}"
            )
        if name in STATE_TABLES:
            limit = [buffer.state_capacity, buffer.height, buffer.width]
            fits = f"state_capacity {limit[0]} boards of {limit[1]}x{limit[2]}"
        else:
            limit = [buffer.capacity]
            fits = f"capacity {limit[0]} rows"
        if not (
            isinstance(shape, list)
            and len(shape) == len(limit)
            and all(
                type(side) is int and 0 <= side <= most
                for side, most in zip(shape, limit, strict=False)
            )
            and shape[1:] == limit[1:]
        ):
            raise ValueError(f"column {name}: shape {shape!r} does not fit the buffer's {fits}")
        shapes[name] = (np.dtype(expected[name]), tuple(shape))
    return shapes


def _sample_options(prioritized, alpha, beta, player_ids, n_step, gamma) -> dict:
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(float(value)) and float(value) >= 0):
            raise ValueError(f"{name}: must be finite and >= 0, got {value}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma: must be in [0, 1], got {gamma}")
    if n_step is not None and (int(n_step) != n_step or not 1 <= int(n_step) <= 1000):
        raise ValueError(f"n_step: must be an integer in 1..1000, got {n_step}")
    players = [] if player_ids is None else [int(p) for p in player_ids]
    bad = [p for p in players if not 0 <= p < _core.MAX_PLAYERS]
    if bad:
        raise ValueError(f"player_ids: {bad} are not players (0..{_core.MAX_PLAYERS - 1})")
    return {
        "prioritized": bool(prioritized),
        "alpha": float(alpha),
        "beta": float(beta),
        "player_ids": players,
        "n_step": int(n_step or 0),
        "gamma": float(gamma),
    }


def _seed(seed: int | None) -> int:
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    return int(seed) & 0xFFFFFFFFFFFFFFFF
