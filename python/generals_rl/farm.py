"""A self-play farm run from its configuration (``generals_rl.config.farm``):
``run_selfplay`` with storage, Prometheus metrics, health and hot reload.

    from generals_rl.config import load_config
    from generals_rl.farm import Farm

    farm = Farm(load_config("farm.yaml"), config_path="farm.yaml")
    farm.subscribe(lambda change: print(change.applied, change.needs_restart))
    summary = farm.run()

Its command line is ``cli_config.py``. This module imports pydantic, PyYAML,
prometheus-client and watchfiles (the ``farm`` extra) only when a farm runs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from .stop_signals import stop_on_signals

if TYPE_CHECKING:
    from .config.farm import FarmConfig
    from .config.reload import ConfigChange, ConfigWatcher
    from .experience import ExperienceBuffer
    from .health import FarmHealth, StorageMonitor
    from .metrics import FarmMetrics
    from .selfplay import SelfPlay
    from .service import ExperienceServer
    from .service.submit import SubmissionOutcome
    from .storage import BufferSink
    from .vec_env import VecEnv

log = logging.getLogger("generals_rl.farm")


class FarmRuntime:
    """What a running farm is made of, as the metrics and health read it."""

    def __init__(self) -> None:
        self.env: VecEnv | None = None
        self.buffer: ExperienceBuffer | None = None
        self.server: ExperienceServer | None = None
        self.selfplay: SelfPlay | None = None
        self.sink: BufferSink | None = None
        self.storage: StorageMonitor | None = None
        self.health: FarmHealth | None = None
        self.steps = 0
        self.submissions: SubmissionCounts | None = None  # once serving
        self.playing = False
        self.play_error: str | None = None


class Farm:
    """Runs self-play as ``config`` says. With ``config_path`` it watches that
    file and applies its hot keys while running (``overrides`` and the
    ``GENERALS_RL__*`` variables of ``environ`` are laid over it again at each
    reload). ``token`` is a bearer token given on the command line (the file
    names only where to read one)."""

    def __init__(
        self,
        config: FarmConfig,
        *,
        config_path: str | os.PathLike | None = None,
        overrides: Mapping | None = None,
        environ: Mapping[str, str] | None = os.environ,
        token: str | None = None,
        log_to: TextIO = sys.stderr,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.runtime = FarmRuntime()
        self.metrics_address: str | None = None
        self.stored: dict | None = None
        self._overrides = overrides
        self._environ = environ
        self._token = token
        self._log = log_to
        self._callbacks: list[Callable[[ConfigChange], None]] = []
        self._pending: FarmConfig | None = None  # whose rewards and bots the next step takes
        self._first_sequence = 0
        self.watcher: ConfigWatcher | None = None  # while running with config_path
        self.metrics: FarmMetrics | None = None  # while running with metrics.address

    @property
    def first_sequence(self) -> int:
        """The buffer's first sequence number: after what storage already held."""
        return self._first_sequence

    def subscribe(self, callback: Callable[[ConfigChange], None]) -> None:
        """Calls ``callback(change)`` after every reload of the configuration file."""
        self._callbacks.append(callback)

    def _say(self, text: str) -> None:
        print(f"generals-rl farm: {text}", file=self._log, flush=True)

    # ---- running ------------------------------------------------------------

    def run(self, stop: threading.Event | None = None):
        """Plays (or, with ``collection.enabled: false``, only serves and stores)
        until the games are done or ``stop``; returns the SelfPlaySummary (None
        when only serving)."""
        from .config.reload import ConfigWatcher
        from .health import FarmHealth
        from .selfplay import run_selfplay

        config = self.config
        stop = stop or threading.Event()
        logger = logging.getLogger("generals_rl")
        level_before = logger.level
        _set_log_level(config.log_level)
        tls = _read_tls(config)
        token = self._token or config.streaming.token(
            os.environ if self._environ is None else self._environ
        )
        rt = self.runtime
        rt.health = FarmHealth(
            {
                "buffer": lambda: None if rt.buffer is not None else "no buffer yet",
                "stream": self._stream_problem,
                "storage": lambda: rt.storage.problem() if rt.storage is not None else None,
                "collection": lambda: rt.play_error,
            }
        )
        metrics_server = None
        try:
            metrics_server = self._start_metrics(config)
            if self.config_path is not None:
                self.watcher = ConfigWatcher(
                    self.config_path, config, environ=self._environ, overrides=self._overrides
                )
                self.watcher.subscribe(self._on_change)
                self.watcher.start()
            if not config.collection.enabled:
                return self._serve_only(config, stop, token, tls)
            summary = run_selfplay(
                config.selfplay_config(),
                config.streaming.address,
                sinks=[self._storage_sink] if config.storage.enabled else [],
                keep_running=config.streaming.keep_running,
                wait_for_consumers=config.collection.wait_for_consumers,
                drain_timeout=config.streaming.drain_timeout,
                token=token,
                tls=tls,
                max_streams=config.streaming.max_connections,
                log=self._log,
                stop=stop,
                on_start=self._on_start,
            )
            return summary
        except BaseException as exc:
            rt.play_error = f"self-play stopped: {type(exc).__name__}: {exc}"
            raise
        finally:
            rt.playing = False
            if self.watcher is not None:
                self.watcher.stop()
            rt.health.stop()
            if metrics_server is not None:
                metrics_server.stop()
            self.stored = self._stored()
            logger.setLevel(level_before)  # the watcher has stopped: no reload sets it again

    def _start_metrics(self, config):
        if not config.metrics.address:
            return None
        from .metrics import FarmMetrics, MetricsServer

        self.metrics = FarmMetrics(self.runtime)
        server = MetricsServer(self.metrics, self.runtime.health, config.metrics.address).start()
        self.metrics_address = server.address
        self._say(f"metrics on http://{server.address}/metrics (health: /healthz, /readyz)")
        return server

    def _stream_problem(self) -> str | None:
        server = self.runtime.server
        if server is None:
            return "the experience server is not running yet"
        return None

    def _storage_sink(self, buffer):
        from .health import StorageMonitor
        from .storage import BufferSink, continue_numbering, open_writer

        storage = self.config.storage
        # A missing pyarrow or boto3 raises ImportError: run_farm_cli says which extra to install.
        writer = open_writer(storage.format, storage.destination, **storage.writer_options())
        self._first_sequence = continue_numbering(buffer, writer)
        sink = BufferSink(buffer, writer)
        self.runtime.sink = sink
        self.runtime.storage = StorageMonitor(writer, sink)
        if self.metrics is not None:
            self.metrics.watch_storage(self.runtime.storage)
        return sink

    def _stored(self) -> dict | None:
        sink = self.runtime.sink
        if sink is None:
            return None
        durable = sink.durable_sequence
        stored = (
            0
            if durable is None or durable < self._first_sequence
            else durable - self._first_sequence + 1
        )
        storage = self.config.storage
        return {"format": storage.format, "destination": storage.destination, "experiences": stored}

    def _on_start(self, selfplay, server) -> None:
        rt = self.runtime
        rt.selfplay, rt.env, rt.buffer, rt.server = selfplay, selfplay.env, selfplay.buffer, server
        rt.submissions = SubmissionCounts(server)
        server.batch_wait_ms = self.config.streaming.batch_timeout * 1000.0
        selfplay.env.set_reward_config(self.config.reward_config())
        count_steps(selfplay.env, rt, self._take_pending)
        play = selfplay.run

        def watched_play(stop, *args, **kwargs):
            try:
                return play(stop, *args, **kwargs)
            except BaseException as exc:
                rt.play_error = f"self-play stopped: {type(exc).__name__}: {exc}"
                raise
            finally:
                rt.playing = False
                if self.config.collection.games in (None, 0) and not stop.is_set():
                    rt.play_error = (
                        rt.play_error or "self-play stopped although it plays until stopped"
                    )

        selfplay.run = watched_play
        rt.playing = True
        assert rt.health is not None  # made by run
        rt.health.server = server
        rt.health.start()

    def _take_pending(self) -> None:
        pending = self._pending
        if pending is not None:  # rewards and bots change together, before a tick
            self._pending = None
            self._apply_to_play(pending)

    def _serve_only(self, config, stop: threading.Event, token, tls):
        from .service import ExperienceServer

        rt = self.runtime
        buffer = config.selfplay_config().make_buffer()
        sink = self._storage_sink(buffer) if config.storage.enabled else None
        server = ExperienceServer(
            buffer,
            config.streaming.address,
            token=token,
            tls=tls,
            max_streams=config.streaming.max_connections,
        ).start()
        rt.buffer, rt.server = buffer, server
        rt.submissions = SubmissionCounts(server)
        server.batch_wait_ms = config.streaming.batch_timeout * 1000.0
        assert rt.health is not None  # made by run
        rt.health.server = server
        rt.health.start()
        self._say(f"collection disabled: serving submissions on {server.address}")
        restore = stop_on_signals(stop)
        try:
            if sink is not None:
                sink.start()
            stop.wait()
        finally:
            try:
                if sink is not None:
                    sink.stop()
            finally:
                server.stop(grace=min(5.0, max(config.streaming.drain_timeout, 0.5)))
                restore()

    # ---- hot reload -----------------------------------------------------------

    def _on_change(self, change: ConfigChange) -> None:
        for line in change.describe(str(self.config_path)):
            self._say(line)
        if change.applied:
            self._apply(change.config, change.applied)
        for callback in list(self._callbacks):
            callback(change)

    def _apply(self, config: FarmConfig, keys: list[str]) -> None:
        """Makes ``config`` the running one: at once for the log level, the
        streaming limits and the storage rotation; rewards and bots before the
        next tick."""
        rt = self.runtime
        self.config = config
        _set_log_level(config.log_level)
        if rt.server is not None:
            rt.server.batch_wait_ms = config.streaming.batch_timeout * 1000.0
            try:
                rt.server.max_streams = config.streaming.max_connections
            except ValueError as exc:
                self._say(f"streaming.max_connections: {exc}")
        if rt.sink is not None and hasattr(rt.sink.writer, "rotation"):
            rt.sink.writer.rotation = config.storage.rotation.to_rotation(
                rt.sink.writer.rotation.chunk_size
            )
        if any(k.startswith(("rewards", "collection.bots")) for k in keys):
            self._pending = config

    def _apply_to_play(self, config: FarmConfig) -> None:
        from .selfplay import CHECKPOINT_POLICY, make_policy

        selfplay = self.runtime.selfplay
        assert selfplay is not None  # applied from a step of it
        selfplay.env.set_reward_config(config.reward_config())
        seed = selfplay.config.seed
        for player, name in enumerate(config.collection.bots):
            current = selfplay.policy_names[player]
            if name == current:
                continue
            if name.startswith(CHECKPOINT_POLICY) or current.startswith(CHECKPOINT_POLICY):
                # The env's observations are encoded for the networks it started with.
                self._say(f"collection.bots: player {player} plays a network; restart to change it")
                continue
            selfplay.bots[player] = make_policy(name, seed + player)
            selfplay.policy_names[player] = name


def count_steps(env, runtime: FarmRuntime, before_step: Callable[[], None]) -> None:
    """Makes ``env.step`` call ``before_step()`` first (between ticks: where
    changes apply) and count the steps that went through in ``runtime.steps``."""
    step = env.step

    def counted_step(actions, **options):
        before_step()
        result = step(actions, **options)
        runtime.steps += 1
        return result

    env.step = counted_step


class SubmissionCounts:
    """Experiences submitted to a server over ``SubmitExperiences``: ``accepted``,
    and ``rejected`` by reason: the field an experience failed on (the first
    few of a request are itemized, the rest count as ``unitemized``) or, for a
    request refused whole, its status code (``invalid_argument``,
    ``resource_exhausted``)."""

    def __init__(self, server) -> None:
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self._lock = threading.Lock()
        server.submissions.observe(self._record)

    def _record(self, outcome: SubmissionOutcome) -> None:
        with self._lock:
            self.accepted += outcome.accepted
            if outcome.refused is not None:
                reason = outcome.refused.name.lower()
                self.rejected[reason] = self.rejected.get(reason, 0) + outcome.rejected
                return
            for field in outcome.rejected_fields:
                self.rejected[field] = self.rejected.get(field, 0) + 1
            unitemized = outcome.rejected - len(outcome.rejected_fields)
            if unitemized > 0:
                self.rejected["unitemized"] = self.rejected.get("unitemized", 0) + unitemized


def _set_log_level(level: str) -> None:
    logging.getLogger("generals_rl").setLevel(level.upper())


def _read_tls(config) -> tuple[bytes, bytes] | None:
    tls = config.streaming.tls
    if tls.cert is None:
        return None
    with open(tls.cert, "rb") as cert, open(tls.key, "rb") as key:
        return cert.read(), key.read()
