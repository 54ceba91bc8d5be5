"""TFRecord shards: one ``tf.train.Example`` per experience, standard framing
(uint64 length, masked CRC32C of the length, the record, masked CRC32C of the
record), optionally GZIP-compressed, with a companion ``<shard>.index`` file listing
``offset length`` of every record (the ``tfrecord`` package's index format; offsets
count in the uncompressed stream).

Features of every record (int64 unless said otherwise):

* ``sequence``, ``game_id`` (the uint64 id's bit pattern as int64), ``player_id``,
  ``tick``, ``action``, ``legal``, ``terminated``, ``truncated`` (0/1), ``reward``
  (float);
* ``states="bytes"`` (default, compact): ``state_shape`` ``[H, W]`` and six bytes
  features ``state_kind`` (uint8), ``state_owner`` (int16), ``state_army`` (int32),
  ``next_state_kind``, ``next_state_owner``, ``next_state_army``, each the raw
  little-endian ``(H, W)`` board (``tf.io.decode_raw`` then reshape); with
  ``action_mask=True`` also ``action_mask`` bytes (uint8 0/1, ``H*W*4``);
* ``states="float"`` (decoded): ``state_shape`` ``[9, H, W]``, ``state`` and
  ``next_state`` float lists (9*H*W, channels first) and ``action_mask`` int64
  list (H*W*4 of 0/1).

Records are built for a whole chunk at once with numpy: every part of an Example
that does not depend on the values is a constant byte string, varints are encoded
vectorized, and only the CRC32C of each record is one call per record.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from ..experience.batch import RECORD_COLUMNS, STATE_TABLES, ExperienceBatch, RawBatch
from ._batches import OBSERVATION_CHANNELS, compact_states
from ._crc import crc32c, masked_crc32c
from .base import ChecksumWriter, ShardEncoder, ShardFormat, ShardWriter, StorageError

_MASK_DELTA = 0xA282EAD8
_INT_FEATURES = ("sequence", "game_id", "player_id", "tick", "action", "legal", "terminated", "truncated")
# Always one varint byte: player ids are < 128, flags 0/1.
_ONE_BYTE_FEATURES = ("player_id", "legal", "terminated", "truncated")
_VARIABLE_FEATURES = ("sequence", "game_id", "tick", "action")
_BLOCK = 2048  # records built at a time


# ---- protobuf wire format ----------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(field_tag: int, payload_len: int) -> bytes:
    return bytes([field_tag]) + _varint(payload_len)


def _feature_prefix(key: str, kind: str, payload_len: int, packed: bool = True) -> bytes:
    """The bytes of a Features map entry up to its values: ``kind`` is "bytes" (one
    value of ``payload_len`` bytes), "float" or "int64" (packed values of
    ``payload_len`` bytes)."""
    inner_tag = {"bytes": 0x0A, "float": 0x12, "int64": 0x1A}[kind]
    values = _delimited(0x0A, payload_len)  # BytesList.value / packed FloatList, Int64List value
    listed = _delimited(inner_tag, len(values) + payload_len)  # Feature.{bytes,float,int64}_list
    key_bytes = key.encode()
    keyed = _delimited(0x0A, len(key_bytes)) + key_bytes
    feature = _delimited(0x12, len(listed) + len(values) + payload_len)  # MapEntry.value
    entry_len = len(keyed) + len(feature) + len(listed) + len(values) + payload_len
    return _delimited(0x0A, entry_len) + keyed + feature + listed + values


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64/uint64 ``values`` (negative int64 as their 64-bit
    pattern): a ``(n, 10)`` uint8 matrix, each row's first ``length`` bytes used,
    and the lengths."""
    v = np.ascontiguousarray(values).astype(np.int64, copy=False).view(np.uint64)
    lengths = np.ones(len(v), dtype=np.int64)
    for k in range(1, 10):
        lengths += v >= np.uint64(1 << (7 * k))
    width = int(lengths.max()) if len(v) else 1
    groups = np.zeros((len(v), 10), dtype=np.uint8)
    shifts = np.arange(0, 7 * width, 7, dtype=np.uint64)
    groups[:, :width] = (v[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    more = np.arange(width)[None, :] < (lengths - 1)[:, None]
    groups[:, :width] |= more.astype(np.uint8) << 7
    return groups, lengths


class _Layout:
    """The constant structure of this writer's Examples: a list of segments
    ``(offset, bytes)`` of constant framing and ``(offset, name, size)`` of values,
    making up the fixed-size block of every record."""

    def __init__(self, states: str, height: int, width: int, action_mask: bool) -> None:
        tiles = height * width
        segments: list = []
        offset = 0

        def const(data: bytes) -> None:
            nonlocal offset
            segments.append(("const", offset, data))
            offset += len(data)

        def value(name: str, size: int) -> None:
            nonlocal offset
            segments.append(("value", offset, name, size))
            offset += size

        for name in _ONE_BYTE_FEATURES:
            const(_feature_prefix(name, "int64", 1))
            value(name, 1)
        const(_feature_prefix("reward", "float", 4))
        value("reward", 4)
        shape = [OBSERVATION_CHANNELS, height, width] if states == "float" else [height, width]
        packed_shape = b"".join(_varint(s) for s in shape)
        const(_feature_prefix("state_shape", "int64", len(packed_shape)) + packed_shape)
        if states == "bytes":
            for prefix, index in (("state", "state_index"), ("next_state", "next_state_index")):
                for table, dtype in STATE_TABLES.items():
                    size = tiles * np.dtype(dtype).itemsize
                    const(_feature_prefix(f"{prefix}_{table[len('state_'):]}", "bytes", size))
                    value(f"{index}:{table}", size)
            if action_mask:
                const(_feature_prefix("action_mask", "bytes", tiles * 4))
                value("action_mask", tiles * 4)
        else:
            for name in ("state", "next_state"):
                const(_feature_prefix(name, "float", OBSERVATION_CHANNELS * tiles * 4))
                value(name, OBSERVATION_CHANNELS * tiles * 4)
            const(_feature_prefix("action_mask", "int64", tiles * 4))
            value("action_mask", tiles * 4)
        self.segments = segments
        self.size = offset
        self.variable_prefixes = {}
        for name in _VARIABLE_FEATURES:
            # The entry before the varint, for each varint length 1..10.
            self.variable_prefixes[name] = [_feature_prefix(name, "int64", k) for k in range(1, 11)]


# ---- writing -------------------------------------------------------------------------


class _TFRecordEncoder(ShardEncoder):
    def __init__(self, fmt: TFRecordFormat, out: ChecksumWriter, height: int, width: int) -> None:
        self.out = out
        self.fmt = fmt
        self.layout = _Layout(fmt.record_states, height, width, fmt.action_mask)
        # "bytes" records with masks: the masks come from decoding each part.
        self._decode_masks = fmt.action_mask and fmt.record_states == "bytes"
        self._sink = out
        self._gzip = None
        if fmt.compression == "gzip":
            self._gzip = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=fmt.gzip_level, mtime=0)
            self._sink = self._gzip
        self._index: list[np.ndarray] = []  # record lengths, block by block
        self._scratch = np.empty(0, dtype=np.uint8)
        self._length_crc: dict[int, int] = {}

    def write(self, parts: list) -> None:
        for part in parts:
            extra = {}
            if self._decode_masks:
                extra["action_mask"] = part.decode(self.fmt.army_scaling, self.fmt.army_scale).action_mask
            for start in range(0, len(part), _BLOCK):
                self._write_block(part, extra, start, min(len(part), start + _BLOCK))

    def _write_block(self, part, extra: dict, start: int, stop: int) -> None:
        layout = self.layout
        n = stop - start
        rows = slice(start, stop)
        # Variable block: the varint features, lengths differ per record.
        parts_bytes, lengths = [], []
        for name in _VARIABLE_FEATURES:
            digits, size = varints(getattr(part, name)[rows])
            prefix_len = len(layout.variable_prefixes[name][0])  # same for every length (< 128)
            block = np.empty((n, prefix_len + 10), dtype=np.uint8)
            table = np.frombuffer(b"".join(layout.variable_prefixes[name]), np.uint8).reshape(10, prefix_len)
            block[:, :prefix_len] = table[size - 1]
            block[:, prefix_len:] = digits
            parts_bytes.append(block)
            lengths.append(prefix_len + size)
        variable_len = np.sum(lengths, axis=0)
        features_len = layout.size + variable_len
        prefix_len = np.ones(n, dtype=np.int64)
        _, flen_varint_len = varints(features_len)
        prefix_len += flen_varint_len
        data_len = prefix_len + features_len
        max_variable = int(sum(b.shape[1] for b in parts_bytes))
        max_prefix = int(prefix_len.max())
        width = 12 + max_prefix + layout.size + max_variable + 4
        need = n * width
        if self._scratch.size < need:
            self._scratch = np.empty(need, dtype=np.uint8)
        rec = self._scratch[:need].reshape(n, width)
        # Header: length and its masked CRC.
        rec[:, 0:8] = data_len.astype("<u8").view(np.uint8).reshape(n, 8)
        rec[:, 8:12] = self._length_crcs(data_len).view(np.uint8).reshape(n, 4)
        # Example prefix: field 1 (features), length-delimited.
        flen_digits, _ = varints(features_len)
        for plen in np.unique(prefix_len):
            sel = np.flatnonzero(prefix_len == plen)
            rows_sel = rec[sel] if len(sel) != n else rec
            rows_sel[:, 12] = 0x0A
            rows_sel[:, 13:12 + plen] = flen_digits[sel, : plen - 1]
            if len(sel) != n:
                rec[sel] = rows_sel
            self._fill_fixed(rec, sel if len(sel) != n else None, 12 + int(plen), part, extra, rows)
        # Variable features after the fixed block; each overwrites the unused tail of
        # the one before, so they end up back to back.
        column = 12 + prefix_len + layout.size
        flat = rec.reshape(-1)
        row_base = np.arange(n, dtype=np.int64) * width
        for block, size in zip(parts_bytes, lengths):
            index = (row_base + column)[:, None] + np.arange(block.shape[1])
            flat[index] = block
            column = column + size
        # Record CRCs, one call per record (the only per-record step).
        view = memoryview(flat)
        begins = (row_base + 12).tolist()
        ends = (row_base + 12 + data_len).tolist()
        crcs = np.array([crc32c(view[b:e]) for b, e in zip(begins, ends)], dtype=np.uint32)
        masked = (((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(_MASK_DELTA)).astype("<u4")
        crc_at = (row_base + 12 + data_len)[:, None] + np.arange(4)
        flat[crc_at] = masked.view(np.uint8).reshape(n, 4)
        record_len = data_len + 16
        out = b"".join([view[b - 12 : b - 12 + length] for b, length in zip(begins, record_len.tolist())])
        self._sink.write(out)
        self._index.append(record_len)

    def _fill_fixed(self, rec: np.ndarray, sel, column: int, part, extra: dict, rows: slice) -> None:
        """Writes the fixed block of the records ``sel`` (None: all) at ``column``."""
        target = rec if sel is None else rec[sel]
        picked = rows if sel is None else np.arange(rows.start, rows.stop)[sel]
        for segment in self.layout.segments:
            if segment[0] == "const":
                _, offset, data = segment
                target[:, column + offset : column + offset + len(data)] = np.frombuffer(data, np.uint8)
                continue
            _, offset, name, size = segment
            dest = target[:, column + offset : column + offset + size]
            if ":" in name:  # a state table row, by state_index or next_state_index
                index_name, table_name = name.split(":")
                table = getattr(part, table_name)
                table = table.reshape(len(table), -1).view(np.uint8)
                dest[...] = np.take(table, getattr(part, index_name)[picked], axis=0)
                continue
            values = extra[name] if name in extra else getattr(part, name)
            values = values[picked]
            if name == "reward" or name in ("state", "next_state"):
                dest[...] = np.ascontiguousarray(values, dtype="<f4").reshape(len(values), -1).view(np.uint8)
            elif name == "action_mask":
                dest[...] = values.reshape(len(values), -1).view(np.uint8)
            else:  # one-byte int64 varints
                dest[...] = values.astype(np.uint8).reshape(-1, 1)
        if sel is not None:
            rec[sel] = target

    def _length_crcs(self, data_len: np.ndarray) -> np.ndarray:
        out = np.empty(len(data_len), dtype="<u4")
        for length in np.unique(data_len).tolist():
            crc = self._length_crc.get(length)
            if crc is None:
                crc = self._length_crc[length] = masked_crc32c(struct.pack("<Q", length))
            out[data_len == length] = crc
        return out

    def finish(self) -> dict[str, bytes]:
        if self._gzip is not None:
            self._gzip.close()
        lengths = np.concatenate(self._index) if self._index else np.zeros(0, np.int64)
        offsets = np.cumsum(lengths) - lengths
        pairs = np.column_stack([offsets, lengths]).ravel().tolist()
        return {".index": (("%d %d\n" * len(lengths)) % tuple(pairs)).encode()}


class TFRecordFormat(ShardFormat):
    name = "tfrecord"
    extensions = ("tfrecord", "tfrecord.gz")
    joined_chunks = False  # each record holds its own boards: no table to compact

    def __init__(self, states: str = "bytes", compression: str | None = None, action_mask: bool = False,
                 gzip_level: int = 6, army_scaling: str = "linear", army_scale: float = 1000.0) -> None:
        if states not in ("bytes", "float"):
            raise ValueError(f"states: expected 'bytes' (compact) or 'float' (decoded), got {states!r}")
        if compression not in (None, "gzip"):
            raise ValueError(f"compression: expected None or 'gzip', got {compression!r}")
        if not 0 <= int(gzip_level) <= 9:
            raise ValueError(f"gzip_level: expected 0..9, got {gzip_level}")
        self.states = "compact" if states == "bytes" else "decoded"
        self.record_states = states
        self.compression = compression
        self.action_mask = bool(action_mask) or states == "float"
        self.gzip_level = int(gzip_level)
        self.army_scaling, self.army_scale = army_scaling, float(army_scale)
        if compression == "gzip":
            self.extensions = ("tfrecord.gz", "tfrecord")

    def encoder(self, out: ChecksumWriter, height: int, width: int) -> ShardEncoder:
        return _TFRecordEncoder(self, out, height, width)

    def prepare(self, batch):
        if isinstance(batch, RawBatch) and self.states == "decoded":
            return batch.decode(self.army_scaling, self.army_scale)
        return batch

    def options(self) -> dict:
        return {"record_states": self.record_states, "compression": self.compression or "none"}

    @classmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | ExperienceBatch]:
        records = read_records(data)
        yield examples_to_batch([parse_example(r) for r in records])


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


def _read_varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise StorageError("malformed varint in Example")


def _fields(buf, start: int, stop: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value or (begin, end)) of a message."""
    pos = start
    while pos < stop:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _read_varint(buf, pos)
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
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
    except (IndexError, UnicodeDecodeError) as exc:
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
            values = []
            for n, w, v in _fields(buf, *inner):
                if n != 1:
                    continue
                if w == 0:
                    values.append(v)
                else:
                    pos = v[0]
                    while pos < v[1]:
                        value, pos = _read_varint(buf, pos)
                        values.append(value)
            return np.array(values, dtype=np.uint64).view(np.int64)
    return None


def examples_to_batch(examples: list[dict]) -> RawBatch | ExperienceBatch:
    """The batch of parsed Examples written by ``TFRecordWriter``."""
    if not examples:
        raise StorageError("empty TFRecord shard")
    try:
        columns = {}
        for name, dtype in RECORD_COLUMNS.items():
            if name == "reward":
                values = np.concatenate([e["reward"] for e in examples])
            else:
                values = np.concatenate([e[name] for e in examples])
                if dtype == np.uint64:
                    values = values.view(np.uint64)
            columns[name] = values.astype(dtype)
        n = len(examples)
        shape = tuple(int(s) for s in examples[0]["state_shape"])
        if "state" in examples[0]:
            state = np.stack([e["state"] for e in examples]).reshape(n, *shape)
            next_state = np.stack([e["next_state"] for e in examples]).reshape(n, *shape)
            mask = np.stack([e["action_mask"] for e in examples]).astype(bool)
            return ExperienceBatch(**columns, state=state, next_state=next_state, action_mask=mask,
                                   next_sequence=int(columns["sequence"][-1]) + 1)
        height, width = shape
        tables = {}
        for table, dtype in STATE_TABLES.items():
            suffix = table[len("state_"):]
            rows = [e[f"state_{suffix}"] for e in examples] + [e[f"next_state_{suffix}"] for e in examples]
            tables[table] = np.frombuffer(b"".join(rows), dtype=np.dtype(dtype).newbyteorder("<")).astype(
                dtype).reshape(2 * n, height, width)
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


class TFRecordWriter(ShardWriter):
    """TFRecord shards in a local directory. ``states``: "bytes" (compact boards as
    raw bytes, default) or "float" (decoded observation float lists and masks);
    ``compression``: None or "gzip"; ``action_mask``: also store the mask as bytes
    in "bytes" mode (it is computed by decoding, which costs time). Rotation, retry
    and resume options as for ``ShardWriter``."""

    def __init__(self, destination, *, states: str = "bytes", compression: str | None = None,
                 action_mask: bool = False, gzip_level: int = 6, army_scaling: str = "linear",
                 army_scale: float = 1000.0, **options) -> None:
        from ._options import split_writer_options
        from .local import LocalStore

        fmt = TFRecordFormat(states, compression, action_mask, gzip_level, army_scaling, army_scale)
        super().__init__(LocalStore(destination), fmt, **split_writer_options(options))


__all__ = ["TFRecordFormat", "TFRecordWriter", "parse_example", "read_records", "varints"]
