"""Prometheus metrics of a self-play farm, served over HTTP with the health
endpoints: ``/metrics`` (text exposition), ``/healthz`` (the process is up and
checking itself) and ``/readyz`` (every component healthy; 503 and the reasons
otherwise).

Nothing is counted per experience in Python: the env's counters are kept in C++
inside ``step`` and read when Prometheus scrapes, the buffer, stream and
storage figures are read from their stats at scrape time, and the storage
latencies are observed once per write call and per shard commit.

Needs ``pip install 'generals-rl[farm]'`` (prometheus-client).

Longer than 400 lines: one collector of every metric family, and the HTTP
endpoints that serve it.
"""

from __future__ import annotations

import bisect
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.samples import Sample
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"farm metrics need {error.name}: pip install 'generals-rl[farm]'", name=error.name
    ) from error

from .defaults import REWARD_BUCKETS

PREFIX = "generals_rl_"
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# Every metric the farm exports: name (as Prometheus shows it, without the
# _total/_bucket suffixes of the series) -> (type, labels, meaning).
METRICS = {
    "generals_rl_experiences_collected": (
        "counter",
        ("player",),
        "experiences recorded by self-play, by player index",
    ),
    "generals_rl_env_steps": ("counter", (), "VecEnv steps (ticks of every game played at once)"),
    "generals_rl_games_finished": (
        "counter",
        ("outcome",),
        "games finished: outcome won, truncated (tick limit) or no_winner",
    ),
    "generals_rl_game_wins": ("counter", ("player",), "games won, by player index"),
    "generals_rl_illegal_moves": (
        "counter",
        ("player",),
        "moves that did nothing because they were illegal, by player index",
    ),
    "generals_rl_reward": ("histogram", (), "per-experience rewards, buckets from -1 to 1 by 0.1"),
    "generals_rl_buffer_experiences": ("gauge", (), "experiences resident in the buffer"),
    "generals_rl_buffer_capacity": ("gauge", (), "experiences the buffer holds at most"),
    "generals_rl_buffer_utilization_ratio": (
        "gauge",
        (),
        "resident experiences / capacity (0 to 1)",
    ),
    "generals_rl_buffer_appended": (
        "counter",
        (),
        "experiences appended to the buffer (self-play and submissions)",
    ),
    "generals_rl_experiences_overwritten": (
        "counter",
        (),
        "experiences overwritten before every cursor read them (overwrite policy)",
    ),
    "generals_rl_experiences_missed": (
        "counter",
        ("reader",),
        "experiences a reader lost to overwriting",
    ),
    "generals_rl_streams": ("gauge", (), "open gRPC experience streams"),
    "generals_rl_stream_limit": (
        "gauge",
        (),
        "the most streams the server accepts (streaming.max_connections)",
    ),
    "generals_rl_consumer_lag": (
        "gauge",
        ("stream",),
        "experiences appended that an open stream has not read, by stream number",
    ),
    "generals_rl_storage_lag": (
        "gauge",
        (),
        "experiences appended that the storage sink has not read",
    ),
    "generals_rl_storage_write_seconds": (
        "histogram",
        (),
        "seconds per storage write call (encoding, and committing a full shard)",
    ),
    "generals_rl_storage_commit_seconds": ("histogram", (), "seconds per shard commit"),
    "generals_rl_storage_bytes": ("counter", (), "bytes committed to storage"),
    "generals_rl_storage_experiences_durable": ("counter", (), "experiences durably stored"),
    "generals_rl_storage_failures": (
        "counter",
        ("kind",),
        "failed storage writes (kind write) and shard commits (kind commit)",
    ),
    "generals_rl_submitted_experiences_accepted": (
        "counter",
        (),
        "experiences accepted from SubmitExperiences",
    ),
    "generals_rl_submitted_experiences_rejected": (
        "counter",
        ("reason",),
        "experiences rejected from SubmitExperiences, by reason: the field that failed, "
        "or the status of a request refused whole",
    ),
    "generals_rl_health_status": (
        "gauge",
        ("component",),
        "1 while a component is healthy, 0 while it is not",
    ),
}


class FarmCollector:
    """Reads the farm's figures when Prometheus scrapes. ``runtime`` has the
    attributes ``env``, ``buffer``, ``server``, ``sink``, ``storage`` (a
    ``StorageMonitor``), ``steps`` and ``health`` (any may be None)."""

    def __init__(self, runtime, histograms=()) -> None:
        self.runtime = runtime
        self.histograms = histograms

    def describe(self):
        return []

    def collect(self):
        rt = self.runtime
        yield from self._env(rt.env, rt.steps)
        yield from self._buffer(rt.buffer)
        yield from self._streams(rt.server)
        yield from self._storage(rt.sink, rt.storage)
        yield from self._submissions(rt.submissions)
        for histogram in self.histograms:
            yield histogram.family()
        if rt.health is not None:
            status = GaugeMetricFamily(
                PREFIX + "health_status", METRICS[PREFIX + "health_status"][2], labels=["component"]
            )
            for name, problem in rt.health.report.components.items():
                status.add_metric([name], 1.0 if problem is None else 0.0)
            yield status

    def _env(self, env, steps: int):
        yield CounterMetricFamily(
            PREFIX + "env_steps", METRICS[PREFIX + "env_steps"][2], value=steps
        )
        if env is None:
            return
        c = env.counters()
        for name, key in (
            ("experiences_collected", "experiences"),
            ("game_wins", "wins"),
            ("illegal_moves", "illegal_moves"),
        ):
            family = CounterMetricFamily(
                PREFIX + name, METRICS[PREFIX + name][2], labels=["player"]
            )
            for player, count in enumerate(c[key].tolist()):
                family.add_metric([str(player)], count)
            yield family
        games = CounterMetricFamily(
            PREFIX + "games_finished", METRICS[PREFIX + "games_finished"][2], labels=["outcome"]
        )
        games.add_metric(["won"], int(c["wins"].sum()))
        games.add_metric(["truncated"], c["games_truncated"])
        games.add_metric(["no_winner"], c["games_no_winner"])
        yield games
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*(f"{b:.1f}" for b in REWARD_BUCKETS), "+Inf"),
            c["reward_buckets"].tolist(),
            strict=False,
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        reward = HistogramMetricFamily(
            PREFIX + "reward", METRICS[PREFIX + "reward"][2], buckets=buckets, sum_value=None
        )
        # prometheus-client leaves out _count and _sum when buckets are negative (as OpenMetrics
        # asks); the Prometheus text format has them, and the mean reward needs them.
        reward.samples += [
            Sample(PREFIX + "reward_count", {}, cumulative),
            Sample(PREFIX + "reward_sum", {}, c["reward_sum"]),
        ]
        yield reward

    def _buffer(self, buffer):
        if buffer is None:
            return
        s = buffer.stats()
        for name, value in (
            ("buffer_experiences", s["resident"]),
            ("buffer_capacity", s["capacity"]),
            ("buffer_utilization_ratio", s["resident"] / s["capacity"] if s["capacity"] else 0.0),
        ):
            yield GaugeMetricFamily(PREFIX + name, METRICS[PREFIX + name][2], value=value)
        yield CounterMetricFamily(
            PREFIX + "buffer_appended",
            METRICS[PREFIX + "buffer_appended"][2],
            value=s["total_appended"],
        )
        yield CounterMetricFamily(
            PREFIX + "experiences_overwritten",
            METRICS[PREFIX + "experiences_overwritten"][2],
            value=s["total_overwritten"],
        )

    def _streams(self, server):
        if server is None:
            return
        lags = server.stream_lags()
        yield GaugeMetricFamily(PREFIX + "streams", METRICS[PREFIX + "streams"][2], value=len(lags))
        yield GaugeMetricFamily(
            PREFIX + "stream_limit", METRICS[PREFIX + "stream_limit"][2], value=server.max_streams
        )
        lag = GaugeMetricFamily(
            PREFIX + "consumer_lag", METRICS[PREFIX + "consumer_lag"][2], labels=["stream"]
        )
        for stream, value in sorted(lags.items()):
            lag.add_metric([str(stream)], value)
        yield lag

    def _storage(self, sink, monitor):
        missed = CounterMetricFamily(
            PREFIX + "experiences_missed",
            METRICS[PREFIX + "experiences_missed"][2],
            labels=["reader"],
        )
        if sink is not None:
            s = sink.stats()
            missed.add_metric(["storage"], s["missed"])
            yield GaugeMetricFamily(
                PREFIX + "storage_lag", METRICS[PREFIX + "storage_lag"][2], value=s["lag"] or 0
            )
            writer = s["writer"]
            for name, key in (
                ("storage_bytes", "bytes_committed"),
                ("storage_experiences_durable", "experiences_durable"),
            ):
                yield CounterMetricFamily(
                    PREFIX + name, METRICS[PREFIX + name][2], value=writer.get(key, 0)
                )
        yield missed
        if monitor is not None:
            failures = CounterMetricFamily(
                PREFIX + "storage_failures",
                METRICS[PREFIX + "storage_failures"][2],
                labels=["kind"],
            )
            for kind, count in monitor.failures.items():
                failures.add_metric([kind], count)
            yield failures

    def _submissions(self, counts):
        accepted = PREFIX + "submitted_experiences_accepted"
        rejected = PREFIX + "submitted_experiences_rejected"
        yield CounterMetricFamily(
            accepted, METRICS[accepted][2], value=counts.accepted if counts else 0
        )
        family = CounterMetricFamily(rejected, METRICS[rejected][2], labels=["reason"])
        for reason, count in sorted((counts.rejected if counts else {}).items()):
            family.add_metric([reason], count)
        yield family


class LatencyHistogram:
    """Seconds observed into ``LATENCY_BUCKETS`` (thread-safe), exported by the collector."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._sum += seconds

    def family(self) -> HistogramMetricFamily:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        bounds = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")
        for bound, count in zip(bounds, counts, strict=False):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(
            self.name, METRICS[self.name][2], buckets=buckets, sum_value=total
        )


class FarmMetrics:
    """The farm's registry: the scrape-time collector, with the storage latency
    histograms (fed by a ``StorageMonitor``)."""

    def __init__(self, runtime) -> None:
        self.storage_write = LatencyHistogram(PREFIX + "storage_write_seconds")
        self.storage_commit = LatencyHistogram(PREFIX + "storage_commit_seconds")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FarmCollector(runtime, (self.storage_write, self.storage_commit)))

    def watch_storage(self, monitor) -> None:
        monitor.on_write = self.storage_write.observe
        monitor.on_commit = self.storage_commit.observe

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``address`` ("host:port";
    port 0 picks one, see ``address`` after ``start``)."""

    def __init__(self, metrics: FarmMetrics, health, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.metrics = metrics
        self.health = health  # a FarmHealth, or None before the farm runs
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    alive = outer.health is not None and outer.health.alive
                    self._send(
                        200 if alive else 503, b"ok\n" if alive else b"not running\n", "text/plain"
                    )
                elif path == "/readyz":
                    report = outer.health.report if outer.health is not None else None
                    ready = report is not None and report.serving and outer.health.alive
                    body = (
                        report.to_dict()
                        if report is not None
                        else {"status": "NOT_SERVING", "components": {}}
                    )
                    self._send(
                        200 if ready else 503, json.dumps(body).encode() + b"\n", "application/json"
                    )
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not news
                pass

        try:
            self._httpd = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
        except OSError as exc:
            raise OSError(f"metrics.address: cannot listen on {address}: {exc.strerror}") from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="generals-rl-metrics", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
