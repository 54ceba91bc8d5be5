"""What a storage format is (its name, extensions and codec) and the registry
formats enter themselves into when their module is imported: ``parquet.py``,
``tfrecord.py`` and ``npz.py`` depend on this module, never the reverse. The
package imports all three, so every format is registered once
``generals_rl.storage`` is."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import TypeVar

from ..experience.batch import DecodedBatch, RawBatch
from ..experience.compact import CompactBatch
from ._batches import STATE_FORMS
from .checksum import ChecksumWriter
from .layout import SHARD_NAME


class ShardEncoder(abc.ABC):
    """Encodes one shard into a file, a chunk at a time."""

    out: ChecksumWriter

    @abc.abstractmethod
    def write(self, chunk: RawBatch | DecodedBatch) -> None:
        """Encodes one chunk (``_batches.chunk_of``). Its arrays may live in memory
        the writer reuses for the next chunk: an encoder keeping them copies them."""

    @abc.abstractmethod
    def finish(self) -> dict[str, bytes]:
        """Completes the file; returns companion files (suffix -> contents) that are
        published beside the shard, before it."""

    @property
    def bytes_written(self) -> int:
        return self.out.bytes_written


class ShardFormat(abc.ABC):
    """A storage format: its name, file extension and codec."""

    name: str
    extensions: tuple[str, ...]  # the first is what the writer uses
    states: str = "raw"
    state_forms: tuple[str, ...] = STATE_FORMS  # the values ``states`` may take
    # Whether a chunk reaches the encoder as one joined batch (one compact, sorted
    # state table) rather than as the batches written.
    joined_chunks: bool = True
    # Rows encoded at a time. None: rows wait until ``Rotation.chunk_size`` are
    # pending and are encoded as one chunk (a Parquet row group, one sorted state
    # table). A number: what is written is encoded at once, this many rows at a
    # time (formats whose records stand alone, so nothing is gained by waiting).
    encode_rows: int | None = None

    @property
    def extension(self) -> str:
        return self.extensions[0]

    @abc.abstractmethod
    def encoder(self, out: ChecksumWriter, height: int, width: int) -> ShardEncoder: ...

    def prepare(self, batch: RawBatch | DecodedBatch) -> RawBatch | DecodedBatch:
        """The batch in the form this format stores (decoded writers decode RawBatch)."""
        return batch

    def options(self) -> dict:
        """Format options recorded in the index entry."""
        return {}

    @classmethod
    @abc.abstractmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | DecodedBatch | CompactBatch]:
        """The batches of one shard's bytes; StorageError if it is malformed. With
        ``game_ids`` (a sorted uint64 array) a format may skip chunks holding none
        of them (rows are filtered by the caller)."""


_REGISTRY: dict[str, type[ShardFormat]] = {}
FormatClass = TypeVar("FormatClass", bound=type[ShardFormat])


def register_format(cls: FormatClass) -> FormatClass:
    """Class decorator entering a format into the registry under its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"format: {cls.name!r} is registered already")
    _REGISTRY[cls.name] = cls
    return cls


def format_names() -> tuple[str, ...]:
    """The registered formats' names, in registration order."""
    return tuple(_REGISTRY)


def format_for(name: str) -> type[ShardFormat]:
    """The format class called ``name``; ValueError names the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(repr(n) for n in _REGISTRY)
        raise ValueError(f"format: expected one of {known}, got {name!r}") from None


def format_of_file(name: str) -> type[ShardFormat] | None:
    """The format of a shard file by its extension (None if not a shard)."""
    match = SHARD_NAME.match(name)
    if match is None:
        return None
    for cls in _REGISTRY.values():
        if match["ext"] in cls.extensions:
            return cls
    return None
