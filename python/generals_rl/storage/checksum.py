"""CRC32C (Castagnoli, the C++ core's hardware-accelerated one) and the
checksumming file-like every shard is encoded into."""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO

from .._core import crc32c, crc32c_combine, start_write_back
from .errors import StorageError

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data) -> int:
    """The TFRecord masked CRC32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def checksum_text(crc: int) -> str:
    """A checksum as the index records it."""
    return f"crc32c:{crc:08x}"


def write_all(file, data) -> None:
    """Writes all of ``data`` to an unbuffered file (which may take part of it per call)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[file.write(view) :]


class ChecksumWriter:
    """The file-like an encoder writes a shard into. It counts the bytes and
    computes their CRC32C, and holds them in memory until ``drain`` appends them to
    the staging file (an unbuffered file of its own); ``write_block`` holds an
    immutable block without copying it.

    So an encoder never sees a failing file (pyarrow's writer, for one, closes for
    good on the first failed write), and a failed ``drain`` cuts the file back to
    what it held before and keeps the bytes for the next attempt: the file only
    ever holds a prefix of what was encoded, and once drained exactly that, so the
    size and checksum recorded for a shard are its file's."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.bytes_written = 0
        self.crc = 0
        # Bytes not yet in the file, in order: copies of what ``write`` was given,
        # and blocks handed over whole by ``write_block``.
        self._held: list[bytearray | memoryview] = []
        self._on_file = 0
        self._torn = False  # a failed drain could not cut the file back

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        last = self._held[-1] if self._held else None
        if not isinstance(last, bytearray):
            last = bytearray()
            self._held.append(last)
        last += view  # a copy: writers may reuse their buffer once this returns
        return self._count(view)

    def write_block(self, block, crc: int | None = None) -> int:
        """``write`` without the copy, for a buffer nobody changes while it is held
        (an encoder's block, whose memory is reused only once unreferenced);
        ``crc``: the block's CRC32C, if its encoder computed it."""
        view = memoryview(block).cast("B")
        self._held.append(view)
        return self._count(view, crc)

    def _count(self, view: memoryview, crc: int | None = None) -> int:
        if crc is None:
            self.crc = crc32c(view, self.crc)
        else:
            self.crc = crc32c_combine(self.crc, crc, len(view))
        self.bytes_written += len(view)
        return len(view)

    @property
    def bytes_held(self) -> int:
        """Bytes encoded but not yet in the file."""
        return sum(len(chunk) for chunk in self._held)

    def drain(self) -> None:
        """Appends the held bytes to the file; on failure the file is as before."""
        if self._torn:
            self._cut_back()
        if not self._held:
            return
        held = self.bytes_held
        try:
            for chunk in self._held:
                write_all(self.raw, chunk)
        except BaseException:
            # The chunks stay held; a bytearray that a failed write's view (alive in
            # the traceback) still exports cannot grow, so later writes start anew.
            self._held.append(bytearray())
            try:
                self._cut_back()
            except OSError:
                self._torn = True
            raise
        self._start_write_back(self._on_file, held)
        self._on_file += held
        self._held = []

    def _start_write_back(self, offset: int, length: int) -> None:
        """Asks the kernel to start writing the drained bytes to disk now, so the
        commit's fsync waits for less. The pages stay cached, so a reader right
        after the commit reads memory; where the core cannot start write-back
        alone, the advice to drop the pages starts it instead (on Linux)."""
        # Advice only: not every platform has it, nor every file a descriptor.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fd = self.raw.fileno()
            if not start_write_back(fd, offset, length):
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)

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
        return checksum_text(self.crc)
