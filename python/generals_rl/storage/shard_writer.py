"""The shard writer every format and destination shares: it takes batches,
encodes them a chunk at a time into the open shard, rotates shards (by
experience count, bytes or age), commits them crash-safely in order, keeps the
partition index, and after a restart recovers the last durably written
sequence (see ``layout.py`` for where shards go).

Longer than 400 lines: one state machine (pending rows, the open shard, sealed
shards, commits) whose steps must be read together to see that a failure at
any of them loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..experience.batch import DecodedBatch, RawBatch
from ._batches import (
    BatchQueue,
    ChunkBuffer,
    Scratch,
    board_shape,
    check_batch,
    chunk_of,
    describe,
    new_rows,
)
from .checksum import ChecksumWriter
from .errors import StorageError, failure_reason
from .formats import ShardEncoder, ShardFormat
from .layout import SHARD_NAME, iso_time, partition_of, shard_name
from .recovery import recover
from .store import Staging, Store
from .writer import RetryPolicy, Rotation, Writer

log = logging.getLogger("generals_rl.storage")


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
        if shard_format.states not in shard_format.state_forms:
            raise ValueError(
                f"states: expected one of {shard_format.state_forms}, got {shard_format.states!r}"
            )
        self.store = store
        self.format = shard_format
        self.rotation = rotation or Rotation()
        self.retry = retry or RetryPolicy()
        self._clock = clock
        chunked = shard_format.encode_rows is None
        self._pending = ChunkBuffer() if chunked else BatchQueue()
        # Rows pending before they are encoded, and at most per encoder call.
        self._encode_at = self.rotation.chunk_size if chunked else 1
        self._encode_limit = shard_format.encode_rows or self.rotation.max_experiences
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
        self._stats: dict[str, Any] = {
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
            recovered = recover(store, clock)
            self._durable = recovered.durable_sequence
            self._skip_below = None if self._durable is None else self._durable + 1
            self._stats["recovered_shards"] = recovered.recovered_shards
            self._stats["removed_leftovers"] = recovered.removed_leftovers

    # -- writing --

    def write(self, batch: RawBatch | DecodedBatch) -> None:
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
        s: dict[str, Any] = dict(self._stats)
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

    def _encode(self, rows: RawBatch | DecodedBatch) -> None:
        """Encodes ``rows`` (the first pending rows) into the open shard, then drains
        them to its staging file; the rows leave the pending ones once encoded."""
        chunk = chunk_of(rows, joined=self.format.joined_chunks, scratch=self._scratch)
        if self._open is None:
            assert self._pending_since is not None  # rows are pending
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
        _, files = self.store.list_dir(partition)
        names = [e["name"] for e in entries] + files
        names += [s.name for s in self._sealed if s.partition == partition]
        used = [int(m["ordinal"]) for m in map(SHARD_NAME.match, names) if m]
        return max(used, default=0) + 1

    def _entries(self, partition: str) -> list[dict]:
        if self._index_cache is None or self._index_cache[0] != partition:
            self._index_cache = (partition, self.store.read_index(partition))
        return self._index_cache[1]

    def _seal(self) -> None:
        """Completes the open shard's encoding and queues it for its commit."""
        shard = self._open
        assert shard is not None  # sealed only when open
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
