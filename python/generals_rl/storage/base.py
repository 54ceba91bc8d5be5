"""The writer interface and the shard machinery every format shares: rotation by
experience count, bytes or age; crash-safe commits; the per-partition index; and
recovery of the last durably written sequence after a restart.

Layout of a destination (a local directory or an S3 prefix)::

    year=YYYY/month=MM/day=DD/hour=HH/game_<id>_<nnnn>.<ext>   one shard
    year=YYYY/month=MM/day=DD/hour=HH/_index.json              the partition index

The hour is the UTC hour in which the shard received its first experience, ``<id>``
the game id (16 hex digits) of the shard's first experience and ``<nnnn>`` the
shard's ordinal within its partition. A shard becomes visible only once complete;
the index lists it only after that, and the index is what readers and ``resume``
go by.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO

import numpy as np

from ..experience.batch import ExperienceBatch, RawBatch
from ._batches import (
    STATE_MODES,
    BatchQueue,
    ChunkBuffer,
    Scratch,
    board_shape,
    check_batch,
    chunk_of,
    describe,
    take_rows,
)

log = logging.getLogger("generals_rl.storage")

INDEX_NAME = "_index.json"
INDEX_VERSION = 1
SHARD_NAME = re.compile(r"^game_(?P<game>[0-9a-f]{16})_(?P<ordinal>\d{4,})\.(?P<ext>[a-z0-9.]+)$")
PARTITION_KEYS = ("year", "month", "day", "hour")
_TEMP_MARK = ".tmp-"


class StorageError(RuntimeError):
    """A destination that cannot be written or read, named with the cause."""


# ---- small helpers ----------------------------------------------------------------


def partition_of(timestamp: float) -> str:
    """``year=YYYY/month=MM/day=DD/hour=HH`` of a Unix time, in UTC."""
    t = time.gmtime(timestamp)
    return f"year={t.tm_year:04d}/month={t.tm_mon:02d}/day={t.tm_mday:02d}/hour={t.tm_hour:02d}"


def partition_start(partition: str) -> float:
    """The Unix time at which a partition's hour starts; ValueError if malformed."""
    parts = partition.strip("/").split("/")
    try:
        values = dict(p.split("=", 1) for p in parts)
        fields_ = [int(values[k]) for k in PARTITION_KEYS]
    except (KeyError, ValueError):
        raise ValueError(f"{partition!r} is not a year=/month=/day=/hour= partition") from None
    return datetime(*fields_, tzinfo=timezone.utc).timestamp()


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def shard_name(first_game_id: int, ordinal: int, extension: str) -> str:
    return f"game_{int(first_game_id):016x}_{ordinal:04d}.{extension}"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and _TEMP_MARK in name


def temporary_name(name: str) -> str:
    return f".{name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def write_all(file, data) -> None:
    """Writes all of ``data`` to an unbuffered file (which may take part of it per call)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[file.write(view) :]


def failure_reason(exc: BaseException) -> str:
    """A short description of why a destination failed: the OS's words for an
    OSError underneath (``no space left on device``), else the message."""
    cause = exc
    while isinstance(cause, StorageError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[0].lower() + cause.strerror[1:]
    return str(exc) or type(exc).__name__


class ChecksumWriter:
    """The file-like an encoder writes a shard into. It counts the bytes and
    computes their CRC32C, and holds them in memory until ``drain`` appends them to
    the staging file (an unbuffered file of its own).

    So an encoder never sees a failing file (pyarrow's writer, for one, closes for
    good on the first failed write), and a failed ``drain`` cuts the file back to
    what it held before and keeps the bytes for the next attempt: the file only
    ever holds a prefix of what was encoded, and once drained exactly that, so the
    size and checksum recorded for a shard are its file's."""

    def __init__(self, raw: BinaryIO) -> None:
        from ._crc import crc32c

        self._crc32c = crc32c
        self.raw = raw
        self.bytes_written = 0
        self.crc = 0
        self._held = bytearray()
        self._on_file = 0
        self._torn = False  # a failed drain could not cut the file back

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._held += view
        self.crc = self._crc32c(view, self.crc)
        self.bytes_written += len(view)
        return len(view)

    @property
    def bytes_held(self) -> int:
        """Bytes encoded but not yet in the file."""
        return len(self._held)

    def drain(self) -> None:
        """Appends the held bytes to the file; on failure the file is as before."""
        if self._torn:
            self._cut_back()
        if not self._held:
            return
        try:
            write_all(self.raw, self._held)
        except BaseException:
            # A copy: the failed write's views of the old one live on in the traceback.
            self._held = bytearray(self._held)
            try:
                self._cut_back()
            except OSError:
                self._torn = True
            raise
        self._on_file += len(self._held)
        self._held = bytearray()

    def _cut_back(self) -> None:
        self.raw.truncate(self._on_file)
        self.raw.seek(self._on_file)
        self._torn = False

    def check_file(self) -> None:
        """StorageError unless the file holds every byte encoded, and only those."""
        if self.raw.closed:  # closed by an attempt at publishing, which came after this check
            return
        size = os.fstat(self.raw.fileno()).st_size
        if self._held or size != self.bytes_written:
            raise StorageError(
                f"the staging file holds {size} bytes, {self.bytes_written} were encoded"
            )

    def tell(self) -> int:
        return self.bytes_written

    def flush(self) -> None:  # the bytes reach the file on drain
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:  # the staging area owns the file
        pass

    @property
    def checksum(self) -> str:
        return f"crc32c:{self.crc:08x}"


@dataclass(frozen=True)
class Rotation:
    """When a shard is closed and the next begins: at ``max_experiences``
    experiences, once its encoded size reaches ``max_bytes`` (checked after each
    chunk), or ``max_age`` seconds after its first experience (checked on every
    write and ``poll``). Batches are encoded once at least ``chunk_size``
    experiences are pending (a Parquet row group holds one such chunk)."""

    max_experiences: int = 500_000
    max_bytes: int = 256 * 1024 * 1024
    max_age: float = 600.0
    chunk_size: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_experiences", "max_bytes", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if (
            isinstance(self.max_age, bool)
            or not isinstance(self.max_age, (int, float))
            or not self.max_age > 0
        ):
            raise ValueError(f"max_age: must be a positive number of seconds, got {self.max_age!r}")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts at committing a shard: ``base_delay * 2**k``
    seconds (at most ``max_delay``, with up to 25% jitter); ``flush``/``close`` give
    up after ``attempts`` attempts."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if int(self.attempts) < 1:
            raise ValueError(f"attempts: must be at least 1, got {self.attempts}")
        if not (self.base_delay >= 0 and self.max_delay >= 0):
            raise ValueError("base_delay, max_delay: must be >= 0")

    def delay(self, failures: int) -> float:
        base = min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1))
        return base * (1.0 + 0.25 * (secrets.randbelow(1000) / 1000.0))


# ---- the interface -----------------------------------------------------------------


class Writer(abc.ABC):
    """Writes experience batches durably. Use as a context manager or call ``close``.

    ``write`` takes the batches cursors return (``RawBatch``; writers storing decoded
    states also take ``ExperienceBatch``). ``durable_sequence`` is the highest
    sequence number known to be durably stored (None before any), and
    ``resume_sequence`` where a producer should continue after a restart.
    """

    @abc.abstractmethod
    def write(self, batch: RawBatch | ExperienceBatch) -> None: ...

    @abc.abstractmethod
    def flush(self) -> None:
        """Commits everything written so far (closing the current shard)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flushes and releases the destination; idempotent."""

    def poll(self) -> None:
        """Time-based work: rotation by age and retries of failed commits."""

    def abort(self) -> None:
        """Releases the destination without committing what is held (it is not
        stored); for giving up on a destination that keeps failing."""

    @property
    @abc.abstractmethod
    def durable_sequence(self) -> int | None: ...

    @property
    def resume_sequence(self) -> int:
        """The first sequence number not durably stored (0 if none is)."""
        durable = self.durable_sequence
        return 0 if durable is None else durable + 1

    @abc.abstractmethod
    def stats(self) -> dict: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- formats and stores (implemented per format and per destination kind) --------


class ShardEncoder(abc.ABC):
    """Encodes one shard into a file, a chunk at a time."""

    @abc.abstractmethod
    def write(self, chunk: RawBatch | ExperienceBatch) -> None:
        """Encodes one chunk (``_batches.chunk_of``). Its arrays may live in memory
        the writer reuses for the next chunk: an encoder keeping them copies them."""

    @abc.abstractmethod
    def finish(self) -> dict[str, bytes]:
        """Completes the file; returns companion files (suffix -> contents) that are
        published beside the shard, before it."""

    @property
    def bytes_written(self) -> int:
        return self.out.bytes_written  # type: ignore[attr-defined]


class ShardFormat(abc.ABC):
    """A storage format: its name, file extension and codec."""

    name: str
    extensions: tuple[str, ...]  # the first is what the writer uses
    states: str = "compact"
    # Whether a chunk reaches the encoder as one joined batch (compact, sorted
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

    def prepare(self, batch: RawBatch | ExperienceBatch) -> RawBatch | ExperienceBatch:
        """The batch in the form this format stores (decoded writers decode RawBatch)."""
        return batch

    def options(self) -> dict:
        """Format options recorded in the index entry."""
        return {}

    @classmethod
    @abc.abstractmethod
    def read(cls, data: bytes, game_ids=None) -> Iterator[RawBatch | ExperienceBatch]:
        """The batches of one shard's bytes; StorageError if it is malformed. With
        ``game_ids`` (a sorted uint64 array) a format may skip chunks holding none
        of them (rows are filtered by the caller)."""


class Staging(abc.ABC):
    """A file being written that becomes a shard once published."""

    file: BinaryIO

    @abc.abstractmethod
    def discard(self) -> None: ...


class Store(abc.ABC):
    """A destination: local directory or object store prefix. Paths are relative and
    use ``/``."""

    url: str

    @abc.abstractmethod
    def list_dir(self, path: str) -> tuple[list[str], list[str]]:
        """(subdirectories, files) directly under ``path`` ("" is the root)."""

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def put_bytes(self, path: str, data: bytes) -> None:
        """Writes ``path`` atomically: readers see the old or the new contents."""

    @abc.abstractmethod
    def stage(self, path: str) -> Staging:
        """A staging file for the shard ``path``; invisible to readers."""

    @abc.abstractmethod
    def publish(self, staging: Staging, path: str, checksum: str, metadata: dict) -> None:
        """Makes the staged file durable and visible as ``path``."""

    @abc.abstractmethod
    def remove_leftovers(self, partition: str) -> int:
        """Deletes staging files a crashed writer left in ``partition``."""

    def latest_partitions(self, count: int) -> list[str]:
        """The ``count`` newest ``year=/month=/day=/hour=`` partitions, oldest first."""
        found: list[str] = []

        def walk(prefix: str, depth: int) -> None:
            if len(found) >= count:
                return
            subdirs, _ = self.list_dir(prefix)
            key = PARTITION_KEYS[depth]
            names = sorted((d for d in subdirs if d.startswith(key + "=")), reverse=True)
            for name in names:
                path = f"{prefix}/{name}" if prefix else name
                if depth == len(PARTITION_KEYS) - 1:
                    found.append(path)
                    if len(found) >= count:
                        return
                else:
                    walk(path, depth + 1)

        walk("", 0)
        return sorted(found)

    def partitions(self) -> list[str]:
        """Every partition, oldest first."""
        out: list[str] = []

        def walk(prefix: str, depth: int) -> None:
            subdirs, _ = self.list_dir(prefix)
            key = PARTITION_KEYS[depth]
            for name in sorted(d for d in subdirs if d.startswith(key + "=")):
                path = f"{prefix}/{name}" if prefix else name
                if depth == len(PARTITION_KEYS) - 1:
                    out.append(path)
                else:
                    walk(path, depth + 1)

        walk("", 0)
        return out

    def read_index(self, partition: str) -> list[dict]:
        """The entries of a partition's index (empty if it has none)."""
        path = f"{partition}/{INDEX_NAME}"
        try:
            data = self.read_bytes(path)
        except FileNotFoundError:
            return []
        try:
            index = json.loads(data)
            if index.get("version") != INDEX_VERSION:
                raise StorageError(
                    f"{self.url}/{path}: index version {index.get('version')} is not supported"
                )
            return list(index["shards"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{self.url}/{path}: malformed index ({exc})") from None

    def write_index(self, partition: str, entries: list[dict]) -> None:
        body = {"version": INDEX_VERSION, "partition": partition, "shards": entries}
        self.put_bytes(f"{partition}/{INDEX_NAME}", json.dumps(body, indent=1).encode())


def format_for(name: str) -> type[ShardFormat]:
    """The format class called ``name`` (parquet, tfrecord, npz)."""
    if name == "parquet":
        from .parquet import ParquetFormat

        return ParquetFormat
    if name == "tfrecord":
        from .tfrecord import TFRecordFormat

        return TFRecordFormat
    if name == "npz":
        from .npz import NpzFormat

        return NpzFormat
    raise ValueError(f"format: expected 'parquet', 'tfrecord' or 'npz', got {name!r}")


def format_of_file(name: str) -> type[ShardFormat] | None:
    """The format of a shard file by its extension (None if not a shard)."""
    match = SHARD_NAME.match(name)
    if match is None:
        return None
    for candidate in ("parquet", "tfrecord", "npz"):
        cls = format_for(candidate)
        if match["ext"] in cls.extensions:
            return cls
    return None


# ---- the shared shard writer --------------------------------------------------------


@dataclass
class _OpenShard:
    partition: str
    name: str
    staging: Staging
    out: ChecksumWriter
    encoder: ShardEncoder
    height: int
    width: int
    time_first: float
    time_last: float
    summaries: list = field(default_factory=list)
    game_ids: list = field(default_factory=list)

    @property
    def experiences(self) -> int:
        return sum(s["experiences"] for s in self.summaries)


@dataclass
class _SealedShard:
    partition: str
    name: str
    staging: Staging
    out: ChecksumWriter
    entry: dict
    companions: dict
    published: bool = False


class ShardWriter(Writer):
    """Writes shards of one format to one store, rotating, committing and indexing
    them. One writer per destination at a time.

    With ``resume=True`` (default) opening recovers the destination's state: it
    indexes complete shards a crash left unindexed, deletes staging leftovers,
    reads the last durable sequence, and then ignores rows with a sequence number
    below ``resume_sequence`` (they are stored already), so a restarted producer
    that replays its sequence numbers continues without gaps or duplicates.

    A destination that fails (a full disk, an unreachable server) loses nothing:
    every step towards it (a chunk reaching the staging file, a shard's commit,
    the index) either completes or leaves the writer as before, to be tried again
    on the next ``write``, ``poll`` or ``flush``. While a failure lasts ``write``
    keeps taking batches only as long as they fit in what it holds anyway (less
    than a chunk); beyond that it tries the destination again and, if it still
    fails, raises StorageError having taken nothing of the batch, so the same
    batch can be written again later.
    """

    def __init__(
        self,
        store: Store,
        shard_format: ShardFormat,
        *,
        rotation: Rotation | None = None,
        retry: RetryPolicy | None = None,
        resume: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if shard_format.states not in STATE_MODES:
            raise ValueError(f"states: expected one of {STATE_MODES}, got {shard_format.states!r}")
        self.store = store
        self.format = shard_format
        self.rotation = rotation or Rotation()
        self.retry = retry or RetryPolicy()
        self._clock = clock
        chunked = shard_format.encode_rows is None
        self._pending = ChunkBuffer() if chunked else BatchQueue()
        # Rows pending before they are encoded, and at most per encoder call.
        self._encode_at = self.rotation.chunk_size if chunked else 1
        self._encode_limit = self.rotation.max_experiences if chunked else shard_format.encode_rows
        self._pending_shape: tuple[int, int] | None = None
        self._scratch = Scratch()
        self._pending_since: float | None = None
        self._open: _OpenShard | None = None
        self._sealed: deque[_SealedShard] = deque()
        self._index_cache: tuple[str, list[dict]] | None = None
        self._closed = False
        self._durable: int | None = None
        self._skip_below: int | None = None
        self._failure: str | None = None  # why the destination failed last, until it works again
        self._failures = 0  # consecutive failed attempts
        self._retry_at = 0.0
        self._stats = {
            "experiences_written": 0,
            "experiences_durable": 0,
            "experiences_skipped": 0,
            "shards_committed": 0,
            "bytes_committed": 0,
            "commit_failures": 0,
            "last_error": None,
            "recovered_shards": 0,
            "removed_leftovers": 0,
        }
        if resume:
            self._recover()

    # -- recovery --

    def _recover(self) -> None:
        durable = None
        for partition in self.store.latest_partitions(2):
            self._stats["removed_leftovers"] += self.store.remove_leftovers(partition)
            entries = self.store.read_index(partition)
            listed = {e["name"] for e in entries}
            _, files = self.store.list_dir(partition)
            adopted = False
            for name in sorted(files):
                cls = format_of_file(name)
                if cls is None or name in listed:
                    continue
                entry = self._describe_orphan(cls, partition, name)
                if entry is not None:
                    entries.append(entry)
                    adopted = True
                    self._stats["recovered_shards"] += 1
            if adopted:
                entries.sort(key=lambda e: e.get("sequence_first", -1))
                self.store.write_index(partition, entries)
            for entry in entries:
                if entry.get("experiences"):
                    last = int(entry["sequence_last"])
                    durable = last if durable is None else max(durable, last)
        self._durable = durable
        self._skip_below = None if durable is None else durable + 1

    def _describe_orphan(self, cls: type[ShardFormat], partition: str, name: str) -> dict | None:
        """The index entry of a complete shard that a crash left unindexed."""
        path = f"{partition}/{name}"
        try:
            data = self.store.read_bytes(path)
            batches = list(cls.read(data))
        except Exception as exc:
            log.warning(
                "%s/%s: not indexed and not readable, left alone (%s)", self.store.url, path, exc
            )
            return None
        from ._crc import crc32c

        entry = describe(batches) if batches else {"experiences": 0}
        entry.pop("game_ids", None)
        now = self._clock()
        entry.update(
            key=path,
            name=name,
            format=cls.name,
            states="decoded" if batches and isinstance(batches[0], ExperienceBatch) else "compact",
            bytes=len(data),
            checksum=f"crc32c:{crc32c(data):08x}",
            time_first=partition_start(partition),
            time_last=now,
            committed=iso_time(now),
            recovered=True,
        )
        return entry

    # -- writing --

    def write(self, batch: RawBatch | ExperienceBatch) -> None:
        if self._closed:
            raise StorageError(f"{self.store.url}: write after close")
        check_batch(batch, self.format.states)
        if len(batch) == 0:
            return
        batch = self.format.prepare(batch)
        if self._skip_below is not None:
            kept = new_rows(batch, self._skip_below - 1)
            self._stats["experiences_skipped"] += len(batch) - len(kept)
            if len(kept) == 0:
                return
            batch = kept
        now = self._clock()
        shape = board_shape(batch)
        other_shape = self._pending_shape not in (None, shape) or (
            self._open is not None and (self._open.height, self._open.width) != shape
        )
        if other_shape or (
            self._failure is not None and self._pending.rows + len(batch) >= self._encode_at
        ):
            # Taking the batch needs the destination now: to close the shard of
            # the other board size, or to encode what a failure held back.
            self._advance(now, cut=other_shape)
        self._pending.append(batch)
        self._pending_shape = shape
        if self._pending_since is None:
            self._pending_since = now
        self._stats["experiences_written"] += len(batch)
        self._attempt(now)

    def poll(self) -> None:
        if self._closed:
            return
        self._attempt(self._clock())

    def flush(self) -> None:
        """Commits everything written, trying ``retry.attempts`` times (with the
        retry policy's delays); StorageError if the destination still fails, with
        everything still held for a later ``flush``."""
        if self._closed:
            return
        attempt = 0
        while True:
            try:
                self._advance(self._clock(), cut=True)
                return
            except StorageError as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise StorageError(f"{exc} (gave up after {attempt} attempts)") from exc
                time.sleep(self.retry.delay(attempt))

    def close(self) -> None:
        """Flushes and releases the destination. If the flush fails the writer stays
        open, holding what it could not commit: ``close`` can be called again."""
        if self._closed:
            return
        self.flush()
        self._closed = True

    def abort(self) -> None:
        """Closes without committing: staging files are removed, and what was
        written after ``durable_sequence`` is not stored."""
        if self._closed:
            return
        self._closed = True
        held = self.stats()["experiences_buffered"] + sum(
            s.entry["experiences"] for s in self._sealed
        )
        stagings = [s.staging for s in self._sealed if not s.published]
        if self._open is not None:
            stagings.append(self._open.staging)
        for staging in stagings:
            try:
                staging.discard()
            except OSError as exc:
                log.warning("%s: could not remove a staging file: %s", self.store.url, exc)
        if held:
            log.warning(
                "%s: %d experiences written after sequence %s are not stored",
                self.store.url,
                held,
                self._durable,
            )

    @property
    def durable_sequence(self) -> int | None:
        return self._durable

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict:
        s = dict(self._stats)
        s["durable_sequence"] = self._durable
        s["shards_pending"] = len(self._sealed)
        shard = self._open  # read once: a sink thread may be writing
        s["experiences_buffered"] = self._pending.rows + (
            shard.experiences if shard is not None else 0
        )
        s["bytes_per_experience"] = (
            s["bytes_committed"] / s["experiences_durable"] if s["experiences_durable"] else None
        )
        s["failure"] = self._failure
        s["destination"] = self.store.url
        s["format"] = self.format.name
        return s

    # -- moving rows to the destination --

    def _attempt(self, now: float) -> None:
        """``_advance`` when it is due (at once, or after the retry delay while the
        destination fails); a failure is kept for the next attempt, not raised."""
        if self._failure is not None and now < self._retry_at:
            return
        with contextlib.suppress(StorageError):
            self._advance(now)

    def _advance(self, now: float, cut: bool = False) -> None:
        """Moves pending rows into shards and shards to the destination as far as
        rotation asks (everything with ``cut``), in order. A failing step raises
        StorageError and leaves everything held, to be tried again."""
        try:
            self._advance_steps(now, cut)
        except (OSError, StorageError) as exc:
            self._failures += 1
            self._retry_at = self._clock() + self.retry.delay(self._failures)
            self._failure = failure_reason(exc)
            self._stats["commit_failures"] += 1
            self._stats["last_error"] = f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s (attempt %d)", self.store.url, exc, self._failures)
            raise StorageError(f"{self._failure} at {self.store.url}") from exc
        if self._failure is not None:
            log.warning(
                "%s: writing again after %d failed attempts", self.store.url, self._failures
            )
            self._failure, self._failures = None, 0

    def _advance_steps(self, now: float, cut: bool) -> None:
        if self._open is not None:
            self._open.out.drain()
        self._commit_sealed()
        while True:
            shard = self._open
            if shard is not None and (
                shard.experiences >= self.rotation.max_experiences
                or shard.encoder.bytes_written >= self.rotation.max_bytes
            ):
                self._seal()
                self._commit_sealed()
                continue
            room = self.rotation.max_experiences - (shard.experiences if shard is not None else 0)
            if not self._pending.rows or not (
                cut or self._aged(now) or self._pending.rows >= min(room, self._encode_at)
            ):
                break
            self._encode(self._pending.front(min(room, self._encode_limit)))
        if self._open is not None and (cut or self._aged(now)):
            self._seal()
            self._commit_sealed()

    def _aged(self, now: float) -> bool:
        since = self._open.time_first if self._open is not None else self._pending_since
        return since is not None and now - since >= self.rotation.max_age

    def _encode(self, rows: RawBatch | ExperienceBatch) -> None:
        """Encodes ``rows`` (the first pending rows) into the open shard, then drains
        them to its staging file; the rows leave the pending ones once encoded."""
        chunk = chunk_of(rows, joined=self.format.joined_chunks, scratch=self._scratch)
        if self._open is None:
            self._open = self._open_shard(chunk, self._pending_since)
        shard = self._open
        shard.encoder.write(chunk)
        summary = describe([chunk])
        shard.game_ids.append(summary.pop("game_ids"))
        shard.summaries.append(summary)
        shard.time_last = self._clock()
        self._pending.drop(len(rows))
        if not self._pending.rows:
            self._pending_since, self._pending_shape = None, None
        shard.out.drain()

    def _open_shard(self, chunk, first_time: float) -> _OpenShard:
        partition = partition_of(first_time)
        name = shard_name(
            int(chunk.game_id[0]), self._next_ordinal(partition), self.format.extension
        )
        staging = self.store.stage(f"{partition}/{name}")
        out = ChecksumWriter(staging.file)
        height, width = board_shape(chunk)
        try:
            encoder = self.format.encoder(out, height, width)
        except BaseException:
            staging.discard()
            raise
        return _OpenShard(
            partition, name, staging, out, encoder, height, width, first_time, first_time
        )

    def _next_ordinal(self, partition: str) -> int:
        entries = self._entries(partition)
        used = [int(m["ordinal"]) for m in (SHARD_NAME.match(e["name"]) for e in entries) if m]
        _, files = self.store.list_dir(partition)
        used += [int(m["ordinal"]) for m in (SHARD_NAME.match(f) for f in files) if m]
        used += [
            int(SHARD_NAME.match(s.name)["ordinal"])
            for s in self._sealed
            if s.partition == partition
        ]
        return max(used, default=0) + 1

    def _entries(self, partition: str) -> list[dict]:
        if self._index_cache is None or self._index_cache[0] != partition:
            self._index_cache = (partition, self.store.read_index(partition))
        return self._index_cache[1]

    def _seal(self) -> None:
        """Completes the open shard's encoding and queues it for its commit."""
        shard = self._open
        companions = shard.encoder.finish()
        self._open = None
        games = np.unique(np.concatenate(shard.game_ids))
        summaries = shard.summaries
        entry = {
            "key": f"{shard.partition}/{shard.name}",
            "name": shard.name,
            "format": self.format.name,
            "states": self.format.states,
            **self.format.options(),
            "experiences": sum(s["experiences"] for s in summaries),
            "sequence_first": min(s["sequence_first"] for s in summaries),
            "sequence_last": max(s["sequence_last"] for s in summaries),
            "bytes": shard.out.bytes_written,
            "checksum": shard.out.checksum,
            "time_first": shard.time_first,
            "time_last": shard.time_last,
            "created": iso_time(shard.time_first),
            "games": len(games),
            "game_id_min": f"{int(games[0]):016x}",
            "game_id_max": f"{int(games[-1]):016x}",
            "players": sorted({p for s in summaries for p in s["players"]}),
            "tick_min": min(s["tick_min"] for s in summaries),
            "tick_max": max(s["tick_max"] for s in summaries),
            "height": shard.height,
            "width": shard.width,
        }
        if companions:
            entry["companions"] = {suffix: f"{entry['key']}{suffix}" for suffix in companions}
        self._sealed.append(
            _SealedShard(shard.partition, shard.name, shard.staging, shard.out, entry, companions)
        )

    def _commit_sealed(self) -> None:
        """Commits sealed shards in order, so the durable sequence stays a prefix."""
        while self._sealed:
            self._publish(self._sealed[0])
            self._sealed.popleft()

    def _publish(self, sealed: _SealedShard) -> None:
        entry = sealed.entry
        if not sealed.published:
            sealed.out.drain()
            sealed.out.check_file()
            for suffix, data in sealed.companions.items():
                self.store.put_bytes(entry["key"] + suffix, data)
            metadata = {
                k: entry[k]
                for k in ("format", "states", "experiences", "sequence_first", "sequence_last")
            }
            self.store.publish(sealed.staging, entry["key"], entry["checksum"], metadata)
            sealed.published = True
        entry["committed"] = iso_time(self._clock())
        entries = [e for e in self._entries(sealed.partition) if e["name"] != sealed.name]
        self.store.write_index(sealed.partition, [*entries, entry])
        self._index_cache = (sealed.partition, [*entries, entry])
        self._durable = (
            entry["sequence_last"]
            if self._durable is None
            else max(self._durable, entry["sequence_last"])
        )
        self._stats["shards_committed"] += 1
        self._stats["bytes_committed"] += entry["bytes"] + sum(
            len(c) for c in sealed.companions.values()
        )
        self._stats["experiences_durable"] += entry["experiences"]


def new_rows(batch, taken_through: int):
    """The rows of ``batch`` with a sequence number above ``taken_through``."""
    keep = batch.sequence > taken_through
    if keep.all():
        return batch
    return _rows(batch, keep, int(np.argmax(keep))) if keep.any() else take_rows(batch, slice(0, 0))


def _rows(batch, keep: np.ndarray, first: int):
    """Rows of ``keep`` (a mask that is true from ``first`` on when the sequence is
    increasing, the usual case) without copying the state table needlessly."""
    if keep[first:].all():
        return take_rows(batch, slice(first, len(batch)))
    if isinstance(batch, RawBatch):
        return batch.select(keep)
    return take_rows_mask(batch, keep)


def take_rows_mask(batch: ExperienceBatch, keep: np.ndarray) -> ExperienceBatch:
    from dataclasses import fields as dc_fields

    return ExperienceBatch(
        **{
            f.name: getattr(batch, f.name)[keep]
            for f in dc_fields(ExperienceBatch)
            if f.name not in ("missed", "next_sequence")
        },
        missed=batch.missed,
        next_sequence=batch.next_sequence,
    )
