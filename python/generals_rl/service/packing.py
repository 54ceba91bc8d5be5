"""The packed columnar wire form of a batch (``PackedBatch`` in the proto): the
columns of a ``RawBatch`` as raw little-endian bytes in one payload, optionally
one zstd frame, described by name, dtype and shape.

Packing and unpacking are a handful of numpy operations per batch: nothing runs
per experience or per tile in Python.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience.batch import RawBatch

_DTYPES = {
    pb.DTYPE_BOOL: np.dtype(np.bool_),
    pb.DTYPE_UINT8: np.dtype(np.uint8),
    pb.DTYPE_INT8: np.dtype(np.int8),
    pb.DTYPE_UINT16: np.dtype("<u2"),
    pb.DTYPE_INT16: np.dtype("<i2"),
    pb.DTYPE_UINT32: np.dtype("<u4"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_UINT64: np.dtype("<u8"),
    pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}

# Columns of the packed form: name -> the dtypes it may have. Row columns have
# one value per experience; state columns are (states, height, width).
ROW_COLUMNS = {
    "sequence": ("<u8",),
    "game_id": ("<u8",),
    "player_id": ("|u1",),
    "tick": ("<i4",),
    "action": ("<i4",),
    "reward": ("<f4",),
    "flags": ("|u1",),
    "state_index": ("<i4",),
    "next_state_index": ("<i4",),
}
STATE_COLUMNS = {
    "state_code": ("|u1",),
    "state_army": ("<u2", "<i4"),
}
# The flag bits and the tile code (kind << TILE_KIND_SHIFT | owner + 1) are the
# buffer's own (cpp/core/schema.hpp).
FLAG_LEGAL, FLAG_TERMINATED, FLAG_TRUNCATED = (
    _core.FLAG_LEGAL,
    _core.FLAG_TERMINATED,
    _core.FLAG_TRUNCATED,
)
_ALL_FLAGS = FLAG_LEGAL | FLAG_TERMINATED | FLAG_TRUNCATED

# Limits of a compressed payload, checked on its declared sizes before anything
# is inflated (a 33 KB zstd frame can hold a GiB): at most `max_bytes` (the
# receiver's message size limit, as if it had been sent uncompressed) and at
# most MAX_COMPRESSION_RATIO times its compressed size. Real 20x20 batches
# compress 5-20 times; `pack` sends a payload that would compress more as is.
MAX_PAYLOAD_BYTES = 256 << 20
MAX_COMPRESSION_RATIO = 1024

_LITTLE = sys.byteorder == "little"


class PackedBatchError(ValueError):
    """A packed batch that is malformed; the message names what is wrong."""


class PayloadTooLargeError(PackedBatchError):
    """A packed batch whose payload would inflate beyond a limit."""


def little_endian(array: np.ndarray) -> np.ndarray:
    """``array`` C-contiguous and little-endian (itself when it already is)."""
    array = np.ascontiguousarray(array)
    if _LITTLE or array.dtype.byteorder in ("<", "|"):
        return array
    return array.astype(array.dtype.newbyteorder("<"))


def packed_rows(batch) -> list[tuple[str, np.ndarray]]:
    """The packed row columns of a batch of any form, sequence to flags."""
    flags = (
        batch.legal.view(np.uint8) * np.uint8(FLAG_LEGAL)
        | batch.terminated.view(np.uint8) * np.uint8(FLAG_TERMINATED)
        | batch.truncated.view(np.uint8) * np.uint8(FLAG_TRUNCATED)
    )
    return [
        ("sequence", batch.sequence.astype(np.uint64, copy=False)),
        ("game_id", batch.game_id.astype(np.uint64, copy=False)),
        ("player_id", batch.player_id.astype(np.uint8)),
        ("tick", batch.tick.astype(np.int32, copy=False)),
        ("action", batch.action.astype(np.int32, copy=False)),
        ("reward", batch.reward.astype(np.float32, copy=False)),
        ("flags", flags),
    ]


def record_columns(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The record columns of a batch from its unpacked row columns (the flags
    split, checked)."""
    flags = arrays["flags"]
    if flags.size and int(flags.max()) > _ALL_FLAGS:
        raise PackedBatchError("packed: flags has bits other than legal, terminated, truncated")
    return {
        "sequence": arrays["sequence"],
        "game_id": arrays["game_id"],
        "player_id": arrays["player_id"].astype(np.int32),
        "tick": arrays["tick"],
        "action": arrays["action"],
        "reward": arrays["reward"],
        "legal": (flags & FLAG_LEGAL) != 0,
        "terminated": (flags & FLAG_TERMINATED) != 0,
        "truncated": (flags & FLAG_TRUNCATED) != 0,
    }


def packed_arrays(raw: RawBatch) -> list[tuple[str, np.ndarray]]:
    """The packed form's columns of ``raw``, in payload order."""
    code = (raw.state_kind << np.uint8(_core.TILE_KIND_SHIFT)) | (raw.state_owner + 1).astype(
        np.uint8
    )
    army = raw.state_army
    army = (
        army.astype(np.uint16)
        if army.size == 0 or int(army.max()) <= _core.MAX_COMPACT_ARMY
        else army.astype(np.int32)
    )
    return [
        *packed_rows(raw),
        ("state_index", raw.state_index.astype(np.int32, copy=False)),
        ("next_state_index", raw.next_state_index.astype(np.int32, copy=False)),
        ("state_code", code),
        ("state_army", army),
    ]


def pack(raw: RawBatch, compressor=None) -> tuple[pb.PackedBatch, list]:
    """The ``PackedBatch`` of ``raw`` *without* its payload, and the payload as
    a list of buffers to join (so the caller can write them straight into the
    serialized message). ``compressor``: a ``zstandard.ZstdCompressor`` or None."""
    packed = pb.PackedBatch(
        count=len(raw), state_count=raw.state_kind.shape[0], height=raw.height, width=raw.width
    )
    return packed, pack_columns(packed, packed_arrays(raw), compressor)


def describe_columns(packed: pb.PackedBatch, columns) -> None:
    """Describes ``columns`` (``(name, dtype, shape)`` in payload order, dtypes
    little-endian) in ``packed``, back to back, and sets its uncompressed size."""
    offset = 0
    for name, dtype, shape in columns:
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        packed.columns.add(
            name=name, dtype=_DTYPE_CODES[dtype], shape=shape, offset=offset, size=size
        )
        offset += size
    packed.uncompressed_size = offset


def pack_columns(packed: pb.PackedBatch, arrays, compressor=None) -> list:
    """Describes ``arrays`` (``(name, array)`` in payload order) in ``packed`` and
    returns the payload as a list of buffers, one zstd frame with ``compressor``
    when it pays."""
    arrays = [(name, little_endian(array)) for name, array in arrays]
    describe_columns(packed, [(name, array.dtype, array.shape) for name, array in arrays])
    parts = [memoryview(array.reshape(-1).view(np.uint8)) for _, array in arrays]
    if compressor is not None:
        compressed = compressor.compress(b"".join(parts))
        # what `unpack` accepts
        if packed.uncompressed_size <= MAX_COMPRESSION_RATIO * len(compressed):
            packed.compression = pb.COMPRESSION_ZSTD
            parts = [compressed]
    return parts


def pack_message(raw: RawBatch, compressor=None) -> pb.PackedBatch:
    """A complete ``PackedBatch`` message (with its payload) for ``raw``."""
    packed, parts = pack(raw, compressor)
    packed.payload = b"".join(parts)
    return packed


def unpack(
    packed: pb.PackedBatch,
    decompressor=None,
    payload: bytes | None = None,
    check_tiles: bool = True,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> RawBatch:
    """The ``RawBatch`` a packed batch holds. Checks the structure (columns,
    dtypes, shapes, sizes, flags) and, with the core's raw-batch check, the state
    references and, with ``check_tiles``, every row's player and every tile's
    kind, owner and army; raises ``PackedBatchError`` naming the first problem,
    ``PayloadTooLargeError`` when a compressed payload would inflate beyond
    ``max_bytes`` or ``MAX_COMPRESSION_RATIO`` (checked before inflating).
    ``payload`` may be given when the caller already holds the payload bytes
    (saves a copy). A server checks the row values field by field first
    (``validation.row_problems``), then the tiles as the buffer appends them."""
    if packed.layout != pb.PACKED_LAYOUT_RAW:
        raise PackedBatchError(
            f"packed: layout {packed.layout} is not PACKED_LAYOUT_RAW (raw boards)"
        )
    n, states = packed.count, packed.state_count
    shapes: dict[str, tuple[int, ...]] = {name: (packed.count,) for name in ROW_COLUMNS}
    shapes.update({name: (states, packed.height, packed.width) for name in STATE_COLUMNS})
    arrays = unpack_columns(
        packed, {**ROW_COLUMNS, **STATE_COLUMNS}, shapes, decompressor, payload, max_bytes
    )
    code = arrays["state_code"]
    owner = np.bitwise_and(code, np.uint8(_core.TILE_OWNER_MASK), dtype=np.int16)
    owner -= 1
    raw = RawBatch(
        **record_columns(arrays),
        state_index=arrays["state_index"],
        next_state_index=arrays["next_state_index"],
        state_kind=np.right_shift(code, np.uint8(_core.TILE_KIND_SHIFT)),
        state_owner=owner,
        state_army=arrays["state_army"].astype(np.int32),
    )
    if states or n:  # an empty batch may come without a board size
        try:
            _core.check_raw_batch(raw, check_tiles)
        except ValueError as exc:
            raise PackedBatchError(f"packed: {exc}") from None
    return raw


def unpack_columns(
    packed: pb.PackedBatch,
    dtypes: dict[str, tuple[str, ...]],
    shapes: dict[str, tuple[int, ...]],
    decompressor=None,
    payload=None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> dict[str, np.ndarray]:
    """The columns of a packed batch (name -> the dtypes it may have, and its
    shape) as arrays over the payload (no copy of an uncompressed one), checked
    against the header before any payload byte is looked at; raises as
    ``unpack``. ``payload``: the payload bytes when the caller holds them."""
    if payload is None:
        payload = packed.payload
    height, width = packed.height, packed.width
    if not (2 <= height <= 256 and 2 <= width <= 256) and (packed.count or packed.state_count):
        raise PackedBatchError(f"packed: board {height}x{width} is outside 2..256")
    columns = _columns(packed, dtypes, shapes)
    # The payload is the columns: its size follows from the header alone.
    needed = sum(column.size for column, _, _ in columns.values())
    if packed.uncompressed_size != needed:
        raise PackedBatchError(
            f"packed: uncompressed_size says {packed.uncompressed_size} bytes, the columns hold "
            f"{needed}"
        )
    if packed.compression == pb.COMPRESSION_ZSTD:
        payload = _decompress(payload, packed.uncompressed_size, decompressor, max_bytes)
    elif packed.compression != pb.COMPRESSION_NONE:
        raise PackedBatchError(f"packed: unknown compression {packed.compression}")
    if memoryview(payload).nbytes != packed.uncompressed_size:
        raise PackedBatchError(
            f"packed: payload holds {memoryview(payload).nbytes} bytes, uncompressed_size says "
            f"{packed.uncompressed_size}"
        )
    arrays = {}
    for name, (column, dtype, shape) in columns.items():
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=column.offset).reshape(
            shape
        )
        arrays[name] = array if _LITTLE else array.astype(dtype.newbyteorder("="))
    return arrays


def _columns(
    packed: pb.PackedBatch, dtypes: dict[str, tuple[str, ...]], shapes: dict[str, tuple[int, ...]]
) -> dict[str, tuple[pb.Column, np.dtype, tuple]]:
    """Each column's description, dtype and shape, checked against the header
    (before any payload byte is looked at)."""
    described = {}
    for column in packed.columns:
        if column.name in described:
            raise PackedBatchError(f"packed: column {column.name!r} appears twice")
        described[column.name] = column
    columns = {}
    for name, allowed in dtypes.items():
        column = described.pop(name, None)
        columns[name] = (
            column,
            _column_dtype(column, name, allowed, shapes[name], packed.uncompressed_size),
            shapes[name],
        )
    if described:
        raise PackedBatchError(f"packed: unknown columns {sorted(described)}")
    return columns


def _decompress(payload: bytes, size: int, decompressor, max_bytes: int) -> bytes:
    import zstandard

    if size > max_bytes:
        raise PayloadTooLargeError(
            f"packed: uncompressed_size {size} is above the limit {max_bytes}"
        )
    if size > MAX_COMPRESSION_RATIO * len(payload):
        raise PayloadTooLargeError(
            f"packed: uncompressed_size {size} is more than {MAX_COMPRESSION_RATIO} times "
            f"the {len(payload)} compressed bytes"
        )
    try:
        # The frame's own content size, when it has one, is what would be allocated.
        content_size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise PackedBatchError(f"packed: payload is not a valid zstd frame ({exc})") from None
    if content_size not in (size, zstandard.CONTENTSIZE_UNKNOWN):
        raise PackedBatchError(
            f"packed: the zstd frame holds {content_size} bytes, uncompressed_size says {size}"
        )
    decompressor = decompressor or zstandard.ZstdDecompressor()
    try:
        # Never produces more than `size` bytes, whatever the frame holds.
        return decompressor.decompress(payload, max_output_size=max(size, 1))
    except zstandard.ZstdError as exc:
        raise PackedBatchError(f"packed: payload is not a valid zstd frame ({exc})") from None


def _column_dtype(column, name: str, dtypes: tuple, shape: tuple, payload_size: int) -> np.dtype:
    if column is None:
        raise PackedBatchError(f"packed: column {name!r} is missing")
    dtype = _DTYPES.get(column.dtype)
    if dtype is None or dtype.str not in dtypes:
        raise PackedBatchError(
            f"packed: column {name!r} has dtype "
            f"{pb.DType.Name(column.dtype) if column.dtype in _DTYPES else column.dtype}, "
            f"expected {' or '.join(np.dtype(d).name for d in dtypes)}"
        )
    if tuple(column.shape) != shape:
        raise PackedBatchError(
            f"packed: column {name!r} has shape {tuple(column.shape)}, expected {shape}"
        )
    count = int(np.prod(shape, dtype=np.int64))
    if column.size != count * dtype.itemsize:
        raise PackedBatchError(
            f"packed: column {name!r} is {column.size} bytes, its shape needs "
            f"{count * dtype.itemsize}"
        )
    if column.offset + column.size > payload_size:
        raise PackedBatchError(f"packed: column {name!r} runs past the end of the payload")
    return dtype
