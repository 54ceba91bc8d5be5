"""The gRPC stream and every storage format give the compact form: their raw batches
turned into CompactBatch equal the compact views of the buffer's own batches and
expand to the decoded form bit for bit."""

from __future__ import annotations

import pytest
from generals_rl.experience import CompactBatch, RawBatch
from generals_rl.service import ExperienceConsumer
from generals_rl.storage import open_dataset, open_writer
from service_support import everything, fill, make_buffer, serving
from storage_support import joined, played

COMPACT = ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies", "action_mask")


def assert_same_compact(got: CompactBatch, want: CompactBatch) -> None:
    for name in ("sequence", "player_id", "tick", *COMPACT):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), name


@pytest.mark.parametrize("fmt", ["parquet", "npz", "tfrecord"])
def test_each_storage_format_round_trips_the_compact_form(tmp_path, fmt):
    batches = played()
    with open_writer(fmt, tmp_path, max_experiences=1200, chunk_size=500) as writer:
        for batch in batches:
            writer.write(batch)
    stored = CompactBatch.from_raw(open_dataset(tmp_path).read(), obstacles=True)
    assert_same_compact(stored, CompactBatch.from_raw(joined(batches), obstacles=True))
    decoded = open_dataset(tmp_path, form="decoded").read()
    expanded = CompactBatch.from_raw(open_dataset(tmp_path).read()).expand()
    for name in ("state", "next_state", "action_mask"):
        assert getattr(expanded, name).tobytes() == getattr(decoded, name).tobytes(), name


def test_the_stream_round_trips_the_compact_form():
    buffer = make_buffer(army_scaling="log")
    fill(buffer, 3000)
    truth = everything(buffer)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        batches = list(
            consumer.stream_experiences(follow=False, batch_size=256, start="oldest", decode=False)
        )
    streamed = CompactBatch.from_raw(RawBatch.concat(batches))
    assert len(streamed) == len(truth) >= 3000
    assert_same_compact(streamed, CompactBatch.from_raw(truth))
    expanded = streamed.expand(army_scaling="log")
    decoded = buffer.decode(truth)
    for name in ("state", "next_state", "action_mask"):
        assert getattr(expanded, name).tobytes() == getattr(decoded, name).tobytes(), name
