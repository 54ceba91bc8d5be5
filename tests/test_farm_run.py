"""A farm running from its configuration: its Prometheus metrics (parsed, checked
by promtool, and scraped by a real Prometheus server), hot reload of the
configuration file while it plays, and health that tells the truth about
storage."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest

pytest.importorskip("pydantic")
pytest.importorskip("prometheus_client")
pytest.importorskip("watchfiles")

import yaml
from generals_rl.cli import main
from generals_rl.config import load_config
from generals_rl.defaults import REWARD_BUCKETS
from generals_rl.farm import Farm
from generals_rl.metrics import METRICS
from generals_rl.service.server import SERVICE_NAME
from generals_rl.storage.layout import INDEX_NAME, partition_of
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

SMALL = {"envs": 4, "threads": 1, "board": {"height": 10, "width": 10}, "max_ticks": 400}


def settings(tmp_path, **sections) -> dict:
    """A farm on loopback with free ports, small boards and npz storage under tmp_path."""
    data = {
        "collection": dict(SMALL),
        "streaming": {"address": "127.0.0.1:0", "drain_timeout": 1},
        "storage": {"format": "npz", "directory": str(tmp_path / "store")},
        "metrics": {"address": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def running(farm: Farm):
    """Runs ``farm`` on a thread until the block ends."""
    stop = threading.Event()
    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = farm.run(stop)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: (
                (farm.runtime.server is not None and farm.runtime.health.alive)
                or "error" in outcome
            ),
            what="the farm to start",
        )
        assert "error" not in outcome, outcome.get("error")
        yield outcome
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the farm did not stop"


_LOCAL = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # loopback: never through a proxy


def http_get(url: str) -> tuple[int, bytes]:
    """``(status, body)``; status 0 when nothing answers."""
    try:
        with _LOCAL.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError:
        return 0, b""


def scrape(farm: Farm) -> dict:
    """``{(name, labels as a sorted tuple): value}`` of the farm's /metrics."""
    status, body = http_get(f"http://{farm.metrics_address}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict, name: str) -> float:
    return sum(value for (n, _), value in samples.items() if n == name)


def quiesced(farm: Farm, games: int) -> int:
    """Waits until the farm has played ``games`` games and appends nothing more; returns
    the head."""
    buffer = wait_for(lambda: farm.runtime.buffer, what="the buffer")
    wait_for(
        lambda: (
            farm.runtime.env is not None
            and int(farm.runtime.env.counters()["wins"].sum())
            + int(
                farm.runtime.env.counters()["games_truncated"]
                + farm.runtime.env.counters()["games_no_winner"]
            )
            >= games
        ),
        what=f"{games} games",
    )
    last = -1
    while buffer.head != last:
        last = buffer.head
        time.sleep(0.3)
    wait_for(
        lambda: farm.runtime.sink is None or not farm.runtime.sink.running,
        what="the storage sink to flush",
    )
    return last


@contextlib.contextmanager
def played(tmp_path, games: int):
    """A farm that played ``games`` games, stored them, and serves on: ``(farm, head)``."""
    config = load_config(
        environ={},
        overrides=settings(tmp_path, collection={"games": games}, streaming={"keep_running": True}),
    )
    farm = Farm(config)
    with running(farm):
        yield farm, quiesced(farm, games)


def test_metrics_count_what_the_buffer_holds(tmp_path):
    with played(tmp_path, 12) as (farm, head):
        config = farm.config
        samples = scrape(farm)
        status, body = http_get(f"http://{farm.metrics_address}/metrics")
        assert status == 200
        ready_status, ready = http_get(f"http://{farm.metrics_address}/readyz")
        live_status, _ = http_get(f"http://{farm.metrics_address}/healthz")
        missing_status, _ = http_get(f"http://{farm.metrics_address}/nothing")
    assert head > 1000
    # The experiences counter equals what the buffer appended, player by player.
    assert total(samples, "generals_rl_experiences_collected_total") == head
    assert samples["generals_rl_buffer_appended_total", ()] == head
    per_player = [
        samples["generals_rl_experiences_collected_total", (("player", str(p)),)] for p in (0, 1)
    ]
    assert per_player[0] == per_player[1] == head / 2  # every tick both are alive until the last
    # Both players are alive before every tick they play, in every game at once.
    assert samples["generals_rl_env_steps_total", ()] * SMALL["envs"] * 2 == head
    assert total(samples, "generals_rl_games_finished_total") >= 12
    assert (
        samples["generals_rl_game_wins_total", (("player", "0"),)] >= 10
    )  # the heuristic bot wins
    assert samples["generals_rl_buffer_capacity", ()] == config.collection.buffer_size
    assert samples["generals_rl_buffer_experiences", ()] == head
    assert samples["generals_rl_buffer_utilization_ratio", ()] == pytest.approx(
        head / config.collection.buffer_size
    )
    # The reward histogram: one observation per experience, cumulative buckets -1..1 by 0.1.
    buckets = [samples["generals_rl_reward_bucket", (("le", f"{b:.1f}"),)] for b in REWARD_BUCKETS]
    assert buckets == sorted(buckets) and len(buckets) == 21
    assert (
        samples["generals_rl_reward_bucket", (("le", "+Inf"),)]
        == samples["generals_rl_reward_count", ()]
        == head
    )
    assert buckets[0] >= 10  # every lost game ends at -1 or below
    # Storage: everything durable, latencies observed, nothing failed.
    assert samples["generals_rl_storage_experiences_durable_total", ()] == head
    assert samples["generals_rl_storage_bytes_total", ()] > 0
    assert samples["generals_rl_storage_write_seconds_count", ()] >= 1
    assert samples["generals_rl_storage_commit_seconds_count", ()] >= 1
    assert total(samples, "generals_rl_storage_failures_total") == 0
    assert all(
        samples["generals_rl_health_status", (("component", c),)] == 1
        for c in ("buffer", "stream", "storage", "collection")
    )
    assert ready_status == 200 and json.loads(ready)["status"] == "SERVING"
    assert live_status == 200 and missing_status == 404
    # Exactly the metrics documented in generals_rl.metrics.METRICS, with their types.
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    assert families == {name: kind for name, (kind, _, _) in METRICS.items()}


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian: apt-get install prometheus)"
)
def test_promtool_accepts_the_exposition(tmp_path):
    with played(tmp_path, 4) as (farm, _):
        status, body = http_get(f"http://{farm.metrics_address}/metrics")
    assert status == 200 and b"generals_rl_storage_commit_seconds_bucket" in body
    # Names, types, units and help follow Prometheus' conventions.
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs the Prometheus server binary (Debian: apt-get install prometheus)",
)
def test_a_real_prometheus_scrapes_the_farm(tmp_path):
    with played(tmp_path, 10) as (farm, head):
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "farm",
                            "static_configs": [{"targets": [farm.metrics_address]}],
                        }
                    ],
                }
            )
        )
        prometheus = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            api = f"http://127.0.0.1:{port}/api/v1/query?query="

            def query(expr: str):
                status, body = http_get(api + urllib.parse.quote(expr))
                if status != 200:
                    return None
                result = json.loads(body)["data"]["result"]
                return {
                    tuple(
                        sorted(
                            (k, v) for k, v in r["metric"].items() if k not in ("job", "instance")
                        )
                    ): float(r["value"][1])
                    for r in result
                }

            wait_for(
                lambda: (
                    prometheus.poll() is None
                    and query('up{job="farm"}') == {(("__name__", "up"),): 1.0}
                ),
                timeout=60,
                what="Prometheus to scrape the farm",
            )
            collected = wait_for(
                lambda: query("sum(generals_rl_experiences_collected_total)"),
                timeout=30,
                what="the experiences series",
            )
            assert collected == {(): float(head)}
            by_player = query("generals_rl_experiences_collected_total")
            assert sorted(dict(k)["player"] for k in by_player) == ["0", "1"]
            assert sum(by_player.values()) == head
            assert query("generals_rl_buffer_capacity") == {
                (("__name__", "generals_rl_buffer_capacity"),): 200000.0
            }
            assert (
                query("generals_rl_storage_experiences_durable_total")[
                    (("__name__", "generals_rl_storage_experiences_durable_total"),)
                ]
                == head
            )
            median = query("histogram_quantile(0.5, generals_rl_reward_bucket)")
            assert -1.0 <= next(iter(median.values())) <= 1.0
            assert query("sum(generals_rl_games_finished_total)")[()] >= 10
            health = query("generals_rl_health_status")
            assert len(health) == 4 and set(health.values()) == {1.0}
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(15)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()


def test_hot_reload_changes_rewards_between_ticks_and_keeps_cold_keys(tmp_path):
    path = tmp_path / "farm.yaml"
    data = settings(
        tmp_path,
        collection={"games": 0, "buffer_policy": "overwrite", "buffer_size": 400_000},
        storage={"enabled": False},
        metrics={"address": None},
    )
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, environ={})
    farm = Farm(config, config_path=path, environ={})
    changes = []
    farm.subscribe(changes.append)
    players = 2
    with running(farm):
        buffer = farm.runtime.buffer
        wait_for(lambda: buffer.head > 5000, what="experiences")
        before = buffer.cursor(start="oldest").read_records(5000)
        assert np.count_nonzero(before.reward) > 0  # army advantage pays something every tick

        # Rewards all zero (hot), a different number of games at once (cold), a shorter
        # batch timeout (hot).
        data["rewards"] = dict.fromkeys(
            ("win", "loss", "city_captured", "city_lost", "army_advantage"), 0.0
        )
        data["collection"] = {**data["collection"], "envs": 9}
        data["streaming"] = {**data["streaming"], "batch_timeout": 0.05, "max_connections": 8}
        data["collection"]["bots"] = ["random", "random"]
        data["log_level"] = "warning"
        written = time.monotonic()
        path.write_text(yaml.safe_dump(data))
        change = wait_for(lambda: changes and changes[-1], timeout=10, what="the reload")
        reload_seconds = time.monotonic() - written
        changed_at = buffer.head
        assert change.error is None
        assert (
            "rewards.army_advantage" in change.applied
            and "streaming.batch_timeout" in change.applied
        )
        assert change.needs_restart == ["collection.envs"]
        assert reload_seconds < 3.0, f"the reload took {reload_seconds:.2f} s"
        # The next experiences carry the new rewards: after the step in flight when the change
        # arrived (at most one step of experiences), every reward is 0.
        first_new = changed_at + 2 * SMALL["envs"] * players
        wait_for(lambda: buffer.head > first_new + 4000, what="experiences after the change")
        after = buffer.cursor(start=first_new).read_records(4000)
        assert len(after) == 4000 and not after.reward.any()
        assert farm.config.collection.envs == SMALL["envs"]  # the cold key keeps its running value
        assert farm.runtime.env.num_envs == SMALL["envs"]
        assert farm.runtime.server.batch_wait_ms == pytest.approx(50.0)
        assert farm.runtime.server.max_streams == 8
        assert [type(bot).__name__ for bot in farm.runtime.selfplay.bots] == [
            "RandomBot",
            "RandomBot",
        ]
        assert logging.getLogger("generals_rl").level == logging.WARNING
        assert farm.config.rewards.army_advantage == 0.0

        # An invalid file is refused with its error; the running configuration stays.
        path.write_text(path.read_text().replace("army_advantage: 0.0", "army_advantage: lots"))
        refused = wait_for(
            lambda: len(changes) > 1 and changes[-1], timeout=10, what="the refused reload"
        )
        assert (
            refused.error is not None
            and "rewards.army_advantage" in refused.error
            and "'lots'" in refused.error
        )
        assert farm.config is refused.config and farm.config.rewards.army_advantage == 0.0
        assert farm.runtime.env.engine_reward_config().army_advantage == 0.0


def grpc_health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_goes_not_serving_while_storage_fails(tmp_path):
    store = tmp_path / "store"
    config = load_config(
        environ={},
        overrides=settings(
            tmp_path,
            collection={"games": 0, "buffer_size": 50_000},
            storage={"directory": str(store), "rotation": {"max_experiences": 2000}},
        ),
    )
    farm = Farm(config)
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with running(farm):
        address = farm.runtime.server.address
        wait_for(
            lambda: (
                farm.runtime.storage is not None and farm.runtime.sink.durable_sequence is not None
            ),
            what="a first shard",
        )
        assert grpc_health(address, "") == serving
        assert grpc_health(address, "generals_rl.storage") == serving

        # The destination breaks: no shard can be indexed (each partition's index is a directory
        # now, this hour's and the next, in case the hour turns meanwhile).
        broken = [store / partition_of(time.time() + 3600 * h) / INDEX_NAME for h in (0, 1)]
        for index in broken:
            index.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                index.unlink()
            index.mkdir()
        wait_for(lambda: grpc_health(address, "") == not_serving, timeout=30, what="NOT_SERVING")
        assert grpc_health(address, "generals_rl.storage") == not_serving
        assert grpc_health(address, "generals_rl.buffer") == serving
        assert grpc_health(address, SERVICE_NAME) == not_serving
        status, body = http_get(f"http://{farm.metrics_address}/readyz")
        assert status == 503
        report = json.loads(body)
        assert report["components"]["storage"]["status"] == "NOT_SERVING"
        assert "storage failures in a row" in report["components"]["storage"]["problem"]
        samples = scrape(farm)
        assert total(samples, "generals_rl_storage_failures_total") >= 5
        assert samples["generals_rl_health_status", (("component", "storage"),)] == 0

        # Repaired, it serves again after the next successful commit.
        for index in broken:
            index.rmdir()
        wait_for(lambda: grpc_health(address, "") == serving, timeout=30, what="SERVING again")
        assert http_get(f"http://{farm.metrics_address}/readyz")[0] == 200


def test_selfplay_command_runs_a_farm_from_its_config(tmp_path, capsys):
    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path, metrics={"address": None})))
    code = main(["selfplay", "--config", str(path), "--games", "6", "--num-envs", "3", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["games"] >= 6
    assert result["stored"] == {
        "format": "npz",
        "destination": str(tmp_path / "store"),
        "experiences": result["experiences"],
    }


def test_a_serving_only_farm_counts_submissions_by_outcome(tmp_path):
    from generals_rl._proto import experience_pb2 as pb
    from generals_rl._proto import experience_pb2_grpc as pb_grpc
    from generals_rl.service import pack_message
    from service_support import everything, fill, make_buffer

    config = load_config(
        environ={},
        overrides=settings(tmp_path, collection={"enabled": False}, storage={"enabled": False}),
    )
    farm = Farm(config)
    source = make_buffer()
    fill(source, 600)
    raw = everything(source)
    with running(farm) as outcome:
        assert farm.runtime.env is None  # nothing plays
        with grpc.insecure_channel(farm.runtime.server.address) as channel:
            stub = pb_grpc.ExperienceServiceStub(channel)
            stub.SubmitExperiences(pb.SubmitExperiencesRequest(packed=pack_message(raw)))
            bad = pb.Experience(experience_id="x", game_id="not hex", player_id=0)
            with pytest.raises(grpc.RpcError) as refused:
                stub.SubmitExperiences(pb.SubmitExperiencesRequest(experiences=[bad] * 3))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            too_many = pb.SubmitExperiencesRequest(experiences=[bad] * 70_000)
            with pytest.raises(grpc.RpcError):
                stub.SubmitExperiences(too_many)
        samples = scrape(farm)
    assert outcome.get("summary") is None and "error" not in outcome
    assert (
        samples["generals_rl_submitted_experiences_accepted_total", ()]
        == len(raw)
        == farm.runtime.buffer.head
    )
    rejected = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "generals_rl_submitted_experiences_rejected_total"
    }
    assert sum(v for r, v in rejected.items() if r != "invalid_argument") == 3
    assert rejected["invalid_argument"] == 70_000  # a request refused whole
    assert samples["generals_rl_buffer_appended_total", ()] == len(raw)


def test_a_farm_stores_on_s3_as_configured(tmp_path):
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    import boto3
    from generals_rl.storage import open_dataset
    from storage_support import moto_s3

    with moto_s3() as url:
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="farm")
        config = load_config(
            environ={},
            overrides=settings(
                tmp_path,
                collection={"games": 4},
                metrics={"address": None},
                storage={
                    "type": "s3",
                    "s3": {
                        "bucket": "farm",
                        "prefix": "runs/a",
                        "endpoint": url,
                        "region": "us-east-1",
                    },
                },
            ),
        )
        farm = Farm(config)
        summary = farm.run()
        stored = open_dataset("s3://farm/runs/a", endpoint_url=url).read()
    assert farm.stored == {
        "format": "npz",
        "destination": "s3://farm/runs/a",
        "experiences": summary.experiences,
    }
    assert len(stored) == summary.experiences > 0


def test_a_reload_replaces_the_storage_rotation_of_the_running_writer(tmp_path):
    from types import SimpleNamespace

    from generals_rl.config.farm import apply_hot
    from generals_rl.storage import NpzWriter

    config = load_config(environ={}, overrides=settings(tmp_path))
    farm = Farm(config)
    writer = NpzWriter(str(tmp_path / "store"))
    farm.runtime.sink = SimpleNamespace(writer=writer)
    chunk = writer.rotation.chunk_size
    edited = load_config(
        environ={},
        overrides=settings(tmp_path, storage={"rotation": {"max_age": 5, "max_experiences": 777}}),
    )
    new, applied, cold = apply_hot(config, edited)
    farm._apply(new, applied)
    assert (
        writer.rotation.max_age,
        writer.rotation.max_experiences,
        writer.rotation.chunk_size,
    ) == (5, 777, chunk)
    assert farm.config is new and cold == []
    writer.close()
