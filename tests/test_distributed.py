"""The farm on a real two-node Ray cluster on loopback: four self-play actors
spread over both nodes, a consumer following the farm's directory that receives
every experience once, an actor killed by its pid and restarted with its durable
experiences intact and its loss counted, the farm grown and shrunk, the DQN
learner trained from it as a Ray actor, and ``generals-rl farm up/status`` and
``generals-rl train dqn --from farm:NAME`` as processes."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'generals-rl[ray]'")
pytest.importorskip("pydantic")
pytest.importorskip("pyarrow")

from generals_rl.config.farm import parse_config
from generals_rl.distributed import Farm, LearnerActor, actor_key, farm_addresses, farm_state
from generals_rl.distributed.actor import actor_config
from generals_rl.service import ExperienceConsumer
from generals_rl.storage import open_dataset
from service_support import assert_contiguous, wait_until

pytestmark = pytest.mark.ray

SIDE = 8
NAMESPACE = "generals-rl-test"
RAY = str(Path(sys.executable).with_name("ray"))
# Ray swaps 127.0.0.1 (and localhost) for the machine's network address; another
# loopback address keeps the whole cluster on loopback.
NODE_IP = "127.0.0.2"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_node(args: list[str], temp_dir: str) -> subprocess.Popen:
    """``ray start --block`` (it stops the node's processes when it is signalled)."""
    agent, agent_grpc, metrics, runtime_env, workers = free_ports(5)
    command = [
        RAY, "start", "--block", f"--node-ip-address={NODE_IP}", "--num-cpus=2",
        "--object-store-memory=80000000", f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
        f"--min-worker-port={workers}", f"--max-worker-port={workers + 40}",
        "--disable-usage-stats", *args,
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = Path(temp_dir) / "ray-start.log"
    with log.open("wb") as out:
        node = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:  # on a busy machine a node takes from seconds to minutes to come up
        wait_until(
            lambda: node.poll() is not None or "Ray runtime started" in log.read_text("latin-1"),
            240,
            f"ray start ({log})",
        )
        assert node.poll() is None, log.read_text("latin-1")
    except BaseException:
        stop_nodes([node])
        raise
    return node


def stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """Interrupts the process group of each ray start we launched (ray start --block
    stops its node at once on SIGINT; SIGTERM leaves it hanging), then waits for them."""
    for node in nodes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGINT)
    for node in nodes:
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)


def connect(address: str, timeout: float = 120.0) -> None:
    """``ray.init`` once the head at ``address`` answers (it takes a while on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
                     log_to_driver=False, _node_ip_address=NODE_IP)  # fmt: skip
            return
        except (ConnectionError, RuntimeError):
            ray.shutdown()
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node on loopback, each with its own temp dir and 2 CPUs."""
    (port,) = free_ports(1)
    temp_dirs = [
        tempfile.mkdtemp(prefix="ray", dir="/tmp") for _ in range(2)
    ]  # short: socket paths
    nodes = [start_node(["--head", f"--port={port}", "--include-dashboard=false"], temp_dirs[0])]
    try:
        address = f"{NODE_IP}:{port}"
        connect(address)  # the head is up: the second node can join it
        nodes.append(start_node([f"--address={address}"], temp_dirs[1]))
        wait_until(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 120, "two live nodes")
        yield address
    finally:
        ray.shutdown()
        stop_nodes(nodes)
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def farm_settings(tmp_path, **collection) -> dict:
    return {
        "collection": {
            "games": 0,
            "envs": 4,
            "threads": 1,
            "board": {"height": SIDE, "width": SIDE},
            "max_ticks": 150,
            "buffer_size": 50_000,
            **collection,
        },
        "streaming": {"address": "127.0.0.1:0", "drain_timeout": 2},
        "storage": {
            "format": "parquet",
            "directory": str(tmp_path / "store"),
            "rotation": {"max_experiences": 2000},
        },
    }


class Received:
    """What a consumer delivered: sequence numbers and actions per (actor, buffer)."""

    def __init__(self) -> None:
        self.sequences = collections.defaultdict(list)
        self.actions = collections.defaultdict(list)

    def add(self, batch) -> None:
        key = (batch.source, batch.buffer_id)
        self.sequences[key].append(batch.sequence.copy())
        self.actions[key].append(batch.action.copy())

    def of(self, key):
        return np.concatenate(self.sequences[key]), np.concatenate(self.actions[key])

    def count(self, actor: str) -> int:
        return sum(sum(map(len, v)) for (a, _), v in self.sequences.items() if a == actor)

    def buffers(self, actor: str) -> list[str]:
        return [b for a, b in self.sequences if a == actor]


def consume(stream, received: Received, until, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    for batch in stream:
        if len(batch):
            received.add(batch)
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_actor_config_gives_each_actor_its_games_port_and_storage(tmp_path):
    config = parse_config(farm_settings(tmp_path))
    first, again, second = (actor_config(config, i, n) for i, n in ((1, 0), (1, 1), (2, 0)))
    assert first.storage.directory == str(tmp_path / "store" / "actor-0001")
    assert second.storage.directory == str(tmp_path / "store" / "actor-0002")
    assert first.streaming.address == "127.0.0.1:0"
    assert len({first.collection.seed, again.collection.seed, second.collection.seed}) == 3
    assert first.collection.envs == config.collection.envs


def test_a_farm_of_four_survives_a_killed_actor(cluster, tmp_path):
    # Play starts once the consumer streams: it receives each actor's experiences from 0.
    config = parse_config(farm_settings(tmp_path, wait_for_consumers=1))
    farm = Farm(config, 4, name="farm-a", namespace=NAMESPACE, watch_interval=0.3)
    farm.start()
    try:
        nodes = {a["node"] for a in farm.status()["actors"].values()}
        assert len(nodes) == 2, "the actors are spread over both nodes"
        keys = [actor_key(i) for i in range(4)]
        assert sorted(farm_addresses("farm-a", NAMESPACE)()) == keys
        received = Received()
        consumer = ExperienceConsumer(farm_addresses("farm-a", NAMESPACE), discovery_interval=0.3)
        stream = consumer.stream_experiences(batch_size=512, decode=False)
        consume(
            stream, received, lambda: all(received.count(k) >= 3000 for k in keys), 120,
            "3000 experiences from every actor",
        )  # fmt: skip

        victim = keys[1]
        before = farm.status()["actors"][victim]
        os.kill(before["pid"], signal.SIGKILL)  # the actor's process, on this machine
        consume(
            stream, received, lambda: len(received.buffers(victim)) == 2 and farm.restarts, 120,
            "the restarted actor's experiences",
        )  # fmt: skip
        consume(stream, received, lambda: received.count(victim) >= 6000, 120, "more experiences")
        consumer.close()
        restart = farm.restarts[0]
        after = farm.status()["actors"][victim]
        assert (restart.key, restart.dead_pid, restart.incarnation) == (victim, before["pid"], 1)
        assert after["pid"] != before["pid"]
        assert restart.durable_next == after["first_sequence"]
        assert restart.not_durable_at_least == max(0, restart.head_last_seen - restart.durable_next)
        (switch,) = consumer.switches
        assert switch.key == victim and switch.new_first == restart.durable_next

        # Every other stream went on: one buffer each, every experience once, from 0.
        for key in keys:
            if key != victim:
                (buffer_id,) = received.buffers(key)
                sequences = received.of((key, buffer_id))[0]
                assert_contiguous(sequences, 0, len(sequences))
        old_sequences, old_actions = received.of((victim, switch.old_buffer_id))
        new_sequences, _ = received.of((victim, switch.new_buffer_id))
        assert_contiguous(old_sequences, 0, len(old_sequences))
        first = restart.durable_next
        assert_contiguous(new_sequences, first, first + len(new_sequences))
        assert len(old_sequences) == switch.delivered_next
    finally:
        stored = farm.stop()
    assert set(stored) == set(keys)

    # Storage holds the victim's experiences without a gap across the restart, and
    # what the dead actor had made durable is what the consumer received from it.
    rows = [b for b in open_dataset(tmp_path / "store" / victim)]
    sequences = np.concatenate([b.sequence for b in rows])
    actions = np.concatenate([b.action for b in rows])
    assert_contiguous(np.sort(sequences), 0, len(sequences))
    assert sequences.max() + 1 == stored[victim]["experiences"] + restart.durable_next
    durable_old = sequences < restart.durable_next
    seen = old_sequences < restart.durable_next
    order = np.argsort(old_sequences[seen])
    assert np.array_equal(
        actions[durable_old][np.argsort(sequences[durable_old])], old_actions[seen][order]
    )


def test_the_learner_trains_from_a_farm_that_grows_and_shrinks(cluster, tmp_path):
    config = parse_config(farm_settings(tmp_path))
    with Farm(config, 2, name="farm-b", namespace=NAMESPACE, watch_interval=0.3) as farm:
        with pytest.raises(RuntimeError, match="a farm named 'farm-b' is already running"):
            Farm(config, 1, name="farm-b", namespace=NAMESPACE).start()
        learner = LearnerActor.options(num_cpus=1).remote(
            {
                "height": SIDE, "width": SIDE, "capacity": 20_000, "batch_size": 32,
                "steps": 30, "learning_starts": 500, "publish_every": 10, "channels": 4,
                "blocks": 1,
            },
            str(tmp_path / "run"), "farm-b", NAMESPACE, {"discovery_interval": 0.3},
        )  # fmt: skip
        training = learner.train.remote(log_every=10, wait_timeout=300)
        farm.scale(3)
        assert sorted(farm.addresses()) == [actor_key(i) for i in range(3)]
        wait_until(lambda: farm.status()["actors"][actor_key(2)]["streams"] >= 1, 300,
                 "the learner to stream from the new actor")  # fmt: skip
        row = ray.get(training, timeout=600)
        farm.scale(1)
        assert sorted(farm_addresses("farm-b", NAMESPACE)()) == [actor_key(0)]
        progress = ray.get(learner.progress.remote(), timeout=30)
    assert row["step"] == 30 and progress["published_version"] >= 3
    assert progress["consumed"] >= 500
    assert (tmp_path / "run" / "weights" / "latest.pt").exists()


def test_farm_up_status_and_train_dqn_from_the_command_line(cluster, tmp_path):
    import yaml

    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(farm_settings(tmp_path)))
    command = [sys.executable, "-m", "generals_rl.cli", "farm"]
    where = ["--address", cluster, "--node-ip-address", NODE_IP, "--namespace", NAMESPACE,
             "--name", "farm-c"]  # fmt: skip
    up = subprocess.Popen(
        [*command, "up", "--config", str(path), "--actors", "2", "--num-cpus", "0.5", *where,
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        last: list[dict] = []

        def both_listed() -> bool:
            assert up.poll() is None, up.communicate()[1]
            done = subprocess.run(
                [*command, "status", "--json", *where], capture_output=True, text=True, timeout=60
            )
            if done.returncode == 0:
                last[:] = [json.loads(done.stdout)]
            return bool(last) and len(last[0]["actors"]) == 2

        wait_until(both_listed, 120, "farm status to list both actors")
        state = last[0]
        assert sorted(state["actors"]) == [actor_key(0), actor_key(1)]
        learned = subprocess.run(
            [sys.executable, "-m", "generals_rl.cli", "train", "dqn", "--from", "farm:farm-c",
             "--ray-address", cluster, "--node-ip-address", NODE_IP, "--namespace", NAMESPACE,
             "--size", f"{SIDE}x{SIDE}", "--steps", "5", "--publish-every", "5",
             "--learning-starts", "200", "--batch-size", "16", "--capacity", "5000",
             "--channels", "4", "--blocks", "1", "--run-dir", str(tmp_path / "dqn")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert learned.returncode == 0, learned.stderr
        trained = json.loads(learned.stdout.splitlines()[-1])
        assert trained["step"] == 5 and trained["published_version"] == 1
        assert (tmp_path / "dqn" / "weights" / "latest.pt").exists()
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 0, err
    final = json.loads(out)
    assert final["restarts"] == [] and set(final["stored"]) == {actor_key(0), actor_key(1)}
    missing = subprocess.run(
        [*command, "status", *where[:-1], "nothing"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"generals-rl farm status: no farm named 'nothing' in the Ray namespace {NAMESPACE!r}"
    )


def test_farm_state_names_a_missing_farm(cluster):
    with pytest.raises(LookupError, match="no farm named 'absent'"):
        farm_state("absent", NAMESPACE)


@pytest.mark.parametrize(
    "args, message",
    [
        (["up", "--actors", "0"], "generals-rl farm up: --actors: must be at least 1, got 0"),
        (
            ["status", "--address", "head"],
            "generals-rl farm status: --address: expected auto or HOST:PORT: "
            "address: 'head' is not host:port",
        ),
        (["up", "--num-cpus", "-1"], "generals-rl farm up: --num-cpus: must be >= 0, got -1.0"),
        (
            ["up", "--memory-mib", "0"],
            "generals-rl farm up: --memory-mib: must be at least 1, got 0",
        ),
    ],
)
def test_farm_commands_name_bad_options(args, message, capsys):
    from generals_rl.cli import main

    assert main(["farm", *args]) == 2
    assert capsys.readouterr().err.strip() == message
