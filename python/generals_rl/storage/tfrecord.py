"""TFRecord shards: one ``tf.train.Example`` per experience, standard framing
(uint64 length, masked CRC32C of the length, the record, masked CRC32C of the
record), optionally GZIP-compressed, with a companion ``<shard>.index`` file listing
``offset length`` of every record (the ``tfrecord`` package's index format; offsets
count in the uncompressed stream).

Features of every record (int64 unless said otherwise):

* ``sequence``, ``game_id`` (the uint64 id's bit pattern as int64), ``player_id``,
  ``tick``, ``action``, ``legal``, ``terminated``, ``truncated`` (0/1), ``reward``
  (float);
* ``states="raw"`` (default): ``state_shape`` ``[H, W]`` and six bytes
  features ``state_kind`` (uint8), ``state_owner`` (int16), ``state_army`` (int32),
  ``next_state_kind``, ``next_state_owner``, ``next_state_army``, each the raw
  little-endian ``(H, W)`` board (``tf.io.decode_raw`` then reshape); with
  ``action_mask=True`` also ``action_mask`` bytes (uint8 0/1, ``H*W*4``);
* ``states="decoded"``: ``state_shape`` ``[9, H, W]``, ``state`` and
  ``next_state`` float lists (9*H*W, channels first) and ``action_mask`` int64
  list (H*W*4 of 0/1);
* ``states="compact_views"``: the acting player's compact views
  (``generals_rl.observations``, made with ``obstacles=True``, so they expand
  to either observation option): ``state_shape`` ``[H, W]``, ``state_view`` and
  ``next_state_view`` int64 lists of H*W values ``army << 5 | tile code``
  (row-major; varints, so a fogged tile or a small army is one byte) and
  ``action_mask`` bytes (the packed mask of the state, ``(H*W*4 + 7) // 8``).
  About 1.4 KB a record on 20x20 1v1 (bench/bench_storage.py);
  ``generals_rl.tensorflow.parse_compact_examples`` expands them to the float
  observations inside ``tf.data``.

Records are framed in C++ (``_core.TFRecordEncoder``), a block at a time and
without the GIL: every part of an Example that does not depend on the values is
precomputed, boards are copied straight from the state tables, and the CRC32Cs use
the CPU's CRC instruction when it has one.

Longer than 400 lines: the record layout, its writer and its reader are kept
together so that they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _core
from .._core import TFRecordEncoder, tfrecord_index
from .._varint import read_varint
from ..experience.batch import (
    RECORD_COLUMNS,
    REPLAY_ID_BYTES,
    SOURCE_COLUMNS,
    STATE_TABLES,
    DecodedBatch,
    RawBatch,
)
from ..experience.compact import CompactBatch, view_sources
from ..observations import TILE_CODES
from ._batches import OBSERVATION_CHANNELS, STATE_FORMS, compact_states
from ._options import format_and_writer_options
from .checksum import ChecksumWriter, masked_crc32c
from .errors import StorageError
from .formats import ShardEncoder, ShardFormat, register_format
from .local import LocalStore
from .shard_writer import ShardWriter

_VARINT_FEATURES = (
    "sequence",
    "game_id",
    "player_id",
    "tick",
    "action",
    "legal",
    "terminated",
    "truncated",
    "stars",
)
_BLOCK = 512  # records framed at a time: a few MB, so they are still cached when written
# Compact-view records are about 1.4 KB and need no intermediate arrays: a
# larger block costs less Python per record.
_COMPACT_BLOCK = 2048
# The forms records hold their states in: a shard form, or the compact views.
RECORD_STATE_FORMS = (*STATE_FORMS, "compact_views")
# A compact view value: army << VIEW_ARMY_SHIFT | tile code.
VIEW_ARMY_SHIFT = _core.VIEW_ARMY_SHIFT


def _packed_varints(values) -> bytes:
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


# ---- writing -------------------------------------------------------------------------


class _TFRecordEncoder(ShardEncoder):
    def __init__(self, fmt: TFRecordFormat, out: ChecksumWriter, height: int, width: int) -> None:
        self.out = out
        self.fmt = fmt
        tiles = height * width
        shape = (
            [OBSERVATION_CHANNELS, height, width] if fmt.states == "decoded" else [height, width]
        )
        self._shape = np.frombuffer(_packed_varints(shape), dtype=np.uint8).reshape(1, -1)
        rows = [
            ("reward", "float", 4),
            ("state_shape", "int64", self._shape.size),
            ("replay_id", "bytes", REPLAY_ID_BYTES),
        ]
        if fmt.states == "raw":
            for prefix in ("state", "next_state"):
                for table, dtype in STATE_TABLES.items():
                    rows.append(
                        (
                            f"{prefix}_{table[len('state_') :]}",
                            "bytes",
                            tiles * np.dtype(dtype).itemsize,
                        )
                    )
            if fmt.action_mask:
                rows.append(("action_mask", "bytes", tiles * 4))
        elif fmt.states == "compact_views":
            # Made in C++ from the state tables as each record is written.
            rows += [
                ("state_view", "state views", tiles),
                ("next_state_view", "next state views", tiles),
                ("action_mask", "state masks", tiles),
            ]
        else:
            rows += [
                ("state", "float", OBSERVATION_CHANNELS * tiles * 4),
                ("next_state", "float", OBSERVATION_CHANNELS * tiles * 4),
                ("action_mask", "int64", tiles * 4),
            ]  # 0/1: one varint byte each
        self._encoder = TFRecordEncoder(list(_VARINT_FEATURES), rows, fmt.encode_threads)
        # Raw records with masks: the masks come from decoding each part.
        self._decode_masks = fmt.action_mask and fmt.states == "raw"
        self._gzip = None
        if fmt.compression == "gzip":
            self._gzip = gzip.GzipFile(
                fileobj=out, mode="wb", compresslevel=fmt.gzip_level, mtime=0
            )
        self._index: list[np.ndarray] = []  # record lengths, block by block

    def write(self, chunk) -> None:
        views = None
        if self.fmt.states == "compact_views":
            chunk = _narrowed(chunk)
            views = view_sources(chunk)
        records, lengths, crc = self._encoder.encode(
            [getattr(chunk, name) for name in _VARINT_FEATURES], self._row_sources(chunk), views
        )
        if self._gzip is None:
            self.out.write_block(records, crc)  # held until drained, then its memory is reused
        else:
            self._gzip.write(records)
        del records
        self._index.append(lengths)

    def _row_sources(self, part) -> list[tuple[np.ndarray, np.ndarray | None] | None]:
        """(table, index) per row feature for the whole part: record i takes row
        index[i] of the table, or row i when index is None; None for the features
        made from the views."""
        n = len(part)
        sources: list[tuple[np.ndarray, np.ndarray | None] | None] = [
            (np.ascontiguousarray(part.reward, dtype="<f4"), None),
            (self._shape, np.zeros(n, np.int32)),
            (np.ascontiguousarray(part.replay_id).view(np.uint8).reshape(n, REPLAY_ID_BYTES), None),
        ]
        if self.fmt.states == "raw":
            for index in (part.state_index, part.next_state_index):
                for table in STATE_TABLES:
                    sources.append((getattr(part, table), index))
            if self._decode_masks:
                mask = part.decode(self.fmt.army_scaling, self.fmt.army_scale).action_mask
                sources.append((mask.view(np.uint8), None))
        elif self.fmt.states == "compact_views":
            sources += [None, None, None]
        else:
            sources += [
                (part.state, None),
                (part.next_state, None),
                (part.action_mask.view(np.uint8), None),
            ]
        return sources

    def finish(self) -> dict[str, bytes]:
        if self._gzip is not None:
            self._gzip.close()
        lengths = np.concatenate(self._index) if self._index else np.zeros(0, np.int64)
        return {".index": tfrecord_index(lengths)}


@register_format
class TFRecordFormat(ShardFormat):
    name = "tfrecord"
    extensions = ("tfrecord", "tfrecord.gz")
    joined_chunks = False  # each record holds its own boards: no table to compact
    state_forms = RECORD_STATE_FORMS
    encode_rows = _BLOCK

    def __init__(
        self,
        states: str = "raw",
        compression: str | None = None,
        action_mask: bool = False,
        gzip_level: int = 6,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
        encode_threads: int = 1,
    ) -> None:
        if isinstance(encode_threads, bool) or not isinstance(encode_threads, (int, np.integer)):
            raise ValueError(f"encode_threads: expected an integer, got {encode_threads!r}")
        if encode_threads < 0:
            raise ValueError(
                f"encode_threads: must be 0 (every core) or more, got {encode_threads}"
            )
        if states not in RECORD_STATE_FORMS:
            raise ValueError(
                f"states: expected 'raw', 'decoded' or 'compact_views', got {states!r}"
            )
        if compression not in (None, "gzip"):
            raise ValueError(f"compression: expected None or 'gzip', got {compression!r}")
        if not 0 <= int(gzip_level) <= 9:
            raise ValueError(f"gzip_level: expected 0..9, got {gzip_level}")
        self.states = states
        self.compression = compression
        self.action_mask = bool(action_mask) or states != "raw"
        self.gzip_level = int(gzip_level)
        self.army_scaling, self.army_scale = army_scaling, float(army_scale)
        self.encode_threads = int(encode_threads)
        if states == "compact_views":
            self.encode_rows = _COMPACT_BLOCK
        if compression == "gzip":
            self.extensions = ("tfrecord.gz", "tfrecord")

    def encoder(self, out: ChecksumWriter, height: int, width: int) -> ShardEncoder:
        return _TFRecordEncoder(self, out, height, width)

    def prepare(self, batch):
        if isinstance(batch, RawBatch) and self.states == "decoded":
            return batch.decode(self.army_scaling, self.army_scale)
        if self.states == "compact_views" and not isinstance(batch, RawBatch):
            raise TypeError(
                "write: a compact_views writer takes a RawBatch (the views are made from its "
                f"boards), got {type(batch).__name__}"
            )
        return batch

    def options(self) -> dict:
        return {"compression": self.compression or "none"}

    @classmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | DecodedBatch | CompactBatch]:
        records = read_records(data)
        yield examples_to_batch([parse_example(r) for r in records])


def _narrowed(part: RawBatch) -> RawBatch:
    """``part`` with its state tables cut to the range of states its rows use (views,
    no copy). The parts of a written batch share its whole table, and the encoder
    checks the table given: this keeps that proportional to the part."""
    if not len(part):
        return part
    low = int(min(part.state_index.min(), part.next_state_index.min()))
    high = int(max(part.state_index.max(), part.next_state_index.max())) + 1
    if low == 0 and high == part.state_kind.shape[0]:
        return part
    return dataclasses.replace(
        part,
        state_index=part.state_index - np.int32(low),
        next_state_index=part.next_state_index - np.int32(low),
        **{name: getattr(part, name)[low:high] for name in STATE_TABLES},
    )


# ---- reading -------------------------------------------------------------------------


def read_records(data: bytes, verify: bool = True) -> list[memoryview]:
    """The records of a TFRecord file (GZIP or ZLIB detected); StorageError names
    the offset of a truncated or corrupt record."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise StorageError(f"damaged GZIP TFRecord stream: {exc}") from None
    view = memoryview(data)
    out = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 12:
            raise StorageError(f"truncated TFRecord header at offset {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if verify and masked_crc32c(view[pos : pos + 8]) != length_crc:
            raise StorageError(f"corrupt TFRecord length at offset {pos}")
        if pos + 16 + length > end:
            raise StorageError(f"truncated TFRecord at offset {pos}")
        record = view[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
        if verify and masked_crc32c(record) != data_crc:
            raise StorageError(f"corrupt TFRecord data at offset {pos}")
        out.append(record)
        pos += 16 + length
    return out


def _fields(buf, start: int, stop: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value or (begin, end)) of a message."""
    pos = start
    while pos < stop:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = read_varint(buf, pos)
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == 0:
            value, pos = read_varint(buf, pos)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, (pos, pos + 4)
            pos += 4
        elif wire == 1:
            yield number, wire, (pos, pos + 8)
            pos += 8
        else:
            raise StorageError(f"unsupported wire type {wire} in Example")
    if pos != stop:
        raise StorageError("Example field overruns its message")


def parse_example(record) -> dict:
    """A ``tf.train.Example``'s features: name -> bytes (bytes_list, one value),
    float32 array (float_list) or int64 array (int64_list)."""
    buf = bytes(record)
    out = {}
    try:
        for number, wire, span in _fields(buf, 0, len(buf)):
            if number != 1 or wire != 2:
                continue
            for n2, w2, entry in _fields(buf, *span):
                if n2 != 1 or w2 != 2:
                    continue
                key = value = None
                for n3, w3, item in _fields(buf, *entry):
                    if n3 == 1 and w3 == 2:
                        key = buf[item[0] : item[1]].decode()
                    elif n3 == 2 and w3 == 2:
                        value = _parse_feature(buf, item)
                if key is not None:
                    out[key] = value
    except (IndexError, UnicodeDecodeError, ValueError) as exc:
        raise StorageError(f"malformed Example ({exc})") from None
    return out


def _parse_feature(buf: bytes, span: tuple[int, int]):
    for kind, wire, inner in _fields(buf, *span):
        if wire != 2:
            continue
        if kind == 1:  # BytesList
            values = [buf[b:e] for n, w, (b, e) in _fields(buf, *inner) if n == 1]
            return values[0] if len(values) == 1 else values
        if kind == 2:  # FloatList (packed or not)
            chunks = [buf[v[0] : v[1]] for n, w, v in _fields(buf, *inner) if n == 1]
            return np.frombuffer(b"".join(chunks), dtype="<f4")
        if kind == 3:  # Int64List (packed or not)
            lists: list[np.ndarray] = []
            for n, w, v in _fields(buf, *inner):
                if n != 1:
                    continue
                if w == 0:
                    lists.append(np.array([v], dtype=np.uint64))
                else:
                    lists.append(_packed_varint_values(buf, *v))
            ints = np.concatenate(lists) if lists else np.zeros(0, np.uint64)
            return ints.view(np.int64)
    return None


def _packed_varint_values(buf: bytes, begin: int, end: int) -> np.ndarray:
    """The uint64 values of packed varints ``buf[begin:end]``, decoded with numpy."""
    data = np.frombuffer(buf, dtype=np.uint8, count=end - begin, offset=begin)
    last = (data & 0x80) == 0  # the final byte of each value
    if data.size and not last[-1]:
        raise StorageError("malformed varint in Example (truncated)")
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    position = np.arange(data.size) - np.repeat(starts, np.diff(np.append(starts, data.size)))
    if data.size and int(position.max()) > 9:
        raise StorageError("malformed varint in Example (more than 10 bytes)")
    shifted = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.add.reduceat(shifted, starts) if starts.size else np.zeros(0, np.uint64)


def examples_to_batch(examples: list[dict]) -> RawBatch | DecodedBatch | CompactBatch:
    """The batch of parsed Examples written by ``TFRecordWriter``."""
    if not examples:
        raise StorageError("empty TFRecord shard")
    try:
        columns: dict[str, Any] = {}
        for name, dtype in RECORD_COLUMNS.items():
            if name == "reward":
                values = np.concatenate([e["reward"] for e in examples])
            else:
                values = np.concatenate([e[name] for e in examples])
                if dtype == np.uint64:
                    values = values.view(np.uint64)
            columns[name] = values.astype(dtype)
        # Shards written before the source columns existed lack them: defaults then.
        if "replay_id" in examples[0]:
            columns["replay_id"] = np.array(
                [e["replay_id"] for e in examples], dtype=SOURCE_COLUMNS["replay_id"]
            )
        if "stars" in examples[0]:
            columns["stars"] = np.concatenate([e["stars"] for e in examples]).astype(
                SOURCE_COLUMNS["stars"]
            )
        n = len(examples)
        shape = tuple(int(s) for s in examples[0]["state_shape"])
        if "state_view" in examples[0]:
            return _compact_batch(examples, columns, shape)
        if "state" in examples[0]:
            state = np.stack([e["state"] for e in examples]).reshape(n, *shape)
            next_state = np.stack([e["next_state"] for e in examples]).reshape(n, *shape)
            mask = np.stack([e["action_mask"] for e in examples]).astype(bool)
            return DecodedBatch(
                **columns,
                state=state,
                next_state=next_state,
                action_mask=mask,
                next_sequence=int(columns["sequence"][-1]) + 1,
            )
        height, width = shape
        tables: dict[str, Any] = {}
        for table, dtype in STATE_TABLES.items():
            suffix = table[len("state_") :]
            rows = [e[f"state_{suffix}"] for e in examples] + [
                e[f"next_state_{suffix}"] for e in examples
            ]
            tables[table] = (
                np.frombuffer(b"".join(rows), dtype=np.dtype(dtype).newbyteorder("<"))
                .astype(dtype)
                .reshape(2 * n, height, width)
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"TFRecord shard lacks or garbles a feature ({exc})") from None
    raw = RawBatch(
        **columns,
        state_index=np.arange(n, dtype=np.int32),
        next_state_index=np.arange(n, 2 * n, dtype=np.int32),
        **tables,
        next_sequence=int(columns["sequence"][-1]) + 1,
    )
    return compact_states(raw)


def _compact_batch(examples: list[dict], columns: dict, shape: tuple) -> CompactBatch:
    """The CompactBatch of parsed compact-view Examples (int32 armies: exact for any
    army scale)."""
    n = len(examples)
    views = {}
    for prefix in ("state", "next_state"):
        values = (
            np.stack([e[f"{prefix}_view"] for e in examples]).view(np.uint64).reshape(n, *shape)
        )
        tiles = values & np.uint64((1 << VIEW_ARMY_SHIFT) - 1)
        armies = values >> np.uint64(VIEW_ARMY_SHIFT)
        if n and (int(tiles.max()) >= TILE_CODES or int(armies.max()) > np.iinfo(np.int32).max):
            raise StorageError(f"{prefix}_view holds a tile code or an army out of range")
        views[f"{prefix}_tiles"] = tiles.astype(np.uint8)
        views[f"{prefix}_armies"] = armies.astype(np.int32)
    mask = np.frombuffer(b"".join(e["action_mask"] for e in examples), dtype=np.uint8)
    return CompactBatch(
        **columns,
        **views,
        action_mask=mask.reshape(n, -1),
        next_sequence=int(columns["sequence"][-1]) + 1,
    )


class TFRecordWriter(ShardWriter):
    """TFRecord shards in a local directory. ``states``: "raw" (the boards as
    bytes, default), "decoded" (observation float lists and masks) or
    "compact_views" (the acting player's compact views and packed mask);
    ``compression``: None or "gzip"; ``action_mask``: also store the mask as bytes
    in "raw" mode (it is computed by decoding, which costs time);
    ``encode_threads``: threads each block of records is encoded on (0: every
    core; the bytes are the same whatever the number). Rotation, retry and resume
    options as for ``ShardWriter``."""

    def __init__(self, destination, **options) -> None:
        shard_format, writer_options = format_and_writer_options(TFRecordFormat, options)
        super().__init__(LocalStore(destination), shard_format, **writer_options)


__all__ = ["TFRecordFormat", "TFRecordWriter", "parse_example", "read_records"]
