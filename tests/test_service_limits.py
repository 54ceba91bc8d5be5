"""Hostile input to the experience service: decompression bombs refused before
inflating, packed submissions held to the same row rules as per-experience ones,
per-stream memory bounded in bytes, and addresses checked before binding."""

from __future__ import annotations

import contextlib
import socket
import struct
import tracemalloc

import grpc
import numpy as np
import pytest
import zstandard
from generals_rl._proto import experience_pb2 as pb
from generals_rl._proto import experience_pb2_grpc as pb_grpc
from generals_rl.experience import ExperienceBuffer, RawBatch
from generals_rl.experience.batch import RECORD_COLUMNS, STATE_COLUMNS, STATE_TABLES
from generals_rl.service import (
    ExperienceConsumer,
    ExperienceServer,
    PackedBatchError,
    pack_message,
    unpack,
)
from generals_rl.service.packing import MAX_COMPRESSION_RATIO, PayloadTooLargeError, pack
from generals_rl.service.server import parse_address
from generals_rl.service.streaming import EXPERIENCE_READ_BYTES
from service_support import HEIGHT, WIDTH, fill, make_buffer, port_in_use, serving

GIB = 1 << 30


def zstd_zeros(size: int, declare_size: bool = True) -> bytes:
    """A zstd frame of ``size`` zero bytes in RLE blocks: 4 bytes per 128 KiB,
    so a GiB takes 33 KB. ``declare_size``: with the frame content size."""
    frame = [
        b"\x28\xb5\x2f\xfd"
        + (b"\xc0\x38" + struct.pack("<Q", size) if declare_size else b"\x00\x38")
    ]
    while True:
        part = min(128 << 10, size)  # the 128 KiB window's largest block
        size -= part
        frame.append(
            (int(size == 0) | 1 << 1 | part << 3).to_bytes(3, "little") + b"\x00"
        )  # RLE of 0
        if size == 0:
            return b"".join(frame)


def zero_rows(rows: int, states: int = 1) -> RawBatch:
    """Valid rows that pack to all-zero bytes: player 0 at tick 0 passing...
    on a plain neutral board."""
    columns = {
        name: np.zeros(rows, dtype) for name, dtype in {**RECORD_COLUMNS, **STATE_COLUMNS}.items()
    }
    tables = {
        name: np.zeros((states, HEIGHT, WIDTH), dtype) for name, dtype in STATE_TABLES.items()
    }
    tables["state_owner"][:] = -1
    return RawBatch(**columns, **tables)


def bomb(raw: RawBatch, declare_size: bool = True) -> pb.PackedBatch:
    """``raw`` packed, its (all-zero) payload as a zstd bomb."""
    packed = pack_message(raw)
    assert not packed.payload.strip(b"\x00")
    packed.payload = zstd_zeros(packed.uncompressed_size, declare_size)
    packed.compression = pb.COMPRESSION_ZSTD
    return packed


def declare_rows(packed: pb.PackedBatch, rows: int) -> pb.PackedBatch:
    """The header of a zero batch as if it had ``rows`` rows."""
    offset = 0
    for column in packed.columns:
        if len(column.shape) == 1:
            column.size = column.size // max(1, column.shape[0]) * rows
            column.shape[:] = [rows]
        column.offset = offset
        offset += column.size
    packed.count, packed.uncompressed_size = rows, offset
    return packed


@contextlib.contextmanager
def peak_allocation():
    """The peak of Python allocations (bytes objects included) inside the block, in ``[0]``."""
    tracemalloc.start()
    peak = [0]
    try:
        yield peak
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# ---- decompression -----------------------------------------------------------------


def test_a_gib_bomb_is_refused_from_its_header_before_inflating():
    packed = declare_rows(pack_message(zero_rows(1)), (GIB - 1000) // 38)
    packed.payload = zstd_zeros(packed.uncompressed_size)
    packed.compression = pb.COMPRESSION_ZSTD
    assert len(packed.payload) < 40_000 and packed.uncompressed_size < GIB
    with peak_allocation() as peak:
        with pytest.raises(PayloadTooLargeError, match=r"uncompressed_size \d+ is above the limit"):
            unpack(packed)
        with pytest.raises(PayloadTooLargeError, match=f"more than {MAX_COMPRESSION_RATIO} times"):
            unpack(packed, max_bytes=2 * GIB)
    assert peak[0] < 1 << 20


@pytest.mark.parametrize("declare_size", [True, False])
def test_a_frame_holding_more_than_announced_is_cut_at_the_announced_size(declare_size):
    packed = bomb(zero_rows(1000), declare_size)
    honest = packed.uncompressed_size
    packed.payload = zstd_zeros(64 << 20, declare_size)  # the frame holds 64 MiB
    with peak_allocation() as peak, pytest.raises(PackedBatchError) as error:
        unpack(packed)
    assert not isinstance(error.value, PayloadTooLargeError)
    if declare_size:
        assert f"the zstd frame holds {64 << 20} bytes, uncompressed_size says {honest}" in str(
            error.value
        )
    assert peak[0] < 1 << 20


def test_a_payload_compressing_beyond_the_ratio_travels_uncompressed():
    raw = zero_rows(20_000)
    packed, parts = pack(raw, zstandard.ZstdCompressor(level=1))
    assert packed.compression == pb.COMPRESSION_NONE  # the receiver would refuse it compressed
    packed.payload = b"".join(parts)
    assert len(unpack(packed)) == 20_000
    real = pack_message(zero_rows(50), zstandard.ZstdCompressor(level=1))
    assert real.compression == pb.COMPRESSION_ZSTD


def test_the_server_refuses_a_bomb_with_resource_exhausted_naming_the_size():
    buffer = make_buffer()
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        for packed, words in (
            (bomb(zero_rows(65536)), f"more than {MAX_COMPRESSION_RATIO} times"),
            (
                bomb(zero_rows(65536), declare_size=False),
                f"more than {MAX_COMPRESSION_RATIO} times",
            ),
        ):
            with pytest.raises(grpc.RpcError) as error:
                stub.SubmitExperiences(pb.SubmitExperiencesRequest(packed=packed), timeout=30)
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "uncompressed_size" in error.value.details() and words in error.value.details()
    assert buffer.head == 0
    with (
        serving(buffer, max_message_bytes=1 << 20) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.RpcError) as error:
            pb_grpc.ExperienceServiceStub(channel).SubmitExperiences(
                pb.SubmitExperiencesRequest(packed=bomb(zero_rows(40_000))), timeout=30
            )
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"above the limit {1 << 20}" in error.value.details()
    assert buffer.head == 0


def test_the_consumer_refuses_a_batch_inflating_beyond_its_limit():
    from generals_rl.service.consumer import _batch_of

    message = pb.ExperienceBatch(packed=bomb(zero_rows(65536)), next_sequence=65536)
    with pytest.raises(PayloadTooLargeError):
        _batch_of(message, "raw", 256 << 20)
    honest = pb.ExperienceBatch(packed=pack_message(zero_rows(100), zstandard.ZstdCompressor()))
    assert len(_batch_of(honest, "raw", 1 << 20)) == 100
    with pytest.raises(PayloadTooLargeError, match="above the limit 1000"):
        _batch_of(honest, "raw", 1000)


# ---- packed submissions: the per-experience rules --------------------------------


def _refused(stub, packed) -> str:
    with pytest.raises(grpc.RpcError) as error:
        stub.SubmitExperiences(pb.SubmitExperiencesRequest(packed=packed), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return error.value.details()


def test_packed_rows_are_held_to_the_per_experience_rules():
    buffer = make_buffer(capacity=200_000)
    moves = 2 * HEIGHT * WIDTH * 4
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        for column, row, value, words in (
            ("player_id", 1, 16, "packed: player_id of row 1: 16 is not a player 0..15"),
            ("reward", 3, np.nan, "packed: reward of row 3: nan is not a finite number"),
            ("reward", 5, -np.inf, "packed: reward of row 5: -inf is not a finite number"),
            ("tick", 7, -2, "packed: tick of row 7: -2 is negative"),
            ("action", 9, moves, f"packed: legal of row 9: is true but action {moves} is not -1"),
        ):
            raw = zero_rows(10)
            raw.legal[:] = True
            getattr(raw, column)[row] = value
            assert words in _refused(stub, pack_message(raw))
        raw = zero_rows(10)
        raw.reward[[2, 4]] = np.nan
        assert "reward of row 2: nan is not a finite number (and 1 more problems)" in _refused(
            stub, pack_message(raw)
        )
        assert "packed.count: 70000 in one request, at most 65536" in _refused(
            stub, pack_message(zero_rows(70_000))
        )
        assert buffer.head == 0
        off_board = zero_rows(10)
        off_board.action[0] = (
            moves  # not claimed legal: an illegal no-op, as recorded by the engine
        )
        stub.SubmitExperiences(
            pb.SubmitExperiencesRequest(packed=pack_message(off_board)), timeout=30
        )
        assert buffer.head == 10
        stats = stub.GetExperienceStats(pb.GetExperienceStatsRequest(), timeout=30)
        assert np.isfinite(stats.reward_mean)


def test_a_packed_submission_is_limited_to_the_buffer_capacity():
    buffer = make_buffer(capacity=16)
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        details = _refused(pb_grpc.ExperienceServiceStub(channel), pack_message(zero_rows(17)))
    assert "packed.count: 17 in one request, at most 16" in details


# ---- streams -------------------------------------------------------------------------


def test_the_per_experience_stream_reads_by_bytes_not_rows(monkeypatch):
    buffer = make_buffer()
    fill(buffer, 3_000)
    decoded_rows = []
    decode = ExperienceBuffer.decode

    def recording(self, raw):
        decoded_rows.append(len(raw))
        return decode(self, raw)

    monkeypatch.setattr(ExperienceBuffer, "decode", recording)
    row_bytes = HEIGHT * WIDTH * (2 * 9 * 4 + 4)
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        request = pb.StreamExperiencesRequest(batch_size=65536, follow=False)
        count = sum(1 for _ in stub.StreamExperiences(request, timeout=60))
    assert count == buffer.head
    assert max(decoded_rows) * row_bytes <= EXPERIENCE_READ_BYTES
    assert max(decoded_rows) > EXPERIENCE_READ_BYTES // row_bytes // 2  # still large reads


# ---- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1:99999", "the port 99999 of '127.0.0.1:99999' is outside 0..65535"),
        ("127.0.0.1:-1", "is not a number"),
        ("127.0.0.1", "is not host:port"),
        (":50051", "is not host:port"),
        ("::1:50051", "put an IPv6 address in brackets"),
        ("127.0.0.1:\uff15", "is not a number"),  # a fullwidth digit five
    ],
)
def test_bad_addresses_are_refused_by_the_server_api(address, words):
    with pytest.raises(ValueError) as error:
        ExperienceServer(make_buffer(), address)
    assert str(error.value).startswith("address: ") and words in str(error.value)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert parse_address("localhost:65535") == ("localhost", 65535)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_port_in_use_is_reported_as_such_and_nothing_serves(host):
    with port_in_use() as port:
        server = ExperienceServer(make_buffer(), f"{host}:{port}")
        with pytest.raises(
            OSError, match=f"cannot listen on {host}:{port} .*address already in use"
        ):
            server.start()
    assert server.port is None


def test_localhost_serves_on_every_address_it_resolves_to():
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)}
    buffer = make_buffer()
    fill(buffer, 10)
    with ExperienceServer(buffer, "localhost:0") as server:
        for host in resolved:
            target = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
            with ExperienceConsumer(target) as consumer:
                assert consumer.stats().head_sequence == buffer.head


@pytest.mark.parametrize(
    ("tls", "words"),
    [
        (
            (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", b""),
            "the private key is empty",
        ),
        ((b"", b"-----BEGIN PRIVATE KEY-----\n"), "the certificate chain is empty"),
        ((b"-----BEGIN CERTIFICATE-----\n", b"not a key"), "the private key is not PEM"),
    ],
)
def test_unusable_tls_material_is_named(tls, words):
    with pytest.raises(ValueError, match=f"tls: {words}"):
        ExperienceServer(make_buffer(), "127.0.0.1:0", tls=tls)


@pytest.mark.parametrize(
    "arguments,error,words",
    [
        ({"batch_size": "x"}, TypeError, "batch_size: expected a whole number, got 'x'"),
        ({"batch_size": 2.5}, TypeError, "batch_size: expected a whole number, got 2.5"),
        ({"batch_size": 0}, ValueError, r"batch_size: must be in 1\.\.65536, got 0"),
        ({"batch_size": 65_537}, ValueError, r"batch_size: must be in 1\.\.65536, got 65537"),
        ({"max_batch_wait_ms": -1}, ValueError, r"max_batch_wait_ms: must be in 0\.\.5000"),
        ({"max_batch_wait_ms": None}, TypeError, "max_batch_wait_ms: expected a whole number"),
    ],
)
def test_the_consumer_refuses_bad_stream_arguments_naming_them(arguments, error, words):
    with ExperienceConsumer("127.0.0.1:1") as consumer, pytest.raises(error, match=words):
        consumer.stream_experiences(**arguments)
