"""The gRPC stream and every storage format give the compact form: the stream's
compact views (``compact=True``) and the compact-view TFRecords equal the compact
views of the buffer's own batches and expand to the decoded form bit for bit; raw
batches of every format turned into CompactBatch do too."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl.experience import CompactBatch, RawBatch
from generals_rl.service import ExperienceConsumer
from generals_rl.storage import TFRecordWriter, open_dataset, open_writer
from service_support import everything, fill, make_buffer, serving
from storage_support import joined, played

COMPACT = ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies", "action_mask")
DECODED = ("state", "next_state", "action_mask")


def assert_same_compact(got: CompactBatch, want: CompactBatch) -> None:
    for name in ("sequence", "game_id", "player_id", "tick", "action", "reward", "legal"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    for name in COMPACT:
        got_column, want_column = getattr(got, name), getattr(want, name)
        assert got_column.shape == want_column.shape, name
        assert np.array_equal(got_column, want_column), name


def assert_same_decoded(got, want) -> None:
    for name in DECODED:
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), name


@pytest.mark.parametrize("fmt", ["parquet", "npz", "tfrecord"])
def test_each_storage_format_round_trips_the_compact_form(tmp_path, fmt):
    batches = played()
    with open_writer(fmt, tmp_path, max_experiences=1200, chunk_size=500) as writer:
        for batch in batches:
            writer.write(batch)
    stored = CompactBatch.from_raw(open_dataset(tmp_path).read(), obstacles=True)
    assert_same_compact(stored, CompactBatch.from_raw(joined(batches), obstacles=True))
    assert_same_compact(
        open_dataset(tmp_path, form="compact").read(), CompactBatch.from_raw(joined(batches))
    )
    decoded = open_dataset(tmp_path, form="decoded").read()
    assert_same_decoded(CompactBatch.from_raw(open_dataset(tmp_path).read()).expand(), decoded)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_compact_view_tfrecords_round_trip_and_expand_to_the_decoded_form(tmp_path, compression):
    batches = played(heuristic=True)
    with TFRecordWriter(
        tmp_path, states="compact_views", compression=compression, max_experiences=1500
    ) as writer:
        for batch in batches:
            writer.write(batch)
    truth = joined(batches)
    stored = open_dataset(tmp_path, form="compact").read()
    assert_same_compact(stored, CompactBatch.from_raw(truth, obstacles=True, wide=True))
    for scaling, scale in (("linear", 1000.0), ("log", 50.0)):
        decoded = open_dataset(
            tmp_path, form="decoded", army_scaling=scaling, army_scale=scale
        ).read()
        truth_decoded = truth.decode(scaling, scale)
        assert_same_decoded(decoded, truth_decoded)
    with pytest.raises(Exception, match="compact views only"):
        open_dataset(tmp_path).read()


def test_compact_view_tfrecords_are_small(tmp_path):
    batches = played(heuristic=True)
    with TFRecordWriter(tmp_path, states="compact_views") as writer:
        for batch in batches:
            writer.write(batch)
    size = sum(p.stat().st_size for p in tmp_path.rglob("*.tfrecord"))
    count = len(joined(batches))
    # 20x20: two views of 400 one-byte codes and small armies, a 200-byte mask
    assert size / count <= 1500, size / count


def test_compact_view_tfrecords_keep_armies_beyond_the_uint32_values(tmp_path):
    raw = joined(played())
    army = raw.state_army.copy()
    army[raw.state_kind == 3] = 1 << 28  # generals: values need 64 bits
    big = RawBatch.from_dict({**raw.to_dict(), "state_army": army})
    with TFRecordWriter(tmp_path, states="compact_views") as writer:
        writer.write(big)
    stored = open_dataset(tmp_path, form="compact").read()
    assert int(stored.state_armies.max()) == 1 << 28
    assert_same_compact(stored, CompactBatch.from_raw(big, obstacles=True, wide=True))


def test_a_compact_view_writer_refuses_decoded_batches(tmp_path):
    decoded = joined(played()).decode()
    with (
        TFRecordWriter(tmp_path, states="compact_views") as writer,
        pytest.raises(TypeError, match="compact_views writer takes a RawBatch"),
    ):
        writer.write(decoded)


@pytest.mark.parametrize("compression", [False, True])
@pytest.mark.parametrize("obstacles", [False, True])
def test_the_stream_delivers_compact_views(compression, obstacles):
    buffer = make_buffer(army_scaling="log")
    fill(buffer, 3000)
    truth = everything(buffer)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        batches = list(
            consumer.stream_experiences(
                follow=False,
                batch_size=1024,
                start="oldest",
                compact=True,
                obstacles=obstacles,
                compression=compression,
            )
        )
    assert all(isinstance(b, CompactBatch) for b in batches)
    streamed = CompactBatch.concat(batches)
    assert len(streamed) == len(truth) >= 3000
    assert_same_compact(streamed, CompactBatch.from_raw(truth, obstacles=obstacles))
    assert streamed.next_sequence == batches[-1].next_sequence == buffer.head
    expanded = streamed.expand(army_scaling="log", obstacles=obstacles)
    decoded = CompactBatch.from_raw(truth, obstacles=obstacles).expand(
        army_scaling="log", obstacles=obstacles
    )
    assert_same_decoded(expanded, decoded)
    if not obstacles:
        assert_same_decoded(expanded, buffer.decode(truth))


def test_streamed_compact_views_reach_torch_without_a_copy():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    import generals_rl.torch as gtorch

    buffer = make_buffer()
    fill(buffer, 600)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        batch = next(iter(consumer.stream_experiences(follow=False, batch_size=512, compact=True)))
    for name in COMPACT:
        array = getattr(batch, name)
        tensor = gtorch.as_tensor(array)
        assert tensor.data_ptr() == array.ctypes.data, name
    observations = gtorch.expand(
        gtorch.as_tensor(batch.state_tiles), gtorch.as_tensor(batch.state_armies)
    )
    assert torch.equal(observations, torch.from_numpy(batch.expand().state))


def test_the_raw_stream_still_round_trips_the_compact_form():
    buffer = make_buffer(army_scaling="log")
    fill(buffer, 3000)
    truth = everything(buffer)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        batches = list(
            consumer.stream_experiences(follow=False, batch_size=256, start="oldest", decode=False)
        )
    streamed = CompactBatch.from_raw(RawBatch.concat(batches))
    assert_same_compact(streamed, CompactBatch.from_raw(truth))
    assert_same_decoded(streamed.expand(army_scaling="log"), buffer.decode(truth))


def test_compact_view_tfrecords_read_with_the_tfrecord_package(tmp_path):
    tfrecord = pytest.importorskip("tfrecord", reason="the tfrecord package is not installed")
    batches = played()[:3]
    with TFRecordWriter(tmp_path, states="compact_views") as writer:
        for batch in batches:
            writer.write(batch)
    (path,) = [p for p in tmp_path.rglob("*.tfrecord")]
    records = list(tfrecord.tfrecord_loader(str(path), None, None))
    truth = CompactBatch.from_raw(joined(batches), obstacles=True, wide=True)
    assert len(records) == len(truth)
    assert np.array_equal(np.concatenate([r["sequence"] for r in records]), truth.sequence)
    assert list(records[0]["state_shape"]) == [20, 20]
    for name in ("state", "next_state"):
        values = np.stack([r[f"{name}_view"] for r in records])
        tiles, armies = getattr(truth, f"{name}_tiles"), getattr(truth, f"{name}_armies")
        assert np.array_equal(values & 31, tiles.reshape(len(truth), -1)), name
        assert np.array_equal(values >> 5, armies.reshape(len(truth), -1)), name
    masks = np.stack([np.frombuffer(r["action_mask"], np.uint8) for r in records])
    assert np.array_equal(masks, truth.action_mask)
