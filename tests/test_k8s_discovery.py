"""How consumers find the servers of a Kubernetes headless Service: every A/AAAA
record of ``dns:///name:port``, resolved again while streaming, so that pods
that appear are streamed from and pods that vanish are dropped."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from generals_rl.service import ExperienceConsumer, ExperienceServer, discovery
from generals_rl.service.discovery import AddressBook, resolve_dns
from service_support import fill, make_buffer

NAME = "generals-rl-actors.test.svc.cluster.local"


class FakeDNS:
    """Answers for NAME from ``records`` (changed by the test), the real resolver otherwise."""

    def __init__(self, monkeypatch) -> None:
        self.records: list[str] = []
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host != NAME:
                return real(host, port, *args, **kwargs)
            if not self.records:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in ip else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (ip, port, 0, 0) if ":" in ip else (ip, port),
                )
                for ip in self.records
            ]

        monkeypatch.setattr(discovery.socket, "getaddrinfo", getaddrinfo)


def test_resolve_dns_lists_every_record_and_nothing_for_an_unknown_name(monkeypatch):
    dns = FakeDNS(monkeypatch)
    assert resolve_dns(f"dns:///{NAME}:50051") == []
    dns.records = ["10.0.0.2", "fd00::7", "10.0.0.1"]
    assert resolve_dns(f"dns:///{NAME}:50051") == [
        "10.0.0.1:50051",
        "10.0.0.2:50051",
        "[fd00::7]:50051",
    ]


@pytest.mark.parametrize(
    "address, message",
    [
        (f"dns:///{NAME}", "is not host:port"),
        (f"dns:///{NAME}:0", "needs the servers' port"),
        (f"dns:///{NAME}:http", "is not a number"),
        ([], "give at least one server address"),
        (["127.0.0.1:1", "127.0.0.1:1"], "lists a server twice"),
    ],
)
def test_bad_addresses_are_named(address, message):
    with pytest.raises(ValueError, match=message):
        AddressBook(address).resolve()


def test_a_source_listing_a_bad_address_is_named():
    with pytest.raises(ValueError, match="'actor-1:x'"):
        AddressBook(lambda: {"a": "actor-1:x"}).resolve()
    assert AddressBook(lambda: ["127.0.0.1:5"]).resolve() == {"127.0.0.1:5": "127.0.0.1:5"}
    assert not AddressBook("127.0.0.1:5").dynamic and AddressBook(f"dns:///{NAME}:5").dynamic


def collect(consumer, stream, received: dict, until, timeout: float = 30.0) -> None:
    """Reads ``stream`` until ``until()``; a stream that stalls is closed after
    ``timeout`` seconds (ending the iteration), so the test fails instead of hanging."""
    watchdog = threading.Timer(timeout, consumer.close)
    watchdog.start()
    try:
        for batch in stream:
            if len(batch):
                received.setdefault(batch.source, []).append(batch.sequence.copy())
            if until():
                return
    finally:
        watchdog.cancel()
    raise AssertionError(f"the stream stalled or ended before the condition held ({timeout} s)")


def test_a_consumer_follows_the_records_of_a_headless_service(monkeypatch):
    dns = FakeDNS(monkeypatch)
    buffers = [make_buffer(), make_buffer()]
    for buffer in buffers:
        fill(buffer, 600)
    first = ExperienceServer(buffers[0], "127.0.0.1:0").start()
    port = first.port
    try:  # the second pod: another loopback address, the same port, as pods have
        second = ExperienceServer(buffers[1], f"127.0.0.3:{port}").start()
    except (OSError, RuntimeError):
        first.stop(grace=0)
        pytest.skip(f"cannot listen on 127.0.0.3:{port}")
    keys = [f"127.0.0.1:{port}", f"127.0.0.3:{port}"]
    heads = [int(b.head) for b in buffers]
    dns.records = ["127.0.0.1"]
    received: dict = {}
    consumer = ExperienceConsumer(f"dns:///{NAME}:{port}", discovery_interval=0.05)
    try:
        stream = consumer.stream_experiences(batch_size=64, decode=False)
        count = lambda key: sum(map(len, received.get(key, [])))  # noqa: E731
        collect(consumer, stream, received, lambda: count(keys[0]) >= heads[0])
        dns.records = ["127.0.0.1", "127.0.0.3"]  # a pod became ready
        collect(consumer, stream, received, lambda: count(keys[1]) >= heads[1])
        dns.records = ["127.0.0.3"]  # the first pod went away
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and consumer._servers[keys[0]].thread.is_alive():
            time.sleep(0.05)
        assert not consumer._servers[keys[0]].thread.is_alive(), "the vanished pod is still read"
        for key, head in zip(keys, heads, strict=True):
            sequences = np.concatenate(received[key])
            assert np.array_equal(np.sort(sequences), np.arange(head)), key
        assert set(consumer.positions) == set(keys)  # the vanished pod's position is kept
    finally:
        consumer.close()
        first.stop(grace=0)
        second.stop(grace=0)


def test_a_key_whose_server_moves_is_followed_and_its_new_buffer_recorded():
    """A restarted actor: the same key, a new port, a buffer numbering on from
    what storage held (300) while the consumer had read 600 of the old one."""
    from generals_rl.storage import continue_numbering

    old_buffer, new_buffer = make_buffer(), make_buffer()
    fill(old_buffer, 600)
    continue_numbering(new_buffer, 300)
    fill(new_buffer, 900)
    old = ExperienceServer(old_buffer, "127.0.0.1:0").start()
    where = {"actor-0001": old.address}
    consumer = ExperienceConsumer(lambda: dict(where), discovery_interval=0.05)
    received: dict = {}
    new = None
    try:
        stream = consumer.stream_experiences(batch_size=64, decode=False)
        count = lambda: sum(map(len, received.get("actor-0001", [])))  # noqa: E731
        collect(consumer, stream, received, lambda: count() >= old_buffer.head)
        old.stop(grace=0)
        new = ExperienceServer(new_buffer, "127.0.0.1:0").start()
        where["actor-0001"] = new.address
        collect(
            consumer, stream, received, lambda: count() >= old_buffer.head + new_buffer.head - 300
        )
        (switch,) = consumer.switches
        assert switch.key == "actor-0001"
        assert (switch.old_buffer_id, switch.new_buffer_id) == (old.buffer_id, new.buffer_id)
        assert (switch.delivered_next, switch.old_head, switch.new_first) == (
            old_buffer.head, old_buffer.head, 300,
        )  # fmt: skip
        assert switch.undelivered == 0
        sequences = np.concatenate(received["actor-0001"])
        first = int(old_buffer.head)
        assert np.array_equal(sequences[:first], np.arange(first))
        assert np.array_equal(sequences[first:], np.arange(300, new_buffer.head))
    finally:
        consumer.close()
        if new is not None:
            new.stop(grace=0)
