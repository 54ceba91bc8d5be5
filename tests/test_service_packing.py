"""The packed columnar wire form: lossless round trips and clear errors for
malformed batches."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from generals_rl._proto import experience_pb2 as pb
from generals_rl.experience import RawBatch
from generals_rl.service import PackedBatchError, pack_message, unpack
from service_support import everything, fill, make_buffer


@pytest.fixture(scope="module")
def raw() -> RawBatch:
    buffer = make_buffer()
    fill(buffer, 1_000, max_ticks=60)
    return everything(buffer)


def _assert_equal(got: RawBatch, want: RawBatch) -> None:
    for name, value in want.to_dict().items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
            assert getattr(got, name).dtype == value.dtype, name


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_lossless(raw, compress):
    compressor = zstandard.ZstdCompressor(level=1) if compress else None
    packed = pb.PackedBatch.FromString(pack_message(raw, compressor).SerializeToString())
    assert packed.compression == (pb.COMPRESSION_ZSTD if compress else pb.COMPRESSION_NONE)
    _assert_equal(unpack(packed), raw)
    assert (raw.terminated | raw.truncated).any()


def test_armies_above_65535_travel_as_int32(raw):
    wide = raw.select(np.arange(10))
    wide.state_army[0, 1, 2] = 1_000_000
    packed = pack_message(wide)
    assert {c.name: c.dtype for c in packed.columns}["state_army"] == pb.DTYPE_INT32
    assert {c.name: c.dtype for c in pack_message(raw).columns}["state_army"] == pb.DTYPE_UINT16
    _assert_equal(unpack(packed), wide)


def test_compact_states_are_three_bytes_a_tile(raw):
    packed = pack_message(raw)
    tiles = raw.state_kind.size
    assert packed.uncompressed_size == len(raw) * 38 + tiles * 3


def test_an_empty_batch_round_trips(raw):
    empty = raw.select(np.zeros(len(raw), bool))
    got = unpack(pack_message(empty))
    assert len(got) == 0 and got.state_kind.shape == (0, raw.height, raw.width)


def _column(packed: pb.PackedBatch, name: str) -> pb.Column:
    return next(c for c in packed.columns if c.name == name)


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (lambda p: p.columns.add().CopyFrom(p.columns[0]), "appears twice"),
        (
            lambda p: p.columns.add(name="extra", dtype=pb.DTYPE_UINT8, shape=[0]),
            "unknown columns ['extra']",
        ),
        (lambda p: _column(p, "tick").shape.__setitem__(0, 3), "column 'tick' has shape (3,)"),
        (lambda p: setattr(_column(p, "reward"), "size", 4), "its shape needs"),
        (lambda p: setattr(_column(p, "state_army"), "offset", 10**9), "runs past the end"),
        (
            lambda p: setattr(p, "uncompressed_size", p.uncompressed_size + 1),
            "uncompressed_size says",
        ),
        (lambda p: setattr(p, "compression", 9), "unknown compression 9"),
        (lambda p: setattr(p, "height", 300), "outside 2..256"),
        (
            lambda p: setattr(_column(p, "player_id"), "dtype", pb.DTYPE_INT32),
            "dtype DTYPE_INT32, expected uint8",
        ),
        (lambda p: setattr(_column(p, "flags"), "dtype", 99), "dtype 99"),
    ],
)
def test_malformed_structure_is_named(raw, corrupt, words):
    packed = pack_message(raw)
    corrupt(packed)
    with pytest.raises(PackedBatchError) as error:
        unpack(packed)
    assert words in str(error.value)


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("flags", 8, "flags has bits"),
        ("state_code", 4 << 5, "tile kind above 3"),
        ("state_code", 17, "an owner above 15"),
        ("next_state_index", -1, "next_state_index refers to a state outside"),
    ],
)
def test_malformed_values_are_named(raw, column, value, words):
    packed = pack_message(raw)
    spec = _column(packed, column)
    data = bytearray(packed.payload)
    dtype = np.dtype({pb.DTYPE_UINT8: "u1", pb.DTYPE_INT32: "<i4"}[spec.dtype])
    data[spec.offset : spec.offset + dtype.itemsize] = np.array([value], dtype).tobytes()
    packed.payload = bytes(data)
    with pytest.raises(PackedBatchError) as error:
        unpack(packed)
    assert words in str(error.value)


def test_negative_wide_armies_and_decompression_bombs_are_refused(raw):
    wide = raw.select(np.arange(4))
    wide.state_army[0, 0, 0] = 70_000
    wide.state_army[0, 0, 1] = -5
    with pytest.raises(PackedBatchError, match="negative army"):
        unpack(pack_message(wide))
    packed = pack_message(raw, zstandard.ZstdCompressor())
    with pytest.raises(PackedBatchError, match="above the limit"):
        unpack(packed, max_bytes=packed.uncompressed_size - 1)
    lying = pack_message(raw, zstandard.ZstdCompressor())
    lying.uncompressed_size -= 100  # the frame holds more than announced
    with pytest.raises(PackedBatchError):
        unpack(lying)
