"""The C++ TFRecord encoder: CRC32C against google-crc32c, records read back by
the ``tfrecord`` package's Example parser and checked with an independent CRC,
and clear errors for bad arguments."""

from __future__ import annotations

import dataclasses
import struct

import google_crc32c
import numpy as np
import pytest
from generals_rl._core import TFRecordEncoder, crc32c, crc32c_portable
from tfrecord import example_pb2


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("function", [crc32c, crc32c_portable])
def test_crc32c_equals_google_crc32c(function):
    rng = np.random.default_rng(0)
    for size in [*range(70), 255, 256, 1000, 4097, 65_539]:
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert function(data) == google_crc32c.value(data), size
        # Continuing from a previous value equals the CRC of the concatenation.
        assert function(data[size // 3 :], function(data[: size // 3])) == google_crc32c.value(
            data
        ), size
    # An unaligned view of a numpy array.
    array = rng.integers(0, 256, 1001, dtype=np.uint8)
    assert function(array[3:]) == google_crc32c.value(array[3:].tobytes())


def split_records(buffer: bytes, lengths: np.ndarray) -> list[bytes]:
    """The records' data, the framing checked with google-crc32c."""
    out, pos = [], 0
    for framed in lengths.tolist():
        (length,) = struct.unpack_from("<Q", buffer, pos)
        assert framed == length + 16
        assert struct.unpack_from("<I", buffer, pos + 8)[0] == masked(
            google_crc32c.value(buffer[pos : pos + 8])
        )
        data = buffer[pos + 12 : pos + 12 + length]
        assert struct.unpack_from("<I", buffer, pos + 12 + length)[0] == masked(
            google_crc32c.value(data)
        )
        out.append(data)
        pos += framed
    assert pos == len(buffer)
    return out


def test_records_hold_the_given_values():
    rng = np.random.default_rng(1)
    n = 300
    big = np.array([0, 1, 127, 128, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    sequence = rng.choice(big, n)
    small = rng.integers(-(2**40), 2**40, n)
    reward = rng.normal(size=n).astype("<f4")
    table = rng.integers(0, 256, (17, 50), dtype=np.uint8)
    index = rng.integers(0, 17, n).astype(np.int32)
    packed = np.frombuffer(bytes([20, 150, 1]), np.uint8).reshape(1, 3)  # varints 20, 150
    encoder = TFRecordEncoder(
        ["sequence", "small"],
        [("reward", "float", 4), ("board", "bytes", 50), ("shape", "int64", 3)],
    )
    records, lengths = encoder.encode(
        [sequence, small], [(reward, None), (table, index), (packed, np.zeros(n, np.int32))]
    )
    assert records.dtype == np.uint8 and len(lengths) == n
    assert lengths.max() <= encoder.max_record_bytes
    for i, data in enumerate(split_records(records.tobytes(), lengths)):
        feature = example_pb2.Example.FromString(data).features.feature
        assert sorted(feature) == ["board", "reward", "sequence", "shape", "small"]
        assert feature["sequence"].int64_list.value[0] % 2**64 == int(sequence[i])
        assert feature["small"].int64_list.value[0] == int(small[i])
        assert feature["reward"].float_list.value[0] == float(reward[i])
        assert feature["board"].bytes_list.value[0] == table[index[i]].tobytes()
        assert list(feature["shape"].int64_list.value) == [20, 150]


def test_a_block_held_by_python_is_not_overwritten():
    encoder = TFRecordEncoder(["x"], [])
    first, _ = encoder.encode([np.arange(10)], [])
    kept = first.tobytes()
    encoder.encode([np.arange(10, 20)], [])
    assert first.tobytes() == kept
    empty, lengths = encoder.encode([np.zeros(0, np.int64)], [])
    assert len(empty) == 0 and len(lengths) == 0


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="kind must be"):
        TFRecordEncoder([], [("a", "string", 4)])
    with pytest.raises(ValueError, match="names"):
        TFRecordEncoder([""], [])
    encoder = TFRecordEncoder(["x"], [("board", "bytes", 4)])
    table = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValueError, match="expected 1 varint columns"):
        encoder.encode([], [(table, None)])
    with pytest.raises(ValueError, match="expected 1 row sources"):
        encoder.encode([np.arange(3)], [])
    with pytest.raises(ValueError, match="rows must hold 4 bytes"):
        encoder.encode([np.arange(3)], [(np.zeros((3, 5), np.uint8), None)])
    with pytest.raises(ValueError, match="index 3 outside the table's 3 rows"):
        encoder.encode([np.arange(3)], [(table, np.array([0, 1, 3], np.int32))])
    with pytest.raises(ValueError, match="expected 3 elements"):
        encoder.encode([np.arange(3)], [(table, np.array([0, 1], np.int32))])
    with pytest.raises(ValueError, match="one row per record"):
        encoder.encode([np.arange(2)], [(table, None)])
    with pytest.raises(ValueError, match="expected integers"):
        encoder.encode([np.ones(3)], [(table, None)])


def test_an_empty_table_of_many_rows_is_not_taken_for_a_full_one():
    # 2^40 rows of 0 bytes: their size "times" 2^30 bytes a row wraps to 0 in 64 bits,
    # which passed as a table holding every row and was read far out of bounds.
    encoder = TFRecordEncoder([], [("board", "bytes", 1 << 30)])
    with pytest.raises(ValueError, match=f"rows must hold {1 << 30} bytes"):
        encoder.encode([], [(np.zeros((1 << 40, 0), np.uint8), None)])


@pytest.mark.parametrize("huge_army", [False, True])
def test_compact_view_values_are_the_views_combined(huge_army):
    """The records' view values (one C++ pass, next-state views shared) equal the
    compact views made row by row and combined in numpy; armies too large for uint32
    values take the uint64 path."""
    from generals_rl.experience import CompactBatch
    from generals_rl.storage.tfrecord import _view_values, view_values
    from storage_support import joined, played

    raw = joined(played(heuristic=True))
    if huge_army:  # on a copy: the played batches are shared
        raw = dataclasses.replace(raw, state_army=raw.state_army.copy())
        raw.state_army[0, 0, 0] = 1 << 28
    values, next_values, mask = _view_values(raw)
    dtype = np.uint64 if huge_army else np.uint32
    assert values.dtype == dtype
    want = CompactBatch.from_raw(raw, obstacles=True, wide=True)
    n = len(raw)
    np.testing.assert_array_equal(
        values, view_values(want.state_tiles, want.state_armies, dtype).reshape(n, -1)
    )
    np.testing.assert_array_equal(
        next_values,
        view_values(want.next_state_tiles, want.next_state_armies, dtype).reshape(n, -1),
    )
    np.testing.assert_array_equal(mask, want.action_mask)
