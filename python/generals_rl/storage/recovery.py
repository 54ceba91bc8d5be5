"""What a shard writer finds when it opens a destination after a crash or a
restart: staging leftovers (deleted), complete shards the crash left unindexed
(read back, checked and indexed), and the last durably stored sequence."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..experience.batch import DecodedBatch
from ._batches import describe
from .checksum import checksum_text, crc32c
from .formats import ShardFormat, format_of_file
from .layout import iso_time, partition_start
from .store import Store

log = logging.getLogger("generals_rl.storage")

# Partitions looked at: a writer appends to the newest, but the shard it had
# open when the hour changed belongs to the one before (its first experience's).
RECOVERED_PARTITIONS = 2


@dataclass(frozen=True)
class Recovered:
    durable_sequence: int | None
    recovered_shards: int
    removed_leftovers: int


def recover(store: Store, clock: Callable[[], float]) -> Recovered:
    """Cleans up and indexes the newest partitions of ``store``; returns what it did
    and the highest durable sequence (None if nothing is stored)."""
    durable = None
    recovered = removed = 0
    for partition in store.latest_partitions(RECOVERED_PARTITIONS):
        removed += store.remove_leftovers(partition)
        entries = store.read_index(partition)
        listed = {e["name"] for e in entries}
        _, files = store.list_dir(partition)
        adopted = False
        for name in sorted(files):
            cls = format_of_file(name)
            if cls is None or name in listed:
                continue
            entry = _describe_orphan(store, clock, cls, partition, name)
            if entry is not None:
                entries.append(entry)
                adopted = True
                recovered += 1
        if adopted:
            entries.sort(key=lambda e: e.get("sequence_first", -1))
            store.write_index(partition, entries)
        for entry in entries:
            if entry.get("experiences"):
                last = int(entry["sequence_last"])
                durable = last if durable is None else max(durable, last)
    return Recovered(durable, recovered, removed)


def _describe_orphan(
    store: Store, clock: Callable[[], float], cls: type[ShardFormat], partition: str, name: str
) -> dict | None:
    """The index entry of a complete shard that a crash left unindexed."""
    path = f"{partition}/{name}"
    try:
        data = store.read_bytes(path)
        batches = list(cls.read(data))
    except Exception as exc:
        log.warning("%s/%s: not indexed and not readable, left alone (%s)", store.url, path, exc)
        return None
    entry = describe(batches) if batches else {"experiences": 0}
    entry.pop("game_ids", None)
    now = clock()
    entry.update(
        key=path,
        name=name,
        format=cls.name,
        states="decoded" if batches and isinstance(batches[0], DecodedBatch) else "raw",
        bytes=len(data),
        checksum=checksum_text(crc32c(data)),
        time_first=partition_start(partition),
        time_last=now,
        committed=iso_time(now),
        recovered=True,
    )
    return entry
