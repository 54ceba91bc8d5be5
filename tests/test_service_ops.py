"""Operating the server: token, TLS, health checking, reflection, stream limits,
message size limits, request validation and the stats it reports."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from generals_rl._proto import experience_pb2 as pb
from generals_rl._proto import experience_pb2_grpc as pb_grpc
from generals_rl.experience import format_game_id
from generals_rl.service import ConsumerError, ExperienceConsumer
from generals_rl.service.server import SERVICE_NAME
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service_support import Producer, everything, fill, make_buffer, serving, wait_until


def test_the_token_is_enforced_on_every_call_but_health_checks():
    buffer = make_buffer()
    fill(buffer, 200)
    with serving(buffer, token="s3cret") as server:
        for token in (None, "wrong"):
            with ExperienceConsumer(server.address, token=token) as consumer:
                with pytest.raises(ConsumerError, match="bearer token") as error:
                    list(consumer.stream_experiences(follow=False))
                assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as error:
                    consumer.stats()
                assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ExperienceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as error:
                stub.SubmitExperiences(pb.SubmitExperiencesRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with ExperienceConsumer(server.address, token="s3cret") as consumer:
            got = list(consumer.stream_experiences(follow=False, decode=False))
            assert sum(map(len, got)) == buffer.head
            assert consumer.stats().total_experiences == buffer.head


def test_health_answers_serving_for_the_server_and_the_service_then_not_serving_when_stopping():
    buffer = make_buffer()
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        threading.Thread(target=server.stop, kwargs={"grace": 1.0}, daemon=True).start()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_and_describes_the_service():
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with serving(make_buffer()) as server, grpc.insecure_channel(server.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert SERVICE_NAME in services and "grpc.health.v1.Health" in services
        from google.protobuf.descriptor_pool import DescriptorPool

        service = DescriptorPool(database).FindServiceByName(SERVICE_NAME)
        assert {m.name for m in service.methods} == {
            "StreamExperiences",
            "StreamExperienceBatches",
            "SubmitExperiences",
            "GetExperienceStats",
        }


def test_streams_beyond_the_maximum_are_refused_with_resource_exhausted():
    buffer = make_buffer()
    fill(buffer, 100)
    with serving(buffer, max_streams=2) as server:
        consumers = [ExperienceConsumer(server.address) for _ in range(3)]
        try:
            open_streams = [c.stream_experiences(follow=True, decode=False) for c in consumers[:2]]
            for stream in open_streams:
                next(stream)
            wait_until(lambda: server.active_streams == 2)
            with pytest.raises(ConsumerError, match="allows 2 concurrent streams") as error:
                list(consumers[2].stream_experiences(follow=True))
            assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            open_streams[0].close()  # a slot frees up
            wait_until(lambda: server.active_streams == 1)
            assert (
                len(
                    next(consumers[2].stream_experiences(follow=True, start="oldest", decode=False))
                )
                > 0
            )
        finally:
            for consumer in consumers:
                consumer.close()


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is needed to make a test certificate"
)
def test_tls_with_a_token(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    buffer = make_buffer()
    fill(buffer, 200)
    with serving(buffer, tls=(cert.read_bytes(), key.read_bytes()), token="t") as server:
        with ExperienceConsumer(
            server.address, token="t", root_certificates=cert.read_bytes()
        ) as consumer:
            assert (
                sum(map(len, consumer.stream_experiences(follow=False, decode=False)))
                == buffer.head
            )
        # A plaintext client cannot talk to a TLS server.
        with (
            ExperienceConsumer(server.address, token="t", reconnect_timeout=0.5) as plain,
            pytest.raises(ConsumerError),
        ):
            list(plain.stream_experiences(follow=False))


def test_batches_are_capped_to_the_message_size_limit():
    buffer = make_buffer()
    fill(buffer, 5_000)
    with (
        serving(buffer, max_message_bytes=1 << 20) as server,
        ExperienceConsumer(server.address) as consumer,
    ):
        batches = list(consumer.stream_experiences(follow=False, batch_size=65536, decode=False))
        assert len(batches) > 1  # 65536 rows would not fit in 1 MiB
        assert sum(map(len, batches)) == buffer.head


@pytest.mark.parametrize(
    ("request_fields", "code", "words"),
    [
        ({"game_ids": ["xyz"]}, grpc.StatusCode.INVALID_ARGUMENT, "game_ids[0]"),
        ({"player_ids": [3, 16]}, grpc.StatusCode.INVALID_ARGUMENT, "player_ids: [16]"),
        ({"min_tick": -1}, grpc.StatusCode.INVALID_ARGUMENT, "min_tick"),
        ({"batch_size": 70_000}, grpc.StatusCode.INVALID_ARGUMENT, "batch_size"),
        ({"max_batch_wait_ms": 60_000}, grpc.StatusCode.INVALID_ARGUMENT, "max_batch_wait_ms"),
        ({"start_sequence": 10**9}, grpc.StatusCode.OUT_OF_RANGE, "beyond the buffer's head"),
        ({"start_position": 7}, grpc.StatusCode.INVALID_ARGUMENT, "start_position"),
    ],
)
def test_malformed_stream_requests_get_a_clear_status(request_fields, code, words):
    buffer = make_buffer()
    fill(buffer, 100)
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        for method in (stub.StreamExperienceBatches, stub.StreamExperiences):
            with pytest.raises(grpc.RpcError) as error:
                list(method(pb.StreamExperiencesRequest(**request_fields), timeout=10))
            assert error.value.code() == code
            assert words in error.value.details()
        assert server.active_streams == 0


def test_stats_report_every_field_from_what_the_buffer_holds():
    buffer = make_buffer(capacity=3_000, policy="overwrite")
    before = time.time()
    fill(buffer, 2_000, max_ticks=100)
    with serving(buffer) as server:
        # Paced so the stats collector (reading every 10 ms) sees everything before it is
        # overwritten.
        producer = Producer(buffer, target=5_000, rate=20_000, max_ticks=100)
        producer.start()
        producer.join(timeout=30)  # overwrites: per-game counts keep only resident games
        after = time.time()
        truth = everything(buffer)
        with ExperienceConsumer(server.address) as consumer:
            wait_until(
                lambda: consumer.stats().aggregated_through == buffer.head,
                what="the stats to catch up",
            )
            stats = consumer.stats(max_games=100_000)
            few = consumer.stats(max_games=2)
    assert stats.total_experiences == buffer.head
    assert stats.resident_experiences == len(truth) == 3_000
    assert (
        stats.capacity == 3_000
        and stats.policy == "overwrite"
        and stats.buffer_id == server.buffer_id
    )
    assert stats.overwritten_experiences == buffer.head - 3_000
    assert (stats.oldest_sequence, stats.head_sequence) == (buffer.oldest, buffer.head)
    assert stats.stats_missed == 0  # the collector read everything before it was overwritten
    # Aggregates over every experience seen: compare per player with the resident ones plus
    # the rest.
    assert sum(stats.experiences_per_player.values()) == buffer.head
    assert set(stats.experiences_per_player) == {0, 1}
    games, counts = np.unique(truth.game_id, return_counts=True)
    resident = {format_game_id(g): c for g, c in zip(games, counts, strict=False)}
    # Games still resident keep their counts over all their experiences (the oldest may have
    # lost some).
    assert set(stats.experiences_per_game) == set(resident) and stats.resident_games == len(
        resident
    )
    for game, count in resident.items():
        assert stats.experiences_per_game[game] >= count
    assert (
        sum(stats.experiences_per_game.values()) - sum(counts) < 300
    )  # only the oldest games' overwritten part
    assert stats.total_games >= len(resident) + 8
    assert len(few.experiences_per_game) == 2 and few.resident_games == len(resident)
    assert set(few.experiences_per_game) <= set(resident)
    assert stats.reward_min <= stats.reward_mean <= stats.reward_max
    assert stats.reward_min < stats.reward_max
    assert stats.done_experiences >= 8
    oldest, newest = (
        stats.oldest_collected_at.ToNanoseconds() / 1e9,
        stats.newest_collected_at.ToNanoseconds() / 1e9,
    )
    assert before - 1 <= oldest <= newest <= after + 1


def test_stats_reward_aggregates_match_the_experiences_exactly():
    buffer = make_buffer()
    fill(buffer, 4_000, max_ticks=100)
    with serving(buffer) as server, ExperienceConsumer(server.address) as consumer:
        wait_until(
            lambda: consumer.stats().aggregated_through == buffer.head, what="the stats to catch up"
        )
        stats = consumer.stats()
    truth = everything(buffer)
    assert stats.total_games == len(np.unique(truth.game_id))
    assert stats.reward_mean == pytest.approx(
        truth.reward.astype(np.float64).mean(), rel=1e-9, abs=1e-12
    )
    assert stats.reward_min == pytest.approx(float(truth.reward.min()))
    assert stats.reward_max == pytest.approx(float(truth.reward.max()))
    assert stats.done_experiences == int((truth.terminated | truth.truncated).sum()) > 0
    assert dict(stats.experiences_per_player) == {
        p: int((truth.player_id == p).sum()) for p in (0, 1)
    }
    assert len(stats.experiences_per_game) == len(np.unique(truth.game_id))
