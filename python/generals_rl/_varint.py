"""Reading protocol buffer varints: the TFRecord reader's Example parser and the
stream consumer's message splitter."""

from __future__ import annotations


def read_varint(buf, pos: int) -> tuple[int, int]:
    """The varint at ``buf[pos]`` (bytes or memoryview) and the position after it;
    ValueError if it runs past the end or beyond 64 bits."""
    result = shift = 0
    while True:
        if shift >= 64 or pos >= len(buf):
            raise ValueError(f"malformed varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
