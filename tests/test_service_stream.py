"""Streams from a real server on loopback: delivery without gaps or duplicates,
filters, follow and non-follow endings, and the two buffer policies."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from generals_rl.experience import RawBatch
from generals_rl.experience.batch import RECORD_COLUMNS
from generals_rl.service import ExperienceConsumer
from service_support import (
    Producer,
    assert_contiguous,
    everything,
    fill,
    make_buffer,
    serving,
    wait_until,
)


def test_ten_concurrent_consumers_each_receive_10000_without_gap_or_duplicate():
    buffer = make_buffer(capacity=200_000)
    producer = Producer(buffer, target=12_000, rate=40_000)
    with serving(buffer) as server:
        results: dict[int, list[np.ndarray]] = {}
        errors = []

        def consume(index: int) -> None:
            try:
                with ExperienceConsumer(server.address) as consumer:
                    got, total = [], 0
                    # Every other consumer decodes observations, the rest take raw states.
                    stream = consumer.stream_experiences(
                        batch_size=256,
                        start="oldest",
                        decode=index % 2 == 0,
                        compression=index % 3 == 0,
                    )
                    for batch in stream:
                        assert batch.missed == 0
                        got.append(batch.sequence.copy())
                        total += len(batch)
                        if total >= 10_000:
                            break
                    results[index] = got
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        producer.start()
        for thread in threads:
            thread.join(timeout=60)
        producer.stop()
        assert not errors, errors
        assert sorted(results) == list(range(10))
        for index, parts in results.items():
            sequences = np.concatenate(parts)
            assert len(sequences) >= 10_000, index
            assert_contiguous(sequences, 0, len(sequences))
        wait_until(
            lambda: server.active_streams == 0, what="streams to close after the consumers left"
        )


def test_filters_return_exactly_the_matching_subset_with_identical_contents():
    buffer = make_buffer()
    fill(buffer, 6_000)
    truth = everything(buffer)
    games = np.unique(truth.game_id)[[1, 4, 6]]
    expected = np.isin(truth.game_id, games) & (truth.player_id == 1) & (truth.tick >= 20)
    assert 0 < expected.sum() < len(truth)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        for compression in (False, True):
            batches = list(
                consumer.stream_experiences(
                    game_ids=games.tolist(),
                    player_ids=[1],
                    min_tick=20,
                    follow=False,
                    batch_size=100,
                    start="oldest",
                    decode=False,
                    compression=compression,
                )
            )
            got = RawBatch.concat(batches)
            np.testing.assert_array_equal(got.sequence, truth.sequence[expected])
            want = truth.select(expected)
            for name in RECORD_COLUMNS:
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
            for side in ("state_index", "next_state_index"):
                for table in ("state_kind", "state_owner", "state_army"):
                    np.testing.assert_array_equal(
                        getattr(got, table)[getattr(got, side)],
                        getattr(want, table)[getattr(want, side)],
                    )
        # Decoded observations equal the buffer's own decoding.
        decoded = list(
            consumer.stream_experiences(
                player_ids=[0], follow=False, batch_size=500, start="oldest"
            )
        )
        reference = buffer.decode(truth.select(truth.player_id == 0))
        np.testing.assert_array_equal(np.concatenate([b.state for b in decoded]), reference.state)
        np.testing.assert_array_equal(
            np.concatenate([b.next_state for b in decoded]), reference.next_state
        )
        np.testing.assert_array_equal(
            np.concatenate([b.action_mask for b in decoded]), reference.action_mask
        )
        # Game ids given as strings work the same way.
        from generals_rl.experience import format_game_id

        as_text = list(
            consumer.stream_experiences(
                game_ids=[format_game_id(g) for g in games],
                follow=False,
                start="oldest",
                decode=False,
            )
        )
        np.testing.assert_array_equal(
            RawBatch.concat(as_text).sequence, truth.sequence[np.isin(truth.game_id, games)]
        )


def test_non_follow_streams_what_is_resident_then_ends():
    buffer = make_buffer()
    fill(buffer, 3_000)
    head = buffer.head
    producer = Producer(buffer, rate=20_000)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        producer.start()
        wait_until(lambda: buffer.head > head, what="the producer")
        started = time.monotonic()
        batches = list(
            consumer.stream_experiences(follow=False, batch_size=512, start="oldest", decode=False)
        )
        assert time.monotonic() - started < 10
        sequences = np.concatenate([b.sequence for b in batches])
        # Everything resident when the stream began, and nothing appended after it started.
        assert head <= len(sequences) <= buffer.head
        assert_contiguous(sequences, 0, len(sequences))
        assert consumer.positions[server.address].next_sequence == len(sequences)
        producer.stop()


def test_follow_streams_new_experiences_until_the_client_cancels():
    buffer = make_buffer()
    fill(buffer, 100)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        stream = consumer.stream_experiences(
            follow=True, batch_size=64, start="oldest", decode=False
        )
        got = [next(stream).sequence]
        producer = Producer(buffer, target=3_000)
        producer.start()
        for batch in stream:
            got.append(batch.sequence)
            if got[-1][-1] >= 2_999:
                break
        producer.stop()
        assert_contiguous(np.concatenate(got)[:3_000], 0, 3_000)
        assert server.active_streams == 1  # still following
        stream.close()
        wait_until(lambda: server.active_streams == 0, what="the server to notice the cancel")


def test_follow_stream_ends_cleanly_when_the_server_shuts_down_after_sending_everything():
    buffer = make_buffer()
    fill(buffer, 2_000)
    server_ctx = serving(buffer)
    server = server_ctx.__enter__()
    consumer = ExperienceConsumer(server.address)
    got = []
    done = threading.Event()

    def consume():
        for batch in consumer.stream_experiences(
            follow=True, batch_size=128, start="oldest", decode=False
        ):
            got.append(batch.sequence)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    wait_until(lambda: server.active_streams == 1, what="the stream to open")
    assert server.wait_drained(10)
    server_ctx.__exit__(None, None, None)
    assert done.wait(10), "the follow stream did not end after a graceful shutdown"
    thread.join()
    assert_contiguous(np.concatenate(got), 0, buffer.head)
    consumer.close()


def test_overwrite_slow_consumer_is_told_its_gap_and_does_not_stall_the_others():
    # The producer stays within half the ring of what the fast consumer has read, so
    # the fast one never falls a ring behind however loaded the machine is, while the
    # slow one stops reading until the ring has turned over three times.
    capacity = 16_384
    buffer = make_buffer(capacity=capacity, policy="overwrite")
    fill(buffer, 10)
    target = 100_000
    fast_read = [0]
    producer = Producer(
        buffer, target=target, paced_by=lambda: fast_read[0], max_lead=capacity // 2
    )
    with serving(buffer) as server:
        slow_batches, fast_batches = [], []

        def run(batches, slow):
            deadline = time.monotonic() + 60
            with ExperienceConsumer(server.address) as consumer:
                stream = consumer.stream_experiences(
                    follow=True, batch_size=256, start="oldest", decode=False
                )
                for batch in stream:
                    batches.append(batch)
                    if slow and len(batches) == 1:
                        wait_until(
                            lambda at=batch.next_sequence: buffer.head > at + 3 * capacity,
                            timeout=30,
                            what="the ring to turn over while the slow consumer stalls",
                        )
                    if not slow:
                        fast_read[0] = batch.next_sequence
                    if time.monotonic() > deadline:
                        break
                    # The fast one reads everything; the slow one until it is told about its gap.
                    if batch.missed if slow else batch.next_sequence >= target:
                        break

        slow = threading.Thread(target=run, args=(slow_batches, True))
        fast = threading.Thread(target=run, args=(fast_batches, False))
        slow.start()
        fast.start()
        wait_until(lambda: server.active_streams == 2)
        producer.start()
        fast.join(timeout=70)
        slow.join(timeout=70)
        producer.stop()
    fast_sequences = np.concatenate([b.sequence for b in fast_batches])
    assert sum(b.missed for b in fast_batches) == 0
    assert_contiguous(
        fast_sequences[fast_sequences < target], 0, target
    )  # all of it while the slow one stalled
    missed = sum(b.missed for b in slow_batches)
    assert missed > 0
    slow_sequences = np.concatenate([b.sequence for b in slow_batches])
    assert np.all(np.diff(slow_sequences.astype(np.int64)) > 0)
    # Every sequence number up to where it stopped was either delivered or counted as missed.
    assert len(slow_sequences) + missed == slow_batches[-1].next_sequence


def test_block_mode_slow_consumer_holds_producers_back_and_misses_nothing():
    buffer = make_buffer(capacity=4_096, policy="block")
    fill(buffer, 100)
    target = 150_000
    producer = Producer(buffer, target=target)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        stream = consumer.stream_experiences(
            follow=True, batch_size=256, start="oldest", decode=False
        )
        got = [next(stream).sequence]  # opens the stream, then stops reading for a while
        producer.start()
        # The stream's cursor runs ahead only by what the transport's flow-control
        # windows hold; then the ring fills and the producer waits.
        wait_until(
            lambda: producer.blocked_steps > 0, timeout=20, what="the producer to be held back"
        )

        def stalled() -> bool:  # no progress at all for 0.3 s while the consumer does not read
            before = buffer.head
            time.sleep(0.3)
            return buffer.head == before

        wait_until(stalled, timeout=20, what="production to stall")
        assert buffer.head < target
        for batch in stream:
            assert batch.missed == 0
            got.append(batch.sequence)
            if got[-1][-1] >= target - 1:
                break
        producer.stop()
        assert_contiguous(np.concatenate(got)[:target], 0, target)


@pytest.mark.parametrize("raw_states", [False, True])
def test_stream_experiences_sends_one_message_per_experience(raw_states):
    import grpc
    from generals_rl._proto import experience_pb2 as pb
    from generals_rl._proto import experience_pb2_grpc as pb_grpc

    buffer = make_buffer()
    fill(buffer, 300)
    truth = everything(buffer)
    decoded = buffer.decode(truth)
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        request = pb.StreamExperiencesRequest(follow=False, batch_size=64, raw_states=raw_states)
        messages = list(stub.StreamExperiences(request, timeout=30))
    assert [m.sequence for m in messages] == truth.sequence.tolist()
    for i in (0, 17, len(messages) - 1):
        m = messages[i]
        assert m.experience_id == f"{server.buffer_id}:{truth.sequence[i]}"
        assert int(m.game_id, 16) == truth.game_id[i]
        assert (m.player_id, m.tick, m.action) == (
            truth.player_id[i],
            truth.tick[i],
            truth.action[i],
        )
        assert m.reward == pytest.approx(float(truth.reward[i]))
        assert m.done == bool(truth.terminated[i] or truth.truncated[i])
        assert m.collected_at.seconds > 0
        if raw_states:
            kind = np.frombuffer(m.raw_state.kind, np.uint8).reshape(truth.state_kind.shape[1:])
            army = np.frombuffer(m.raw_next_state.army, "<i4").reshape(truth.state_kind.shape[1:])
            np.testing.assert_array_equal(kind, truth.state_kind[truth.state_index[i]])
            np.testing.assert_array_equal(army, truth.state_army[truth.next_state_index[i]])
            assert not m.HasField("state")
        else:
            assert list(m.state.shape) == [9, truth.height, truth.width]
            np.testing.assert_array_equal(
                np.array(m.state.data, np.float32), decoded.state[i].ravel()
            )
            np.testing.assert_array_equal(
                np.array(m.next_state.data, np.float32), decoded.next_state[i].ravel()
            )
            np.testing.assert_array_equal(np.array(m.action_mask, bool), decoded.action_mask[i])


def test_one_consumer_merges_several_servers_and_resumes_each():
    buffers = [make_buffer(), make_buffer()]
    fill(buffers[0], 3_000, seed=1)
    fill(buffers[1], 2_000, seed=2)
    with serving(buffers[0]) as first, serving(buffers[1]) as second:
        addresses = [first.address, second.address]
        with ExperienceConsumer(addresses) as consumer:
            got = []
            for batch in consumer.stream_experiences(
                follow=False, batch_size=200, start="oldest", decode=False
            ):
                got.append(batch)
                if len(got) == 8:
                    break
            positions = (
                consumer.positions
            )  # a server that delivered nothing yet has none: it starts at its oldest
            heads = dict(zip(addresses, (b.head for b in buffers), strict=False))
            assert consumer.lag == sum(heads[a] - p.next_sequence for a, p in positions.items()) > 0
        with ExperienceConsumer(addresses) as consumer:
            got += list(
                consumer.stream_experiences(
                    follow=False, batch_size=500, start=positions, decode=False
                )
            )
            assert consumer.lag == 0
            assert consumer.positions == {
                first.address: (first.buffer_id, buffers[0].head),
                second.address: (second.buffer_id, buffers[1].head),
            }
    merged = RawBatch.concat(got)
    for (
        buffer
    ) in buffers:  # game ids are unique across buffers: each one's experiences, each once, in order
        truth = everything(buffer)
        mine = np.isin(merged.game_id, truth.game_id)
        np.testing.assert_array_equal(merged.sequence[mine], truth.sequence)
        np.testing.assert_array_equal(merged.tick[mine], truth.tick)
    assert len(merged) == sum(b.head for b in buffers)


class _Context:
    """What a streaming call uses of gRPC's servicer context, for calling the
    server's handler directly."""

    def is_active(self) -> bool:
        return True

    def add_callback(self, callback) -> None:
        pass

    def abort(self, code, details: str):
        raise AssertionError(f"aborted: {code} {details}")


def test_a_batch_stream_reads_one_message_ahead_and_counts_only_what_was_sent():
    from generals_rl._proto import experience_pb2 as pb
    from generals_rl.service.messages import MessageEncoder
    from generals_rl.service.stats import CollectionClock
    from generals_rl.service.streaming import Streams

    buffer = make_buffer()
    fill(buffer, 3_000)
    end = buffer.head
    streams = Streams(buffer, MessageEncoder(buffer, "b", CollectionClock()), 4, 64 << 20)
    request = pb.StreamExperiencesRequest(batch_size=1_000, compact_views=True)
    messages = streams.stream_batches(request, _Context())
    next(messages)  # handed to gRPC, not sent yet
    (stream,) = streams._open
    wait_until(lambda: stream.cursor.position >= 2_000, what="the next message to be read")
    time.sleep(0.2)
    assert stream.cursor.position == 2_000  # one message ahead, no further
    assert stream.delivered == 0 and not streams.drained()
    next(messages)  # gRPC asks for the next message: the first was sent
    assert stream.delivered == 1_000
    rest = list(messages)
    assert len(rest) == (end - 1) // 1_000 - 1 and stream.delivered == end
    assert streams.active == 0 and stream.cursor.closed


def test_read_ahead_passes_errors_on_and_stops_when_closed():
    import itertools

    from generals_rl.service.streaming import ReadAhead

    def failing():
        yield 1
        raise RuntimeError("the encoder failed")

    items = iter(ReadAhead(failing()))
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="the encoder failed"):
        next(items)
    made = []
    endless = ReadAhead(made.append(i) or i for i in itertools.count())
    wait_until(lambda: len(made) == 1, what="the first item")
    time.sleep(0.2)
    assert len(made) == 1  # made, then waiting for the reader to take it
    closer = threading.Thread(target=endless.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close did not stop a thread waiting for room"
