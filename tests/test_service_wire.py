"""Fields framed by hand from the generated descriptors parse back as protobuf
serialized them, and a field that is not length-delimited is refused."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl._proto import experience_pb2 as pb
from generals_rl.service.wire import LengthDelimitedField, NestedBytesSplitter


def test_a_framed_bytes_field_equals_protobufs_encoding():
    payload = bytes(range(200)) * 3  # a length that takes two varint bytes
    framed = b"".join(LengthDelimitedField(pb.PackedBatch, "payload").parts([payload]))
    assert framed == pb.PackedBatch(payload=payload).SerializeToString()


def test_framed_messages_and_packed_repeated_fields_parse_back():
    mask = np.array([1, 0, 1, 1], dtype=np.uint8)
    tensor = np.arange(6, dtype="<f4")
    state = b"".join(
        [
            pb.DecodedState(shape=[1, 2, 3]).SerializeToString(),
            *LengthDelimitedField(pb.DecodedState, "data").parts([tensor.data]),
        ]
    )
    message = b"".join(
        [
            pb.Experience(tick=7).SerializeToString(),
            *LengthDelimitedField(pb.Experience, "state").parts([state]),
            *LengthDelimitedField(pb.Experience, "action_mask").parts([mask.data]),
        ]
    )
    parsed = pb.Experience.FromString(message)
    assert parsed.tick == 7
    assert list(parsed.state.shape) == [1, 2, 3]
    assert list(parsed.state.data) == tensor.tolist()
    assert list(parsed.action_mask) == [True, False, True, True]


@pytest.mark.parametrize(
    ("message", "name", "words"),
    [
        (pb.Experience, "tick", "not length-delimited"),
        (pb.Experience, "turn", "has no field 'turn'"),
    ],
)
def test_fields_that_cannot_be_framed_are_refused(message, name, words):
    with pytest.raises(TypeError, match=words):
        LengthDelimitedField(message, name)


def _batch_message(payload: bytes, **packed) -> bytes:
    header = pb.ExperienceBatch(buffer_id="b", next_sequence=9, missed=2)
    inner = [
        pb.PackedBatch(count=3, height=4, width=5, **packed).SerializeToString(),
        *LengthDelimitedField(pb.PackedBatch, "payload").parts([payload]),
    ]
    return b"".join(
        [
            header.SerializeToString(),
            *LengthDelimitedField(pb.ExperienceBatch, "packed").parts(inner),
        ]
    )


@pytest.mark.parametrize("payload", [b"x" * 300, b"\x00"])
def test_a_split_message_equals_protobufs_parse_and_its_payload_is_not_copied(payload):
    data = _batch_message(payload, uncompressed_size=len(payload), layout=pb.PACKED_LAYOUT_COMPACT)
    message, got = NestedBytesSplitter(pb.ExperienceBatch, "packed", "payload")(data)
    want = pb.ExperienceBatch.FromString(data)
    assert isinstance(got, memoryview) and got.obj is data  # a view of the received bytes
    assert bytes(got) == want.packed.payload == payload
    assert message.packed.payload == b""
    want.packed.payload = b""
    assert message == want


def test_messages_without_a_single_payload_are_parsed_whole():
    split = NestedBytesSplitter(pb.ExperienceBatch, "packed", "payload")
    empty = pb.ExperienceBatch(next_sequence=5, missed=1).SerializeToString()
    message, payload = split(empty)
    assert message.next_sequence == 5 and payload == b""
    twice = _batch_message(b"ab") + b"".join(
        LengthDelimitedField(pb.ExperienceBatch, "packed").parts(
            [LengthDelimitedField(pb.PackedBatch, "payload").parts([b"cd"])[0], b"\x02cd"]
        )
    )
    message, payload = split(twice)  # protobuf merges: the last payload wins
    assert payload == pb.ExperienceBatch.FromString(twice).packed.payload == b"cd"


@pytest.mark.parametrize("data", [b"\x12\x05ab", b"\x12\xff", b"\x0b"])
def test_a_malformed_message_is_a_value_error(data):
    with pytest.raises(ValueError):
        NestedBytesSplitter(pb.ExperienceBatch, "packed", "payload")(data)
