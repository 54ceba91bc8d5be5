"""Hand-built protocol buffer encodings for the hot paths.

A serialized message is the concatenation of its encoded fields, so a large
bytes field can be written straight after the rest of the message (itself
serialized by protobuf) without copying it into a message object first. Field
numbers and wire types come from the generated descriptors, so the framing
follows the .proto file.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from .._varint import read_varint

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
        return [self._key, varint(sum(memoryview(p).nbytes for p in parts)), *parts]

    def key(self, length: int) -> bytes:
        """The field's key and length, for a value of ``length`` bytes written after it."""
        return self._key + varint(length)


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5.29 has is_repeated; label is deprecated there.
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED


class NestedBytesSplitter:
    """Parses serialized ``message_class`` messages leaving one large bytes field
    of a message field out of the parse: ``NestedBytesSplitter(pb.ExperienceBatch,
    "packed", "payload")(data)`` is ``(message without packed.payload, the payload
    as a memoryview of data)``, so the payload is never copied. Messages holding
    either field more than once (protobuf merges them) are parsed whole and their
    payload read from the message."""

    def __init__(self, message_class, outer: str, inner: str) -> None:
        outer_field = message_class.DESCRIPTOR.fields_by_name[outer]
        inner_field = outer_field.message_type.fields_by_name[inner]
        if inner_field.type != FieldDescriptor.TYPE_BYTES:
            raise TypeError(f"{inner_field.full_name} is not a bytes field")
        self._message_class = message_class
        self._outer, self._inner = outer, inner
        self._outer_number, self._inner_number = outer_field.number, inner_field.number

    def __call__(self, data: bytes):
        view = memoryview(data)
        outer = _only_span(view, 0, len(data), self._outer_number)
        inner = None if outer is None else _only_span(view, outer[1], outer[2], self._inner_number)
        if outer is None or inner is None:  # absent or repeated: protobuf's own parse
            message = self._message_class.FromString(data)
            return message, getattr(getattr(message, self._outer), self._inner)
        (outer_start, outer_value, outer_end), (inner_start, inner_value, inner_end) = outer, inner
        message = self._message_class.FromString(b"".join([view[:outer_start], view[outer_end:]]))
        submessage = getattr(message, self._outer)
        submessage.SetInParent()  # present even when everything but the payload is default
        submessage.MergeFromString(
            b"".join([view[outer_value:inner_start], view[inner_end:outer_end]])
        )
        return message, view[inner_value:inner_end]


def _only_span(view: memoryview, start: int, stop: int, number: int) -> tuple[int, int, int] | None:
    """``(field start, value start, field end)`` of the length-delimited field
    ``number`` of the message in ``view[start:stop]`` when it appears exactly
    once, else None. ValueError on a malformed message."""
    found = None
    pos = start
    while pos < stop:
        field_start = pos
        key, pos = read_varint(view, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(view, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == _WIRE_LEN:
            length, pos = read_varint(view, pos)
            if key >> 3 == number:
                if found is not None:
                    return None
                found = (field_start, pos, pos + length)
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {field_start}")
    if pos != stop:
        raise ValueError("a field runs past the end of its message")
    return found
