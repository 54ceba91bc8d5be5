"""Fields framed by hand from the generated descriptors parse back as protobuf
serialized them, and a field that is not length-delimited is refused."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl._proto import experience_pb2 as pb
from generals_rl.service.wire import LengthDelimitedField


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
