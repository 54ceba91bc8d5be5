"""The compact layout of packed batches: lossless, its arrays views of the payload,
and every malformed part named; the raw unpacker and submissions refuse it."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from generals_rl import _core
from generals_rl._proto import experience_pb2 as pb
from generals_rl.experience import CompactBatch
from generals_rl.service import PackedBatchError, unpack
from generals_rl.service.compact_packing import pack_compact, unpack_compact
from service_support import everything, fill, make_buffer, serving

COMPACT = ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies", "action_mask")


@pytest.fixture(scope="module")
def raw():
    buffer = make_buffer()
    fill(buffer, 1_000, max_ticks=60)
    return everything(buffer)


@pytest.fixture(scope="module")
def views(raw) -> CompactBatch:
    return CompactBatch.from_raw(raw, obstacles=True)


def _message(views: CompactBatch, compressor=None) -> pb.PackedBatch:
    packed, parts = pack_compact(views, True, compressor)
    packed.payload = b"".join(parts)
    return packed


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_lossless(views, compress):
    packed = _message(views, zstandard.ZstdCompressor() if compress else None)
    assert packed.layout == pb.PACKED_LAYOUT_COMPACT and packed.obstacles
    got = unpack_compact(packed)
    for name in ("sequence", "game_id", "player_id", "tick", "action", "reward", "legal", *COMPACT):
        np.testing.assert_array_equal(getattr(got, name), getattr(views, name), err_msg=name)
    assert got.state_armies.dtype == np.uint16


def test_wide_armies_travel_as_int32(raw):
    wide = CompactBatch.from_raw(raw, wide=True)
    got = unpack_compact(_message(wide))
    assert got.state_armies.dtype == np.int32
    np.testing.assert_array_equal(got.next_state_armies, wide.next_state_armies)


def test_uncompressed_arrays_are_views_of_the_payload(views):
    packed = _message(views)
    payload = memoryview(packed.payload)
    got = unpack_compact(packed, payload=payload)
    base = np.frombuffer(payload, np.uint8).ctypes.data
    for name in COMPACT:
        offset = getattr(got, name).ctypes.data - base
        assert 0 <= offset < len(payload), name
        assert not getattr(got, name).flags.writeable, name


def _corrupt(packed: pb.PackedBatch, how: str) -> pb.PackedBatch:
    if how == "layout":
        packed.layout = pb.PACKED_LAYOUT_RAW
    elif how == "state_count":
        packed.state_count = 4
    elif how == "shape":
        packed.columns[-1].shape[1] += 1
    elif how == "code":
        column = next(c for c in packed.columns if c.name == "next_state_tiles")
        payload = bytearray(packed.payload)
        payload[column.offset + 5] = 31
        packed.payload = bytes(payload)
    elif how == "flags":
        column = next(c for c in packed.columns if c.name == "flags")
        payload = bytearray(packed.payload)
        payload[column.offset] = 0x80
        packed.payload = bytes(payload)
    return packed


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("layout", "not PACKED_LAYOUT_COMPACT"),
        ("state_count", "no state tables"),
        ("shape", "column 'action_mask' has shape"),
        ("code", "next_state_tiles holds tile code 31"),
        ("flags", "flags has bits other than"),
    ],
)
def test_malformed_compact_batches_are_named(views, how, words):
    with pytest.raises(PackedBatchError, match=words):
        unpack_compact(_corrupt(_message(views), how))


def test_the_raw_unpacker_and_submissions_refuse_compact_views(views):
    packed = _message(views)
    with pytest.raises(PackedBatchError, match="not PACKED_LAYOUT_RAW"):
        unpack(packed)
    import grpc
    from generals_rl._proto import experience_pb2_grpc as pb_grpc

    buffer = make_buffer(capacity=10_000)
    with (
        serving(buffer) as server,
        grpc.insecure_channel(server.address) as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        pb_grpc.ExperienceServiceStub(channel).SubmitExperiences(
            pb.SubmitExperiencesRequest(packed=packed), timeout=30
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not PACKED_LAYOUT_RAW" in error.value.details()


def test_the_single_experience_stream_refuses_compact_views():
    import grpc
    from generals_rl._proto import experience_pb2_grpc as pb_grpc

    with (
        serving(make_buffer(capacity=10_000)) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stream = pb_grpc.ExperienceServiceStub(channel).StreamExperiences(
            pb.StreamExperiencesRequest(compact_views=True), timeout=30
        )
        with pytest.raises(grpc.RpcError) as error:
            list(stream)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "compact_views" in error.value.details()


class _FixedClock:
    """Collection times that do not move, so two encodings of a batch compare."""

    def time_of(self, sequence: int) -> float:
        return 1_000.0 + sequence

    def times_of(self, sequences: np.ndarray) -> np.ndarray:
        return 1_000.0 + sequences.astype(np.float64)


def _rows(raw, which: str):
    if which == "all":
        return raw
    if which == "shuffled":  # next states found at other places, or not at all
        return raw.select(np.random.default_rng(3).permutation(len(raw))[: len(raw) // 3])
    return raw.select(np.zeros(len(raw), dtype=bool))


@pytest.mark.parametrize("which", ["all", "shuffled", "empty"])
@pytest.mark.parametrize("army_scale", [1000.0, 100_000.0])
@pytest.mark.parametrize("obstacles", [False, True])
def test_views_written_into_the_message_equal_the_packed_views(raw, which, army_scale, obstacles):
    from generals_rl.service.messages import _PACKED, _PAYLOAD, MessageEncoder

    buffer = make_buffer(capacity=10, army_scale=army_scale)
    encoder = MessageEncoder(buffer, "b", _FixedClock())  # type: ignore[arg-type]
    rows = _rows(raw, which)
    fused = encoder.batch_message(rows, 0, 7, compact_views=True, obstacles=obstacles)
    views = CompactBatch.from_raw(rows, army_scale=army_scale, obstacles=obstacles)
    packed, payload = pack_compact(views, obstacles)
    header = encoder.batch_header(rows, 0, 7).SerializeToString()
    expected = b"".join(
        [header, *_PACKED.parts([packed.SerializeToString(), *_PAYLOAD.parts(payload)])]
    )
    assert fused == expected
    if which == "all":  # the views themselves, against views made one at a time
        for name, index in (("state", rows.state_index), ("next_state", rows.next_state_index)):
            tiles, armies, _ = _core.compact_rows(
                rows.state_kind,
                rows.state_owner,
                rows.state_army,
                index,
                rows.player_id,
                obstacles,
                army_scale > _core.NARROW_ARMY_SCALE_MAX,
                False,
                1,
            )
            np.testing.assert_array_equal(getattr(views, f"{name}_tiles"), tiles)
            np.testing.assert_array_equal(getattr(views, f"{name}_armies"), armies)


def test_message_views_refuse_bad_input_naming_it(raw):
    tables = (raw.state_kind, raw.state_owner, raw.state_army)
    rows = (raw.state_index, raw.next_state_index, raw.player_id)
    with pytest.raises(ValueError, match=r"head\[1\]: expected bytes, got memoryview"):
        _core.compact_message([b"x", memoryview(b"y")], *tables, *rows)
    bad_next = raw.next_state_index.copy()
    bad_next[4] = raw.state_kind.shape[0]
    with pytest.raises(ValueError, match="next_state_index: row 4 refers to state"):
        _core.compact_message([], *tables, raw.state_index, bad_next, raw.player_id)
    with pytest.raises(ValueError, match="next_state_index: expected"):
        _core.compact_message([], *tables, raw.state_index, bad_next[:-1], raw.player_id)
    bad_player = raw.player_id.copy()
    bad_player[2] = _core.MAX_PLAYERS
    with pytest.raises(ValueError, match="player_id: row 2"):
        _core.compact_experiences(*tables, raw.state_index, raw.next_state_index, bad_player)
