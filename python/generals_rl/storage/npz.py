"""NPZ shards: one ``.npz`` per shard holding the batch arrays under their field
names (``numpy.load`` reads them without pickles).

Raw states: the record columns, ``state_index``, ``next_state_index`` and the
state tables ``state_kind`` (uint8), ``state_owner`` (int16), ``state_army``
(int32), each ``(states, H, W)``. Decoded states: the record columns, ``state`` and
``next_state`` float32 ``(n, 9, H, W)`` and ``action_mask`` bool ``(n, H*W*4)``.
``_meta`` is a JSON string (format version, states, board shape).
``compressed=True`` uses ``numpy.savez_compressed`` (zip deflate).
"""

from __future__ import annotations

import copy
import io
import json
import tokenize
import zipfile
from collections.abc import Iterator

import numpy as np

from ..experience.batch import (
    ROW_COLUMNS,
    SOURCE_COLUMNS,
    STATE_COLUMNS,
    STATE_TABLES,
    DecodedBatch,
    RawBatch,
)
from ._batches import DECODED_COLUMNS, STATE_FORMS, board_shape, nbytes, stored_form
from ._options import format_and_writer_options
from .checksum import ChecksumWriter
from .errors import StorageError
from .formats import ShardEncoder, ShardFormat, register_format
from .local import LocalStore
from .shard_writer import ShardWriter

FORMAT_VERSION = 1


class _NpzEncoder(ShardEncoder):
    """Holds the shard's parts until ``finish`` (a zip of whole arrays cannot be
    streamed); ``bytes_written`` is their size in memory until then."""

    def __init__(self, fmt: NpzFormat, out: ChecksumWriter, height: int, width: int) -> None:
        self.out = out
        self.fmt = fmt
        self.height, self.width = height, width
        self._parts: list = []
        self._held = 0

    @property
    def bytes_written(self) -> int:
        return self.out.bytes_written or self._held

    def write(self, chunk) -> None:
        held = copy.deepcopy(chunk)  # the chunk's memory is reused for the next one
        self._parts.append(held)
        self._held += nbytes(held)

    def finish(self) -> dict[str, bytes]:
        parts, self._parts = self._parts, []
        joined: RawBatch | DecodedBatch
        if isinstance(parts[0], RawBatch):
            joined = parts[0] if len(parts) == 1 else RawBatch.concat(parts)
            names = (*ROW_COLUMNS, *STATE_COLUMNS, *STATE_TABLES)
        else:
            joined = DecodedBatch.concat(parts)
            names = (*ROW_COLUMNS, *DECODED_COLUMNS)
        arrays = {name: getattr(joined, name) for name in names}
        del parts, joined  # the parts, once joined, are not needed while the zip is built
        meta = {
            "format_version": FORMAT_VERSION,
            "states": self.fmt.states,
            "height": self.height,
            "width": self.width,
        }
        arrays["_meta"] = np.array(json.dumps(meta))
        # What numpy.savez writes, but straight into the shard (which is not
        # seekable: the zip takes data descriptors), not through a copy in memory.
        compression = zipfile.ZIP_DEFLATED if self.fmt.compressed else zipfile.ZIP_STORED
        with zipfile.ZipFile(self.out, mode="w", compression=compression) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        return {}


@register_format
class NpzFormat(ShardFormat):
    name = "npz"
    extensions = ("npz",)

    def __init__(
        self,
        states: str = "raw",
        compressed: bool = False,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
    ) -> None:
        if states not in STATE_FORMS:
            raise ValueError(f"states: expected 'raw' or 'decoded', got {states!r}")
        self.states = states
        self.compressed = bool(compressed)
        self.army_scaling, self.army_scale = army_scaling, float(army_scale)

    def encoder(self, out: ChecksumWriter, height: int, width: int) -> ShardEncoder:
        return _NpzEncoder(self, out, height, width)

    def prepare(self, batch):
        if self.states == "decoded" and isinstance(batch, RawBatch):
            return batch.decode(self.army_scaling, self.army_scale)
        return batch

    def options(self) -> dict:
        return {"compressed": self.compressed}

    @classmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | DecodedBatch]:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                meta = json.loads(str(arrays["_meta"]))
                if meta.get("format_version") != FORMAT_VERSION:
                    raise StorageError(
                        f"NPZ shard format version {meta.get('format_version')} is not supported"
                    )
                # Shards written before the source columns existed lack them: defaults then.
                columns = {
                    name: arrays[name].astype(dtype, copy=False)
                    for name, dtype in ROW_COLUMNS.items()
                    if name in arrays or name not in SOURCE_COLUMNS
                }
                n = len(columns["sequence"])
                if stored_form(meta["states"]) == "raw":
                    extra = {
                        name: arrays[name].astype(dtype, copy=False)
                        for name, dtype in (*STATE_COLUMNS.items(), *STATE_TABLES.items())
                    }
                    batch: RawBatch | DecodedBatch = RawBatch(**columns, **extra)
                else:
                    extra = {
                        name: arrays[name].astype(dtype, copy=False)
                        for name, dtype in DECODED_COLUMNS.items()
                    }
                    batch = DecodedBatch(**columns, **extra)
        except StorageError:
            raise
        # zipfile raises NotImplementedError for a version or compression it does not know
        # and RuntimeError for an encrypted member; numpy parses an array's header as Python
        # literals (SyntaxError, TokenError).
        except (
            OSError,
            RuntimeError,
            ValueError,
            KeyError,
            zipfile.BadZipFile,
            EOFError,
            NotImplementedError,
            SyntaxError,
            tokenize.TokenError,
        ) as exc:
            raise StorageError(f"not an NPZ experience shard: {exc}") from None
        batch.next_sequence = int(columns["sequence"][-1]) + 1 if n else 0
        if n:
            board_shape(batch)
        yield batch


class NpzWriter(ShardWriter):
    """NPZ shards in a local directory. ``states``: "raw" (default) or
    "decoded"; ``compressed``: zip deflate. Rotation by ``max_bytes`` counts the
    arrays held in memory, as the file is written when the shard closes. Rotation,
    retry and resume options as for ``ShardWriter``."""

    def __init__(self, destination, **options) -> None:
        shard_format, writer_options = format_and_writer_options(NpzFormat, options)
        super().__init__(LocalStore(destination), shard_format, **writer_options)
