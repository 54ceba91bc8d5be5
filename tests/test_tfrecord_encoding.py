"""The C++ TFRecord encoder: CRC32C against google-crc32c, records read back by
the ``tfrecord`` package's Example parser and checked with an independent CRC,
views made from state tables against the compact views, and clear errors for
bad arguments."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import time

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
    records, lengths, crc = encoder.encode(
        [sequence, small], [(reward, None), (table, index), (packed, np.zeros(n, np.int32))]
    )
    assert records.dtype == np.uint8 and len(lengths) == n
    assert crc == google_crc32c.value(records.tobytes())
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
    first, _, _ = encoder.encode([np.arange(10)], [])
    kept = first.tobytes()
    encoder.encode([np.arange(10, 20)], [])
    assert first.tobytes() == kept
    empty, lengths, crc = encoder.encode([np.zeros(0, np.int64)], [])
    assert len(empty) == 0 and len(lengths) == 0 and crc == 0


def test_an_unpickled_array_of_the_wanted_dtype_is_not_scanned():
    # Its dtype equals int32 but is another object: such arrays were checked value by
    # value (a min and a max over the array) before being used as they are.
    index = pickle.loads(pickle.dumps(np.zeros(20_000_000, np.int32)))
    assert index.dtype == np.int32 and index.dtype is not np.dtype(np.int32)
    encoder = TFRecordEncoder(["x"], [("board", "bytes", 4)])
    table = np.zeros((3, 4), np.uint8)

    def cpu_seconds(action) -> float:
        start = time.process_time()
        for _ in range(5):
            action()
        return time.process_time() - start

    def convert():
        # the index is converted, then refused for its size: no other work
        with pytest.raises(ValueError, match="expected 1 elements, got 20000000"):
            encoder.encode([np.arange(1)], [(table, index)])

    scans = cpu_seconds(lambda: (index.min(), index.max()))
    assert cpu_seconds(convert) < scans / 4


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


def view_encoder(tiles: int, num_threads: int = 1) -> TFRecordEncoder:
    return TFRecordEncoder(
        ["tick"],
        [
            ("state_view", "state views", tiles),
            ("next_state_view", "next state views", tiles),
            ("action_mask", "state masks", tiles),
        ],
        num_threads,
    )


# Armies either side of each varint length of a view value (army << 5 | code):
# one byte below 4, two below 512, three below 65,536.
VARINT_EDGE_ARMIES = np.array([0, 3, 4, 5, 511, 512, 513, 65_535, 65_536, 2_000_000], np.int32)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("armies", ["played", "varint edges", "huge"])
def test_views_made_from_the_tables_are_the_compact_views(armies, num_threads):
    """Records whose views the encoder makes from the state tables hold the compact
    views made row by row (``army << VIEW_ARMY_SHIFT | tile code``, armies beyond
    uint32 values included) and the packed masks, on any number of threads."""
    from generals_rl._core import VIEW_ARMY_SHIFT
    from generals_rl.experience import CompactBatch
    from generals_rl.experience.compact import view_sources
    from storage_support import joined, played

    raw = joined(played(heuristic=True))
    if armies != "played":  # on a copy: the played batches are shared
        raw = dataclasses.replace(raw, state_army=raw.state_army.copy())
    if armies == "huge":
        raw.state_army[:, 0, :] = (1 << 31) - 1
    if armies == "varint edges":  # every tile, so that seen tiles take each value
        flat = raw.state_army.reshape(-1)
        flat[:] = np.resize(VARINT_EDGE_ARMIES, flat.size)
    n, tiles = len(raw), raw.state_kind[0].size
    records, lengths, crc = view_encoder(tiles, num_threads).encode(
        [raw.tick], [None, None, None], view_sources(raw)
    )
    assert crc == google_crc32c.value(records.tobytes())  # joined from the ranges' on two threads
    want = CompactBatch.from_raw(raw, obstacles=True, wide=True)
    state = want.state_armies.reshape(n, -1).astype(np.uint64) << np.uint64(VIEW_ARMY_SHIFT)
    state |= want.state_tiles.reshape(n, -1)
    following = want.next_state_armies.reshape(n, -1).astype(np.uint64) << np.uint64(
        VIEW_ARMY_SHIFT
    )
    following |= want.next_state_tiles.reshape(n, -1)
    for i, data in enumerate(split_records(records.tobytes(), lengths)):
        feature = example_pb2.Example.FromString(data).features.feature
        assert feature["tick"].int64_list.value[0] == raw.tick[i]
        assert list(feature["state_view"].int64_list.value) == state[i].tolist()
        assert list(feature["next_state_view"].int64_list.value) == following[i].tolist()
        assert feature["action_mask"].bytes_list.value[0] == want.action_mask[i].tobytes()


def test_bad_views_are_clear_errors():
    from generals_rl.experience.compact import view_sources
    from storage_support import joined, played

    raw = joined(played(steps=5, envs=2))
    tiles = raw.state_kind[0].size
    encoder = view_encoder(tiles)
    columns = [raw.tick]

    def encode(**changes):
        sources = list(view_sources(dataclasses.replace(raw, **changes)))
        return encoder.encode(columns, [None, None, None], sources)

    with pytest.raises(ValueError, match="need the state tables"):
        encoder.encode(columns, [None, None, None])
    with pytest.raises(ValueError, match="made from the views, expected None"):
        encoder.encode(columns, [(raw.state_kind, None)] * 3, view_sources(raw))
    with pytest.raises(ValueError, match="views: expected"):
        encoder.encode(columns, [None, None, None], view_sources(raw)[:5])
    with pytest.raises(ValueError, match="state_kind: boards of 3x4"):
        encode(state_kind=np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="state_kind: 9 at flat index 0"):
        kind = raw.state_kind.copy()
        kind[0, 0, 0] = 9
        encode(state_kind=kind)
    with pytest.raises(ValueError, match="state_army: armies must be >= 0, got -5"):
        army = raw.state_army.copy()
        army[0, 0, 0] = -5
        encode(state_army=army)
    with pytest.raises(ValueError, match="state_owner: expected"):
        encode(state_owner=raw.state_owner[:1])
    with pytest.raises(ValueError, match="state_army: expected integers"):
        encode(state_army=raw.state_army.astype(np.float64) + 0.5)
    with pytest.raises(ValueError, match="next_state_index: row 1 refers to state -1"):
        index = raw.next_state_index.copy()
        index[1] = -1
        encode(next_state_index=index)
    with pytest.raises(ValueError, match="state_index: row 0 refers to state 1000000"):
        index = raw.state_index.copy()
        index[0] = 1_000_000
        encode(state_index=index)
    with pytest.raises(ValueError, match="player_id: row 2: 99 outside"):
        player = raw.player_id.astype(np.int32)
        player[2] = 99
        encode(player_id=player)
    with pytest.raises(ValueError, match="player_id: expected"):
        encode(player_id=raw.player_id[:1])
    with pytest.raises(ValueError, match="a board of 1"):
        view_encoder(0)
    with pytest.raises(ValueError, match="one number of tiles"):
        TFRecordEncoder([], [("a", "state views", 4), ("b", "state masks", 6)])
    with pytest.raises(ValueError, match="num_threads: must be 0"):
        view_encoder(tiles, -1)


def test_a_writer_on_two_threads_writes_the_same_files(tmp_path):
    from generals_rl.storage import TFRecordWriter
    from storage_support import played

    shards = {}
    for threads in (1, 2):
        writer = TFRecordWriter(
            tmp_path / str(threads), states="compact_views", encode_threads=threads
        )
        for batch in played(heuristic=True):
            writer.write(batch)
        writer.close()
        files = sorted(p for p in (tmp_path / str(threads)).rglob("*.tfrecord*"))
        shards[threads] = [(p.name, p.read_bytes()) for p in files]
        # The checksums the index records (joined from each block's, which the
        # encoder's ranges computed) are the files'.
        for index in (tmp_path / str(threads)).rglob("_index.json"):
            for entry in json.loads(index.read_text())["shards"]:
                data = (index.parent / entry["name"]).read_bytes()
                assert entry["checksum"] == f"crc32c:{google_crc32c.value(data):08x}"
    assert shards[1] and shards[1] == shards[2]


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_a_bad_thread_count_names_the_option(tmp_path, value):
    from generals_rl.storage import TFRecordWriter

    with pytest.raises(ValueError, match="encode_threads"):
        TFRecordWriter(tmp_path, states="compact_views", encode_threads=value)


def test_the_index_lists_each_records_offset_and_length():
    from generals_rl._core import tfrecord_index

    lengths = np.array([5, 7, 0, 3, 2**40], np.int64)
    assert tfrecord_index(lengths) == b"0 5\n5 7\n12 0\n12 3\n15 1099511627776\n"
    assert tfrecord_index(np.zeros(0, np.int64)) == b""


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([3, -1], "record 1 has length -1, outside 0.."),
        ([2**62, 2**62], "record 1 has length 4611686018427387904, outside 0..4611686018427387903"),
        ([[1, 2]], "lengths: expected a one-dimensional array"),
        ([1.5], "lengths: expected integers"),
    ],
)
def test_an_index_of_impossible_lengths_is_refused(lengths, message):
    from generals_rl._core import tfrecord_index

    with pytest.raises(ValueError, match=message):
        tfrecord_index(lengths)
