"""Parquet shards (pyarrow): one row per experience, zstd, one row group per chunk.

Raw states (default): the record columns, ``state_index``/``next_state_index``
and the state table spread over the rows: ``state_kind``/``state_owner``/
``state_army`` are ``list<fixed_size_binary>`` columns, each element a little-endian
``(H, W)`` board of uint8/int16/int32. Flattening a column gives the state table
that the indices refer to (indices count from the start of the file). Each row
group holds the states its rows use, once each, sorted by game and tick, spread
evenly over its rows (which row carries which board means nothing). Decoded
states: ``state``/``next_state`` as ``fixed_size_list<float32>[9*H*W]`` and
``action_mask`` as
``fixed_size_list<bool>[H*W*4]``. Shapes and dtypes are in the field metadata and
in the schema metadata under ``generals_rl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..experience.batch import ROW_COLUMNS, SOURCE_COLUMNS, STATE_TABLES, DecodedBatch, RawBatch
from ._batches import OBSERVATION_CHANNELS, STATE_FORMS, stored_form
from ._options import format_and_writer_options
from .checksum import ChecksumWriter
from .errors import StorageError
from .formats import ShardEncoder, ShardFormat, register_format
from .local import LocalStore
from .shard_writer import ShardWriter

FORMAT_VERSION = 1
_METADATA_KEY = b"generals_rl"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "Parquet storage needs pyarrow: pip install 'generals-rl[storage]'"
        ) from None
    return pa, pq


def _record_fields(pa) -> list:
    types = {
        np.uint64: pa.uint64(),
        np.int32: pa.int32(),
        np.float32: pa.float32(),
        np.bool_: pa.bool_(),
        SOURCE_COLUMNS["replay_id"]: pa.binary(),
    }
    return [pa.field(name, types[dtype], nullable=False) for name, dtype in ROW_COLUMNS.items()]


def schema(states: str, height: int, width: int):
    """The Arrow schema of a shard of ``height x width`` boards."""
    pa, _ = _pyarrow()
    tiles = height * width
    fields = _record_fields(pa)
    if states == "raw":
        fields += [
            pa.field("state_index", pa.int32(), nullable=False),
            pa.field("next_state_index", pa.int32(), nullable=False),
        ]
        for name, dtype in STATE_TABLES.items():
            item = np.dtype(dtype)
            meta = {"shape": json.dumps([height, width]), "dtype": item.newbyteorder("<").str}
            fields.append(
                pa.field(
                    name, pa.list_(pa.binary(tiles * item.itemsize)), nullable=False, metadata=meta
                )
            )
    else:
        obs = {"shape": json.dumps([OBSERVATION_CHANNELS, height, width]), "dtype": "<f4"}
        fields += [
            pa.field(
                "state",
                pa.list_(pa.float32(), OBSERVATION_CHANNELS * tiles),
                nullable=False,
                metadata=obs,
            ),
            pa.field(
                "next_state",
                pa.list_(pa.float32(), OBSERVATION_CHANNELS * tiles),
                nullable=False,
                metadata=obs,
            ),
            pa.field(
                "action_mask",
                pa.list_(pa.bool_(), tiles * 4),
                nullable=False,
                metadata={"shape": json.dumps([tiles * 4]), "dtype": "|b1"},
            ),
        ]
    meta = {"format_version": FORMAT_VERSION, "states": states, "height": height, "width": width}
    return pa.schema(fields, metadata={_METADATA_KEY: json.dumps(meta).encode()})


class _ParquetEncoder(ShardEncoder):
    def __init__(self, fmt: ParquetFormat, out: ChecksumWriter, height: int, width: int) -> None:
        pa, pq = _pyarrow()
        self._pa = pa
        self.out = out
        self.states = fmt.states
        self.schema = schema(fmt.states, height, width)
        self._states_before = 0
        # No dictionaries (zstd does better on these columns, and faster); statistics
        # where readers prune row groups.
        self._writer = pq.ParquetWriter(
            out,
            self.schema,
            compression=fmt.compression,
            compression_level=fmt.compression_level,
            use_dictionary=False,
            write_statistics=["sequence", "game_id", "tick"],
        )

    def write(self, chunk) -> None:
        table = self._pa.Table.from_arrays(self._columns(chunk), schema=self.schema)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def _columns(self, part) -> list:
        """The Arrow columns of one part, sharing its memory where the types allow."""
        pa = self._pa
        n = len(part)
        columns = [pa.array(np.ascontiguousarray(getattr(part, name))) for name in ROW_COLUMNS]
        if self.states == "raw":
            base = np.int32(self._states_before)
            columns += [pa.array(part.state_index + base), pa.array(part.next_state_index + base)]
            states = len(part.state_kind)
            offsets = pa.array(
                (np.arange(n + 1, dtype=np.int64) * states // max(n, 1)).astype(np.int32)
            )
            for name in STATE_TABLES:
                table = np.ascontiguousarray(getattr(part, name))
                item_bytes = table.itemsize * table.shape[1] * table.shape[2]
                values = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(item_bytes), states, [None, pa.py_buffer(table)]
                )
                columns.append(pa.ListArray.from_arrays(offsets, values))
            self._states_before += states
        else:
            for name in ("state", "next_state", "action_mask"):
                array = np.ascontiguousarray(getattr(part, name))
                flat = pa.array(array.reshape(-1))
                columns.append(
                    pa.FixedSizeListArray.from_arrays(flat, int(np.prod(array.shape[1:])))
                )
        return columns

    def finish(self) -> dict[str, bytes]:
        self._writer.close()
        return {}


@register_format
class ParquetFormat(ShardFormat):
    name = "parquet"
    extensions = ("parquet",)

    def __init__(
        self,
        states: str = "raw",
        compression: str = "zstd",
        compression_level: int | None = 1,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
    ) -> None:
        _pyarrow()
        if states not in STATE_FORMS:
            raise ValueError(f"states: expected 'raw' or 'decoded', got {states!r}")
        if compression not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ValueError(
                "compression: expected zstd, snappy, gzip, lz4, brotli or none, got "
                f"{compression!r}"
            )
        self.states = states
        self.compression = compression
        self.compression_level = (
            compression_level if compression in ("zstd", "gzip", "brotli") else None
        )
        self.army_scaling, self.army_scale = army_scaling, float(army_scale)

    def encoder(self, out: ChecksumWriter, height: int, width: int) -> ShardEncoder:
        return _ParquetEncoder(self, out, height, width)

    def prepare(self, batch):
        if self.states == "decoded" and isinstance(batch, RawBatch):
            return batch.decode(self.army_scaling, self.army_scale)
        return batch

    def options(self) -> dict:
        return {"compression": self.compression}

    @classmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | DecodedBatch]:
        pa, pq = _pyarrow()
        try:
            shard = pq.ParquetFile(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:  # every Arrow error, not only ArrowInvalid
            raise StorageError(f"not a Parquet shard: {exc}") from None
        game_column = shard.schema_arrow.get_field_index("game_id")
        for i in range(shard.num_row_groups):
            if game_ids is not None and game_column >= 0:
                stats = shard.metadata.row_group(i).column(game_column).statistics
                if (
                    stats is not None
                    and stats.has_min_max
                    and not ((game_ids >= stats.min) & (game_ids <= stats.max)).any()
                ):
                    continue
            try:
                batch = row_group_batch(shard, i)
            except pa.ArrowException as exc:
                raise StorageError(f"damaged Parquet row group {i}: {exc}") from None
            yield batch


def _shard_meta(shard) -> dict:
    raw = (shard.schema_arrow.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise StorageError("a Parquet file without generals_rl metadata is not an experience shard")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise StorageError(
            f"Parquet shard format version {meta.get('format_version')} is not supported"
        )
    return meta


def row_group_batch(shard, index: int) -> RawBatch | DecodedBatch:
    """Row group ``index`` of a ``pyarrow.parquet.ParquetFile`` as a batch."""
    meta = _shard_meta(shard)
    height, width = meta["height"], meta["width"]
    table = shard.read_row_group(index)
    n = table.num_rows
    # Shards written before the source columns existed lack them: defaults then.
    columns: dict[str, Any] = {
        name: table.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        for name, dtype in ROW_COLUMNS.items()
        if name in table.column_names or name not in SOURCE_COLUMNS
    }
    if stored_form(meta["states"]) == "raw":
        state_index = table.column("state_index").to_numpy()
        next_state_index = table.column("next_state_index").to_numpy()
        # Every state of a row group is used by one of its rows: the smallest index
        # is where its states begin in the file's table.
        base = int(min(state_index.min(), next_state_index.min())) if n else 0
        tables = {}
        for name, dtype in STATE_TABLES.items():
            values = table.column(name).combine_chunks().flatten()
            item = np.dtype(dtype).newbyteorder("<")
            size = height * width * item.itemsize
            raw = np.frombuffer(values.buffers()[1], dtype=np.uint8)[
                values.offset * size : (values.offset + len(values)) * size
            ]
            tables[name] = (
                raw.view(item).astype(dtype, copy=False).reshape(len(values), height, width)
            )
        return RawBatch(
            **columns,
            state_index=(state_index - base).astype(np.int32),
            next_state_index=(next_state_index - base).astype(np.int32),
            **tables,
            next_sequence=int(columns["sequence"][-1]) + 1 if n else 0,
        )
    decoded: dict[str, Any] = {}
    specs: tuple[tuple[str, tuple[int, ...], Any], ...] = (
        ("state", (OBSERVATION_CHANNELS, height, width), np.float32),
        ("next_state", (OBSERVATION_CHANNELS, height, width), np.float32),
        ("action_mask", (height * width * 4,), np.bool_),
    )
    for name, shape, element in specs:
        flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        decoded[name] = flat.astype(element, copy=False).reshape((n, *shape))
    return DecodedBatch(
        **columns, **decoded, next_sequence=int(columns["sequence"][-1]) + 1 if n else 0
    )


class ParquetWriter(ShardWriter):
    """Parquet shards in a local directory (see ``generals_rl.storage.layout``
    for where they go). ``states``: "raw" (default) or "decoded"; ``compression``: zstd
    (default, ``compression_level`` 1) or another Parquet codec. Rotation, retry
    and resume options as for ``ShardWriter`` (``max_experiences``, ``max_bytes``,
    ``max_age``, ``chunk_size`` become a ``Rotation``)."""

    def __init__(self, destination, **options) -> None:
        shard_format, writer_options = format_and_writer_options(ParquetFormat, options)
        super().__init__(LocalStore(destination), shard_format, **writer_options)


__all__ = ["ParquetFormat", "ParquetWriter", "row_group_batch", "schema"]
