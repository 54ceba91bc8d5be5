"""Hand-built protocol buffer encodings for the hot paths.

A serialized message is the concatenation of its encoded fields, so a large
bytes field can be written straight after the rest of the message (itself
serialized by protobuf) without copying it into a message object first.
"""

from __future__ import annotations

_WIRE_LEN = 2


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def len_prefix(field_number: int, length: int) -> bytes:
    """The key and length of a length-delimited field of ``length`` bytes."""
    return varint(field_number << 3 | _WIRE_LEN) + varint(length)


def len_field_parts(field_number: int, parts: list) -> list:
    """A length-delimited field holding the concatenation of ``parts`` (buffers)."""
    length = sum(memoryview(p).nbytes for p in parts)
    return [len_prefix(field_number, length), *parts]
