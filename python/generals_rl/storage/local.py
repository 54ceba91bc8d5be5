"""A local directory as a destination: shards staged under hidden temporary names,
fsynced, then renamed into place (and the directory fsynced), so a crash never
leaves a partial shard under a shard's name."""

from __future__ import annotations

import os
from pathlib import Path

from .checksum import write_all
from .errors import StorageError
from .layout import is_temporary, temporary_name
from .store import Staging, Store


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _LocalStaging(Staging):
    def __init__(self, path: Path) -> None:
        self.path = path
        # Unbuffered: what a write returns is in the file (ChecksumWriter.drain).
        self.file = open(path, "xb", buffering=0)  # noqa: SIM115 - open until published or discarded

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


class LocalStore(Store):
    """Files under ``root`` (created if missing, unless ``create`` is false: for
    reading)."""

    def __init__(self, root: str | os.PathLike, create: bool = True) -> None:
        if not str(root):
            raise ValueError("destination: an empty path is not a directory")
        self.root = Path(root).expanduser()
        self.url = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"destination: {self.root} exists and is not a directory")
        if not create:
            return
        try:
            self._makedirs(self.root)
        except OSError as exc:
            raise StorageError(f"destination: cannot create directory {self.root}: {exc}") from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"destination: directory {self.root} is not writable")

    def _path(self, path: str) -> Path:
        return self.root / path if path else self.root

    def _makedirs(self, directory: Path) -> None:
        """Creates ``directory`` and fsyncs the parents of what it created."""
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            _fsync_dir(d.parent)

    def list_dir(self, path: str) -> tuple[list[str], list[str]]:
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(self._path(path)) as entries:
                for entry in entries:
                    (dirs if entry.is_dir() else files).append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        return dirs, files

    def read_bytes(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def put_bytes(self, path: str, data: bytes) -> None:
        target = self._path(path)
        self._makedirs(target.parent)
        staging = _LocalStaging(target.with_name(temporary_name(target.name)))
        try:
            write_all(staging.file, data)
            self._commit(staging, target)
        except BaseException:
            staging.discard()
            raise

    def stage(self, path: str) -> Staging:
        target = self._path(path)
        self._makedirs(target.parent)
        return _LocalStaging(target.with_name(temporary_name(target.name)))

    def publish(self, staging: Staging, path: str, checksum: str, metadata: dict) -> None:
        assert isinstance(staging, _LocalStaging)
        self._commit(staging, self._path(path))

    @staticmethod
    def _commit(staging: _LocalStaging, target: Path) -> None:
        if not staging.file.closed:
            staging.file.flush()
            os.fsync(staging.file.fileno())
            staging.file.close()
        os.replace(staging.path, target)
        _fsync_dir(target.parent)

    def remove_leftovers(self, partition: str) -> int:
        _, files = self.list_dir(partition)
        removed = 0
        for name in files:
            if is_temporary(name):
                self._path(f"{partition}/{name}").unlink(missing_ok=True)
                removed += 1
        return removed
