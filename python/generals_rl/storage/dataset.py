"""Reading stored experiences back as the batches cursors return."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from ..experience.batch import DecodedBatch, RawBatch
from ..experience.compact import CompactBatch
from ._batches import join
from .checksum import checksum_text, crc32c
from .errors import StorageError
from .formats import ShardFormat, format_for, format_of_file
from .layout import SHARD_NAME, partition_start
from .local import LocalStore
from .s3 import S3Store
from .store import Store

FORMS = ("raw", "decoded", "compact")


def _timestamp(value, name: str) -> float | None:
    """Unix time of a datetime (naive means UTC), number or ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return _timestamp(datetime.fromisoformat(value), name)
        except ValueError:
            pass
    raise ValueError(
        f"{name}: expected a datetime, a Unix time or an ISO 8601 string, got {value!r}"
    )


def _id_set(values, name: str, low: int, high: int) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, (int, np.integer)):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, str):
            v = int(v, 16)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= int(v) <= high:
            raise ValueError(f"{name}: {v!r} is not a valid id")
        out.append(int(v))
    return np.array(sorted(set(out)), dtype=np.uint64 if name == "game_ids" else np.int32)


class Dataset:
    """Experiences stored in a destination, filtered by time, game and player.

    Iterating yields batches — ``RawBatch`` (``form="raw"``) or ``DecodedBatch``
    (``form="decoded"``) — one per stored chunk (a Parquet row group, an NPZ or
    TFRecord shard), in index order, holding only the rows that pass the filters.
    """

    def __init__(
        self,
        store: Store | None,
        entries: list[dict],
        *,
        form: str,
        game_ids,
        player_ids,
        army_scaling: str,
        army_scale: float,
        verify: bool,
        files: list[Path] | None = None,
    ) -> None:
        self.store = store
        self.entries = entries
        self.form = form
        self.game_ids = game_ids
        self.player_ids = player_ids
        self.army_scaling, self.army_scale = army_scaling, army_scale
        self.verify = verify
        self._files = files

    @property
    def shards(self) -> list[str]:
        return [e["key"] for e in self.entries]

    @property
    def experiences(self) -> int:
        """Experiences in the selected shards (before game and player filters)."""
        return sum(int(e.get("experiences", 0)) for e in self.entries)

    def __iter__(self) -> Iterator[RawBatch | DecodedBatch]:
        for key, cls, data in self._shards():
            try:
                for batch in cls.read(data, game_ids=self.game_ids):
                    batch = self._filter(batch)
                    if len(batch):
                        yield self._convert(batch, key)
            except (StorageError, ValueError, KeyError, IndexError, TypeError, OSError) as exc:
                # Whatever the shard's bytes make a reader or the decoder trip on is damage.
                raise StorageError(f"{key}: {exc}") from None

    def read(self) -> RawBatch | DecodedBatch | CompactBatch | None:
        """Every selected experience as one batch (None when there are none)."""
        batches = list(self)
        if not batches:
            return None
        if self.form == "compact":
            return CompactBatch.concat(batches)  # type: ignore[arg-type]
        return join(batches)

    def _shards(self) -> Iterator[tuple[str, type[ShardFormat], bytes]]:
        if self._files is not None:
            for path in self._files:
                cls = format_of_file(path.name)
                assert cls is not None  # open_dataset took only shard files
                yield str(path), cls, path.read_bytes()
            return
        assert self.store is not None  # a dataset of files has no store
        for entry in self.entries:
            key = entry["key"]
            try:
                data = self.store.read_bytes(key)
            except FileNotFoundError:
                raise StorageError(
                    f"{self.store.url}/{key}: listed in the index but missing"
                ) from None
            if self.verify:
                if len(data) != entry["bytes"]:
                    raise StorageError(
                        f"{self.store.url}/{key}: {len(data)} bytes, the index says "
                        f"{entry['bytes']}"
                    )
                checksum = checksum_text(crc32c(data))
                if checksum != entry["checksum"]:
                    raise StorageError(
                        f"{self.store.url}/{key}: checksum {checksum} does not match the index "
                        f"({entry['checksum']}); the shard is damaged"
                    )
            yield f"{self.store.url}/{key}", format_for(entry["format"]), data

    def _filter(self, batch):
        keep = None
        if self.game_ids is not None:
            keep = np.isin(batch.game_id, self.game_ids)
        if self.player_ids is not None:
            players = np.isin(batch.player_id, self.player_ids)
            keep = players if keep is None else keep & players
        if keep is None or keep.all():
            return batch
        return batch.select(keep)

    def _convert(self, batch, key: str):
        if isinstance(batch, CompactBatch):  # compact_views TFRecords
            if self.form == "compact":
                return batch
            if self.form == "decoded":
                return batch.expand(self.army_scaling, self.army_scale)
            raise StorageError(
                f"{key}: holds compact views only (no raw boards); open the dataset with "
                "form='compact' or 'decoded'"
            )
        if self.form == "compact":
            if not isinstance(batch, RawBatch):
                raise StorageError(
                    f"{key}: holds decoded states only; open the dataset with form='decoded'"
                )
            return CompactBatch.from_raw(batch, army_scale=self.army_scale)
        if self.form == "decoded":
            return (
                batch.decode(self.army_scaling, self.army_scale)
                if isinstance(batch, RawBatch)
                else batch
            )
        if not isinstance(batch, RawBatch):
            raise StorageError(
                f"{key}: holds decoded states only; open the dataset with form='decoded'"
            )
        return batch


def open_dataset(
    source: str | os.PathLike,
    *,
    start=None,
    end=None,
    game_ids: Iterable[int | str] | int | None = None,
    player_ids: Iterable[int] | int | None = None,
    form: str = "raw",
    army_scaling: str = "linear",
    army_scale: float = 1000.0,
    verify: bool = True,
    **s3_options,
) -> Dataset:
    """The experiences stored at ``source``: a local directory or ``s3://bucket/prefix``
    written by a storage writer (read through its partition indexes), or one shard
    file.

    ``start``/``end`` (datetime, Unix time or ISO string; naive means UTC) keep the
    shards begun in ``[start, end)`` (a shard's time is that of its first
    experience, which also names its partition), pruning whole partitions by their
    hour first; ``game_ids`` (ints or 16-hex-digit strings) and ``player_ids`` keep
    only those rows. ``form`` "raw" yields RawBatch (raw boards), "decoded"
    DecodedBatch (decoded with ``army_scaling``/``army_scale``), "compact"
    CompactBatch (the acting players' compact views; ``army_scale`` chooses their
    army width). ``verify``
    checks each shard's size and CRC32C against the index. S3 options:
    ``endpoint_url``, ``client``, ``region_name``.
    """
    if form not in FORMS:
        raise ValueError(f"form: expected 'raw', 'decoded' or 'compact', got {form!r}")
    t_start, t_end = _timestamp(start, "start"), _timestamp(end, "end")
    if t_start is not None and t_end is not None and t_end <= t_start:
        raise ValueError(f"end: {end!r} is not after start {start!r}")
    games = _id_set(game_ids, "game_ids", 0, 2**64 - 1)
    players = _id_set(player_ids, "player_ids", 0, _core.MAX_PLAYERS - 1)
    options: dict[str, Any] = {
        "form": form,
        "game_ids": games,
        "player_ids": players,
        "army_scaling": army_scaling,
        "army_scale": float(army_scale),
        "verify": verify,
    }
    text = os.fspath(source)
    if text.startswith("s3://"):
        store: Store = S3Store(text, **s3_options)
    else:
        if s3_options:
            raise TypeError(
                f"unknown option(s) for a local source: {', '.join(sorted(s3_options))}"
            )
        path = Path(text).expanduser()
        if path.is_file():
            if format_of_file(path.name) is None:
                raise ValueError(f"source: {path} is not a shard file (game_<id>_<nnnn>.<ext>)")
            return Dataset(None, [], files=[path], **options)
        if not path.is_dir():
            raise ValueError(f"source: {path} is neither a directory nor a shard file")
        store = LocalStore(path, create=False)
    entries = []
    for partition in store.partitions():
        begins = partition_start(partition)
        if (t_end is not None and begins >= t_end) or (
            t_start is not None and begins + 3600 <= t_start
        ):
            continue
        for entry in store.read_index(partition):
            if not _keep(entry, t_start, t_end, games, players):
                continue
            entries.append(entry)
    return Dataset(store, entries, **options)


def _keep(entry: dict, t_start, t_end, games, players) -> bool:
    if not entry.get("experiences"):
        return False
    if t_end is not None and entry["time_first"] >= t_end:
        return False
    if t_start is not None and entry["time_first"] < t_start:
        return False
    if games is not None:
        low, high = int(entry["game_id_min"], 16), int(entry["game_id_max"], 16)
        if not ((games >= low) & (games <= high)).any():
            return False
    if players is not None and not set(players.tolist()) & set(entry["players"]):
        return False
    if SHARD_NAME.match(entry.get("name", "")) is None:
        raise StorageError(f"index entry {entry.get('key')!r} does not name a shard")
    return True
