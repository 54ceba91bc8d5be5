"""ChecksumWriter: what a failed drain leaves in the file and what it keeps."""

from __future__ import annotations

import errno
import io

import google_crc32c
import numpy as np
import pytest
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
