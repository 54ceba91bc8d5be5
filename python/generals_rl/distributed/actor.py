"""The self-play actor: one farm (``generals_rl.farm.Farm``: VecEnv, ExperienceBuffer,
ExperienceServer, storage sink, metrics and health) in a Ray actor process."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from ..service.server import parse_address
from ._ray import ray

READY_TIMEOUT = 120.0  # seconds an actor may take to serve its first experiences
_ANY_HOST = ("0.0.0.0", "::", "")


def actor_key(index: int) -> str:
    """The name of actor ``index``: its stream key, its storage directory."""
    return f"actor-{index:04d}"


def actor_seed(seed: int, index: int, incarnation: int) -> int:
    """Distinct games for every actor and for every restart of it."""
    return int(np.random.SeedSequence([seed, index, incarnation]).generate_state(1, np.uint32)[0])


def actor_config(config, index: int, incarnation: int):
    """Actor ``index``'s farm configuration: its own games, its own storage
    destination (below the farm's), a free port on its node for the stream and
    the metrics."""
    from ..config.farm import parse_config, set_path

    data = config.model_dump(mode="json")
    key = actor_key(index)
    host, _ = parse_address(config.streaming.address)
    set_path(data, ["streaming", "address"], f"{_bracketed(host)}:0")
    if config.metrics.address:
        metrics_host, _ = parse_address(config.metrics.address)
        set_path(data, ["metrics", "address"], f"{_bracketed(metrics_host)}:0")
    set_path(data, ["collection", "seed"], actor_seed(config.collection.seed, index, incarnation))
    storage = config.storage
    if storage.type == "s3":
        set_path(
            data, ["storage", "s3", "prefix"], "/".join(p for p in (storage.s3.prefix, key) if p)
        )
    else:
        set_path(data, ["storage", "directory"], os.path.join(storage.directory, key))
    return parse_config(data)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@ray.remote(max_concurrency=4)  # status answers while stop() waits for the drain
class SelfPlayActor:
    """Plays and serves as the farm configuration ``config`` (a ``FarmConfig``
    as JSON data) says, as actor ``index`` of a farm. Ready once its server
    listens; its address is the node's IP when it listens on every interface."""

    def __init__(self, config: dict, index: int, incarnation: int = 0) -> None:
        from ..config.farm import parse_config
        from ..farm import Farm

        self.index, self.incarnation = index, incarnation
        self.config = actor_config(parse_config(config), index, incarnation)
        self._farm = Farm(self.config, environ=None, log_to=sys.stderr)
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._play, name="selfplay-actor", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while self._farm.runtime.server is None:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"{actor_key(index)}: self-play did not start: {self._error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{actor_key(index)}: not serving after {READY_TIMEOUT:.0f} s")
            time.sleep(0.01)
        host, port = parse_address(self._farm.runtime.server.address)
        if host in _ANY_HOST:
            host = ray.util.get_node_ip_address()
        self.address = f"{_bracketed(host)}:{port}"

    def _play(self) -> None:
        try:
            self._farm.run(self._stop)
        except BaseException as exc:
            self._error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict:
        """What the farm watches and ``generals-rl farm status`` shows."""
        farm, rt = self._farm, self._farm.runtime
        stats = rt.buffer.stats()
        durable = rt.sink.durable_sequence if rt.sink is not None else None
        return {
            "key": actor_key(self.index),
            "index": self.index,
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "address": self.address,
            "metrics_address": farm.metrics_address,
            "head": int(rt.buffer.head),
            "first_sequence": farm.first_sequence,
            # Everything below this is durable (the storage resumes here after a restart).
            "durable_next": farm.first_sequence if durable is None else int(durable) + 1,
            "resident": int(stats["resident"]),
            "capacity": int(stats["capacity"]),
            "steps": rt.steps,
            "streams": rt.server.active_streams,
            "playing": rt.playing,
            "error": rt.play_error or self._error,
            "serving": rt.health.report.serving if rt.health is not None else False,
        }

    def stop(self, timeout: float = 60.0) -> dict | None:
        """Stops playing, drains the consumers and the storage; what was stored."""
        self._stop.set()
        self._thread.join(timeout)
        return self._farm.stored
