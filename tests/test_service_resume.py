"""Resuming: after a cancelled stream, a consumer process killed mid-stream, a
broken connection, and on a server whose buffer was replaced."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from generals_rl.service import ConsumerError, ExperienceConsumer, StreamPosition
from service_support import Producer, assert_contiguous, fill, make_buffer, serving, wait_until


def _sequences(batches) -> np.ndarray:
    return np.concatenate([b.sequence for b in batches]) if batches else np.zeros(0, np.uint64)


def test_a_cancelled_stream_resumes_from_its_positions_without_loss_or_duplicate():
    buffer = make_buffer()
    fill(buffer, 8_000)
    with serving(buffer) as server:
        first = ExperienceConsumer(server.address, queue_batches=8)
        got = []
        for batch in first.stream_experiences(
            follow=False, batch_size=100, start="oldest", decode=False
        ):
            got.append(batch)
            if len(got) == 25:
                break  # cancels the stream; batches received but not delivered are not counted
        positions = first.positions
        first.close()
        assert positions[server.address] == StreamPosition(server.buffer_id, 2_500)
        # A new consumer (say, after a restart) continues from the saved positions.
        with ExperienceConsumer(server.address) as second:
            rest = list(
                second.stream_experiences(
                    follow=False, batch_size=300, start=positions, decode=False
                )
            )
        assert_contiguous(np.concatenate([_sequences(got), _sequences(rest)]), 0, buffer.head)

        # The same consumer continues after what it delivered when no start is given.
        with ExperienceConsumer(server.address) as consumer:
            part = []
            for batch in consumer.stream_experiences(
                follow=False, batch_size=64, start="oldest", decode=False
            ):
                part.append(batch)
                if len(part) == 10:
                    break
            part += list(consumer.stream_experiences(follow=False, batch_size=512, decode=False))
        assert_contiguous(_sequences(part), 0, buffer.head)


_CONSUMER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from generals_rl.service import ExperienceConsumer
    address, out_path = sys.argv[1], sys.argv[2]
    with ExperienceConsumer(address) as consumer, open(out_path, "a") as out:
        batches = consumer.stream_experiences(
            follow=True, batch_size=128, start="oldest", decode=True
        )
        for batch in batches:
            # One line per batch: its sequences and where to resume after it.
            line = {"sequences": batch.sequence.tolist(), "positions": consumer.positions}
            out.write(json.dumps(line) + "\\n")
            out.flush()
    """
)


def test_a_consumer_killed_mid_stream_resumes_without_loss_or_duplicate(tmp_path):
    buffer = make_buffer(capacity=200_000)
    fill(buffer, 500)
    producer = Producer(buffer, target=60_000, rate=40_000)
    out_path = tmp_path / "delivered.jsonl"
    with serving(buffer) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", _CONSUMER_SCRIPT, server.address, str(out_path)]
        )
        try:
            producer.start()
            wait_until(
                lambda: out_path.exists() and out_path.stat().st_size > 200_000,
                timeout=30,
                what="the consumer process to deliver",
            )
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
        lines = []
        for text in out_path.read_text().splitlines():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                break  # the last line may be torn by the kill
        delivered = np.array([s for line in lines for s in line["sequences"]], dtype=np.int64)
        assert 0 < len(delivered) < 60_000
        positions = {a: StreamPosition(*p) for a, p in lines[-1]["positions"].items()}
        producer.join(timeout=30)
        with ExperienceConsumer(server.address) as consumer:
            rest = list(
                consumer.stream_experiences(
                    follow=False, batch_size=1024, start=positions, decode=False
                )
            )
        assert_contiguous(np.concatenate([delivered, _sequences(rest)]), 0, buffer.head)


class _Proxy:
    """A loopback TCP forwarder whose connections can be cut, to break streams
    the way a network failure does."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


def test_a_broken_connection_reconnects_and_resumes_after_the_last_delivered_batch():
    buffer = make_buffer(capacity=200_000)
    fill(buffer, 500)
    producer = Producer(buffer, target=40_000, rate=30_000)
    with serving(buffer) as server:
        proxy = _Proxy(server.port)
        try:
            with ExperienceConsumer(f"127.0.0.1:{proxy.port}", reconnect_timeout=20) as consumer:
                got, cuts = [], 0
                producer.start()
                for batch in consumer.stream_experiences(
                    follow=True, batch_size=256, start="oldest", decode=False
                ):
                    got.append(batch.sequence)
                    if cuts < 3 and sum(map(len, got)) > (cuts + 1) * 8_000:
                        proxy.cut()
                        cuts += 1
                    if got[-1][-1] >= 39_999:
                        break
                assert consumer.reconnects >= 3
        finally:
            proxy.close()
            producer.stop()
    assert_contiguous(np.concatenate(got)[:40_000], 0, 40_000)


def test_positions_from_a_replaced_buffer_start_at_the_new_buffers_oldest():
    buffer = make_buffer()
    fill(buffer, 1_000)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        stale = {server.address: StreamPosition("another-buffer", 900)}
        got = list(consumer.stream_experiences(follow=False, start=stale, decode=False))
        assert_contiguous(_sequences(got), 0, buffer.head)


def test_refusals_end_the_stream_with_a_clear_error():
    buffer = make_buffer()
    fill(buffer, 100)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        with pytest.raises(ConsumerError, match="beyond the buffer's head") as error:
            list(consumer.stream_experiences(follow=False, start=buffer.head + 10))
        assert error.value.code.name == "OUT_OF_RANGE"
        with pytest.raises(ConsumerError, match="is not 16 hex digits") as error:
            list(consumer.stream_experiences(follow=False, game_ids=["nope"]))
        assert error.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(ValueError, match="batch_size"):
        ExperienceConsumer("127.0.0.1:1").stream_experiences(batch_size=0)
    with pytest.raises(ValueError, match="start"):
        ExperienceConsumer("127.0.0.1:1").stream_experiences(start="latest")


def test_an_unreachable_server_is_reported_after_the_reconnect_timeout():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with (
        ExperienceConsumer(f"127.0.0.1:{port}", reconnect_timeout=1.0) as consumer,
        pytest.raises(ConsumerError, match="unreachable") as error,
    ):
        list(consumer.stream_experiences(follow=True))
    assert error.value.code.name == "UNAVAILABLE"
    assert 1.0 <= time.monotonic() - started < 10


def test_closing_the_consumer_from_another_thread_ends_its_stream():
    buffer = make_buffer()
    fill(buffer, 100)
    with serving(buffer) as server:
        consumer = ExperienceConsumer(server.address)
        stream = consumer.stream_experiences(follow=True, decode=False)
        first = next(stream)
        threading.Timer(0.3, consumer.close).start()
        started = time.monotonic()
        rest = list(
            stream
        )  # what is resident arrives, then nothing more; close() ends the iteration
        assert 0.2 < time.monotonic() - started < 5
        assert_contiguous(
            np.concatenate([first.sequence, *(b.sequence for b in rest)]), 0, buffer.head
        )
        wait_until(lambda: server.active_streams == 0, what="the stream to close")
