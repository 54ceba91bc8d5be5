"""Hand-built protocol buffer encodings for the hot paths.

A serialized message is the concatenation of its encoded fields, so a large
bytes field can be written straight after the rest of the message (itself
serialized by protobuf) without copying it into a message object first. Field
numbers and wire types come from the generated descriptors, so the framing
follows the .proto file.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

_WIRE_LEN = 2
# Field types whose encoding is length-delimited; repeated scalars are too
# when packed (proto3's default).
_LENGTH_DELIMITED_TYPES = (
    FieldDescriptor.TYPE_BYTES,
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_MESSAGE,
)


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class LengthDelimitedField:
    """A length-delimited field of a message, written around buffers given to
    ``parts``: ``LengthDelimitedField(pb.PackedBatch, "payload")``. TypeError if
    the field is not encoded length-delimited (a scalar that is not a packed
    repeated one)."""

    def __init__(self, message_class, name: str) -> None:
        descriptor = message_class.DESCRIPTOR
        field = descriptor.fields_by_name.get(name)
        if field is None:
            raise TypeError(f"{descriptor.full_name} has no field {name!r}")
        packed = _is_repeated(field) and getattr(field, "is_packed", True)
        if field.type not in _LENGTH_DELIMITED_TYPES and not packed:
            raise TypeError(f"{descriptor.full_name}.{name} is not length-delimited on the wire")
        self.name = f"{descriptor.full_name}.{name}"
        self._key = varint(field.number << 3 | _WIRE_LEN)

    def parts(self, parts: list) -> list:
        """The field holding the concatenation of ``parts`` (buffers), as a list
        of buffers to join."""
        length = sum(memoryview(p).nbytes for p in parts)
        return [self._key, varint(length), *parts]


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5.29 has is_repeated; label is deprecated there.
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED
