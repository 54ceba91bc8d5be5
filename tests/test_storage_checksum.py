"""ChecksumWriter: what a failed drain leaves in the file and what it keeps."""

from __future__ import annotations

import ctypes
import errno
import io
import mmap
import os
import sys

import google_crc32c
import numpy as np
import pytest
from generals_rl._core import start_write_back
from generals_rl.storage.checksum import ChecksumWriter


class _FailingFile(io.BytesIO):
    """A file whose writes fail (after taking ``accept`` bytes) while ``full``."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.accept = 0

    def write(self, data) -> int:
        if not self.full:
            return super().write(data)
        if self.accept:
            taken = super().write(memoryview(data)[: self.accept])
            self.accept = 0
            return taken
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self) -> int:
        raise io.UnsupportedOperation


def test_blocks_and_copies_reach_the_file_in_order_after_a_failed_drain():
    raw = _FailingFile()
    out = ChecksumWriter(raw)
    block = np.arange(300, dtype=np.uint16).view(np.uint8)  # 600 bytes
    out.write(b"head")
    out.write_block(block)
    out.drain()
    scratch = bytearray(b"reused")
    out.write(scratch)
    scratch[:] = b"XXXXXX"  # the writer copied it: changing the caller's buffer changes nothing
    out.write_block(block[:10])
    out.write(b"tail")
    raw.full, raw.accept = True, 3  # part of the next drain reaches the file, then it fails
    with pytest.raises(OSError):
        out.drain()
    assert raw.getvalue() == b"head" + block.tobytes()  # cut back to what was drained
    assert out.bytes_held == 20
    out.write(b"!")  # held behind what the failed drain kept
    raw.full = False
    out.drain()
    expected = b"head" + block.tobytes() + b"reused" + block[:10].tobytes() + b"tail!"
    assert raw.getvalue() == expected
    assert out.bytes_held == 0
    assert out.bytes_written == len(expected)
    assert out.crc == google_crc32c.value(expected)


def test_write_back_starts_without_dropping_the_pages(tmp_path):
    path = tmp_path / "shard"
    size = 64 * mmap.PAGESIZE
    with open(path, "wb", buffering=0) as raw:
        out = ChecksumWriter(raw)
        out.write(b"x" * size)
        out.drain()  # starts the write-back of what it drained
        os.fsync(raw.fileno())
        # Once the pages are clean, advice to drop them would evict them (a reader
        # right after the commit would read the disk); starting write-back does not.
        out._start_write_back(0, size)
        if sys.platform.startswith("linux"):
            assert start_write_back(raw.fileno(), 0, size)
            assert _resident_pages(path) == size // mmap.PAGESIZE
    with pytest.raises(ValueError, match="offset and length must be >= 0, got 3, -1, 5"):
        start_write_back(3, -1, 5)


def _resident_pages(path) -> int:
    """Pages of a file that are in the page cache (mincore over a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    vector = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as view:
        anchor = ctypes.c_char.from_buffer(view)
        address = ctypes.addressof(anchor)
        del anchor  # the mapping stays; only the buffer export ends
        assert libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) == 0
    return sum(v & 1 for v in vector)
