"""The compact layout of packed batches: lossless (each distinct view once, coded as
keyframes and deltas, armies as narrow as the batch allows), its row columns views of
the payload, and every malformed part named; the raw unpacker and submissions refuse
it."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from generals_rl import _core
from generals_rl._proto import experience_pb2 as pb
from generals_rl.experience import CompactBatch
from generals_rl.service import PackedBatchError, unpack
from generals_rl.service.compact_packing import (
    COMPACT_LAYOUT_VERSION,
    pack_compact,
    unpack_compact,
)
from service_support import everything, fill, make_buffer, serving

COMPACT = ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies", "action_mask")
RECORDS = ("sequence", "game_id", "player_id", "tick", "action", "reward", "legal")


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


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_lossless(raw, views, compress, indexed):
    sent = CompactBatch.from_raw(raw, obstacles=True, indexed=True) if indexed else views
    packed = _message(sent, zstandard.ZstdCompressor() if compress else None)
    assert packed.layout == pb.PACKED_LAYOUT_COMPACT and packed.obstacles
    assert packed.layout_version == COMPACT_LAYOUT_VERSION
    got = unpack_compact(packed)
    assert got.views is not None
    for name in (*RECORDS, *COMPACT):
        np.testing.assert_array_equal(getattr(got, name), getattr(views, name), err_msg=name)
    assert got.state_armies.dtype == np.uint16  # byte armies widen as they are gathered
    np.testing.assert_array_equal(got.expand().state, views.expand().state)


def test_indexed_views_hold_each_state_view_once_with_armies_as_narrow_as_they_fit(raw, views):
    indexed = CompactBatch.from_raw(raw, obstacles=True, indexed=True)
    assert indexed.views is not None
    n = len(raw)
    np.testing.assert_array_equal(indexed.views.state_view, np.arange(n))
    # A row's next state is mostly another row's state: only each game's last one is extra.
    games = len(np.unique(raw.game_id))
    assert n < len(indexed.views.tiles) <= n + 2 * games
    assert indexed.views.armies.dtype == (
        np.uint8 if int(raw.state_army.max()) <= 255 else np.uint16
    )
    for name in COMPACT:
        np.testing.assert_array_equal(getattr(indexed, name), getattr(views, name), err_msg=name)
    # take and concat see the per-row columns
    both = CompactBatch.concat([indexed.take(slice(0, 10)), indexed.take(slice(10, None))])
    assert both.views is None
    np.testing.assert_array_equal(both.next_state_armies, views.next_state_armies)


@pytest.mark.parametrize("army", [255, 256, 70_000])
def test_the_army_width_follows_the_largest_army(raw, army):
    big = raw.select(np.arange(40))
    big.state_army = big.state_army.copy()
    big.state_army[big.state_kind == _core.TILE_GENERAL] = army
    indexed = CompactBatch.from_raw(big, army_scale=100_000.0, indexed=True)
    assert indexed.views is not None
    expected = np.uint8 if army <= 255 else np.int32
    assert indexed.views.armies.dtype == expected
    per_row = CompactBatch.from_raw(big, army_scale=100_000.0)
    got = unpack_compact(_message(indexed))
    for name in COMPACT:
        np.testing.assert_array_equal(getattr(got, name), getattr(per_row, name), err_msg=name)


def test_wide_armies_travel_as_int32(raw):
    wide = CompactBatch.from_raw(raw, wide=True)
    got = unpack_compact(_message(wide))
    assert got.state_armies.dtype == np.int32
    np.testing.assert_array_equal(got.next_state_armies, wide.next_state_armies)


def test_uncompressed_row_columns_are_views_of_the_payload(views):
    packed = _message(views)
    payload = memoryview(packed.payload)
    got = unpack_compact(packed, payload=payload)
    assert got.views is not None
    base = np.frombuffer(payload, np.uint8).ctypes.data
    arrays = {
        "state_view": got.views.state_view,
        "next_state_view": got.views.next_state_view,
        "sequence": got.sequence,
        "reward": got.reward,
    }
    for name, array in arrays.items():
        offset = array.ctypes.data - base
        assert 0 <= offset < len(payload), name
        assert not array.flags.writeable, name


def _column(packed: pb.PackedBatch, name: str):
    return next(c for c in packed.columns if c.name == name)


def _poke(packed: pb.PackedBatch, name: str, value: np.ndarray, at: int = 0) -> None:
    """Writes ``value`` at element ``at`` of column ``name`` of the payload."""
    column = _column(packed, name)
    payload = bytearray(packed.payload)
    start = column.offset + at * value.itemsize
    payload[start : start + value.itemsize] = value.tobytes()
    packed.payload = bytes(payload)


def _values(packed: pb.PackedBatch, name: str, dtype) -> np.ndarray:
    column = _column(packed, name)
    count = column.size // np.dtype(dtype).itemsize
    return np.frombuffer(packed.payload, dtype, count, column.offset)


def _corrupt(packed: pb.PackedBatch, how: str) -> pb.PackedBatch:
    base = _values(packed, "view_base", "<i4")
    delta = int(np.flatnonzero(base >= 0)[3])  # a view coded against another
    if how == "layout":
        packed.layout = pb.PACKED_LAYOUT_RAW
    elif how == "state_count":
        packed.state_count = 4
    elif how == "shape":
        packed.columns[-1].shape[0] += 1
    elif how == "code":
        _poke(packed, "key_tiles", np.uint8(31), at=5)
    elif how == "change_code":
        _poke(packed, "change_code", np.uint8(18), at=2)
    elif how == "version":
        packed.layout_version = 0
    elif how == "version_1":
        packed.layout_version = 1
    elif how == "view_count":
        packed.view_count = 1 << 31
    elif how == "keyframe_count":
        packed.keyframe_count = packed.view_count + 1
    elif how == "change_count":
        packed.change_count = 1 << 31
    elif how == "columns":  # view_count cut with the columns: sizes no longer add up
        packed.view_count -= 1
        for name in ("view_base", "delta_end"):
            _column(packed, name).shape[0] -= 1
    elif how == "index":
        _poke(packed, "next_state_view", np.int32(packed.view_count), at=3)
    elif how == "negative_index":
        _poke(packed, "state_view", np.int32(-1), at=7)
    elif how == "forward_base":
        _poke(packed, "view_base", np.int32(delta), at=delta)
    elif how == "base_below":
        _poke(packed, "view_base", np.int32(-2), at=delta)
    elif how == "extra_keyframe":
        _poke(packed, "view_base", np.int32(-1), at=delta)
    elif how == "missing_keyframe":
        _poke(packed, "view_base", np.int32(0), at=int(np.flatnonzero(base < 0)[1]))
    elif how == "delta_end_back":
        _poke(packed, "delta_end", np.uint32(0), at=packed.view_count - 1)
    elif how == "delta_end_beyond":
        _poke(packed, "delta_end", np.uint32(packed.change_count + 1), at=packed.view_count - 1)
    elif how == "change_tile":
        _poke(packed, "change_tile", np.uint16(packed.height * packed.width), at=4)
    elif how == "truncated":
        packed.payload = packed.payload[:-1]
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
        ("shape", "column 'change_army' has shape"),
        ("code", "key_tiles: tile code 31, codes are below 18"),
        ("change_code", "change_code: tile code 18, codes are below 18"),
        ("version", "layout_version 0 of the compact layout, this reader reads version 2"),
        ("version_1", "layout_version 1 of the compact layout, this reader reads version 2"),
        ("view_count", "view_count 2147483648 is more than two views a row"),
        ("keyframe_count", "keyframe_count .* is more than the .* views"),
        ("change_count", "change_count 2147483648 is more than every tile"),
        ("columns", "column 'view_base' is .* bytes, its shape needs"),
        ("index", "next_state_view holds view .*, the batch has"),
        ("negative_index", "state_view holds view -1"),
        ("forward_base", r"view_base of view (\d+): \1, expected -1 \(a keyframe\) or an earlier"),
        ("base_below", r"view_base of view \d+: -2, expected -1"),
        ("extra_keyframe", "delta_end of view .* changes of a keyframe|view_base: .* keyframes"),
        ("missing_keyframe", "view_base: .* keyframes, key_tiles holds"),
        ("delta_end_back", r"delta_end of view \d+: 0, expected"),
        ("delta_end_beyond", r"delta_end of view \d+: \d+, expected"),
        ("change_tile", r"change_tile: tile (\d+), the board has \1"),
        ("truncated", "payload holds .* bytes, uncompressed_size says"),
        ("flags", "flags has bits other than"),
    ],
)
def test_malformed_compact_batches_are_named(views, how, words):
    with pytest.raises(PackedBatchError, match=words):
        unpack_compact(_corrupt(_message(views), how))


@pytest.mark.parametrize("column", ["key_armies", "change_army"])
def test_negative_wide_armies_are_named(raw, column):
    wide = CompactBatch.from_raw(raw, wide=True, indexed=True)
    packed = _message(wide)
    _poke(packed, column, np.int32(-5), at=11)
    with pytest.raises(PackedBatchError, match=f"{column}: army -5, armies are >= 0"):
        unpack_compact(packed)


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


def _rows(raw, which: str):
    if which == "all":
        return raw
    if which == "shuffled":  # next states found at other places, or not at all
        return raw.select(np.random.default_rng(3).permutation(len(raw))[: len(raw) // 3])
    return raw.select(np.zeros(len(raw), dtype=bool))


@pytest.mark.parametrize("which", ["all", "shuffled", "empty"])
@pytest.mark.parametrize("army_scale", [1000.0, 100_000.0])
@pytest.mark.parametrize("obstacles", [False, True])
def test_views_through_the_message_equal_views_made_one_at_a_time(
    raw, which, army_scale, obstacles
):
    from generals_rl.service.consumer import _SPLIT_BATCH
    from generals_rl.service.messages import MessageEncoder
    from generals_rl.service.stats import CollectionClock

    buffer = make_buffer(capacity=10, army_scale=army_scale)
    encoder = MessageEncoder(buffer, "b", CollectionClock())
    rows = _rows(raw, which)
    views = CompactBatch.from_raw(rows, army_scale=army_scale, obstacles=obstacles, indexed=True)
    message, payload = _SPLIT_BATCH(encoder.batch_message(views, 0, 7, None, obstacles))
    assert message.packed.obstacles == obstacles and message.next_sequence == 7
    got = unpack_compact(message.packed, None, payload)
    assert len(got) == len(rows)
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
        np.testing.assert_array_equal(getattr(got, f"{name}_tiles"), tiles)
        np.testing.assert_array_equal(getattr(got, f"{name}_armies"), armies)


def test_stream_views_refuse_bad_input_naming_it(raw):
    tables = (raw.state_kind, raw.state_owner, raw.state_army)
    states = raw.state_kind.shape[0]
    views = (raw.state_index, raw.player_id)
    bad_state = raw.state_index.copy()
    bad_state[4] = states
    with pytest.raises(ValueError, match="view_state: row 4 refers to state"):
        _core.compact_views(*tables, bad_state, raw.player_id, 0)
    with pytest.raises(ValueError, match="view_state: expected"):
        _core.compact_views(*tables, bad_state[:-1], raw.player_id, 0)
    with pytest.raises(ValueError, match="view_player: row 0"):
        _core.compact_views(*tables, raw.state_index, raw.player_id * 0 - 1, 0)
    with pytest.raises(ValueError, match=r"masked_views: expected 0\.\."):
        _core.compact_views(*tables, *views, len(raw) + 1)
    with pytest.raises(ValueError, match="army_bytes: expected 1, 2 or 4, got 3"):
        _core.compact_views(*tables, *views, 0, False, 3)
    with pytest.raises(ValueError, match="next_state_index: row 4 refers to state"):
        _core.compact_view_plan(raw.state_index, bad_state, raw.player_id, states)
    with pytest.raises(ValueError, match="state_index: expected"):
        _core.compact_view_plan(bad_state[:-1], raw.state_index, raw.player_id, states)
    bad_player = raw.player_id.copy()
    bad_player[2] = _core.MAX_PLAYERS
    with pytest.raises(ValueError, match="player_id: row 2"):
        _core.compact_experiences(*tables, raw.state_index, raw.next_state_index, bad_player)
