"""The destination interface (a local directory or an object store prefix,
implemented in ``local.py`` and ``s3.py``): files, staging, publishing, and the
partitions and their indexes laid out as ``layout.py`` says."""

from __future__ import annotations

import abc
import itertools
import json
from collections.abc import Iterator
from typing import BinaryIO

from .errors import StorageError
from .layout import INDEX_NAME, INDEX_VERSION, PARTITION_KEYS


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
        return sorted(itertools.islice(self._walk_partitions("", 0, newest_first=True), count))

    def partitions(self) -> list[str]:
        """Every partition, oldest first."""
        return list(self._walk_partitions("", 0, newest_first=False))

    def _walk_partitions(self, prefix: str, depth: int, newest_first: bool) -> Iterator[str]:
        """The partitions under ``prefix`` (at ``depth`` of PARTITION_KEYS), in
        time order; listed lazily, so taking the newest few lists little."""
        subdirs, _ = self.list_dir(prefix)
        key = PARTITION_KEYS[depth]
        names = sorted((d for d in subdirs if d.startswith(key + "=")), reverse=newest_first)
        for name in names:
            path = f"{prefix}/{name}" if prefix else name
            if depth == len(PARTITION_KEYS) - 1:
                yield path
            else:
                yield from self._walk_partitions(path, depth + 1, newest_first)

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
