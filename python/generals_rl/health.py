"""Honest health of a self-play farm: per component (buffer, stream, storage,
collection), pushed to the gRPC health service and read by ``/healthz`` and
``/readyz``.

Storage is failing once its writes or commits have failed more times in a row
than the writer's retry budget (``RetryPolicy.attempts``), or its sink stopped
on an error; it is healthy again after the next success. The farm as a whole
(the gRPC service names "" and ``generals_rl.ExperienceService``) is
NOT_SERVING while any component is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._background import BackgroundLoop

if TYPE_CHECKING:
    from .service import ExperienceServer

COMPONENTS = ("buffer", "stream", "storage", "collection")
SERVICE_PREFIX = "generals_rl."  # the gRPC health service name of a component: generals_rl.storage


class StorageMonitor:
    """Wraps a storage writer's ``write`` and its shard commits to time them and
    count failures in a row. ``on_write``/``on_commit`` receive the seconds of
    each successful call (metrics subscribe there)."""

    def __init__(self, writer, sink=None) -> None:
        self.writer = writer
        self.sink = sink
        self.failures_in_a_row = {"write": 0, "commit": 0}
        self.failures = {"write": 0, "commit": 0}
        self.last_error: str | None = None
        self.on_write: Callable[[float], None] | None = None
        self.on_commit: Callable[[float], None] | None = None
        writer.write = self._timed(writer.write, "write")
        if hasattr(writer, "_publish"):  # ShardWriter: one call per shard committed
            writer._publish = self._timed(writer._publish, "commit")

    def _timed(self, call, kind: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                self.failures[kind] += 1
                self.failures_in_a_row[kind] += 1
                self.last_error = f"{kind}: {type(exc).__name__}: {exc}"
                raise
            self.failures_in_a_row[kind] = 0
            observe = self.on_write if kind == "write" else self.on_commit
            if observe is not None:
                observe(time.perf_counter() - start)
            return result

        return timed

    @property
    def retry_budget(self) -> int:
        retry = getattr(self.writer, "retry", None)
        return int(getattr(retry, "attempts", 5))

    def problem(self) -> str | None:
        """Why storage is failing, or None when it is healthy."""
        if self.sink is not None and self.sink.error is not None:
            return f"the storage sink stopped: {self.sink.error}"
        worst = max(self.failures_in_a_row.values())
        if worst >= self.retry_budget:
            return (
                f"{worst} storage failures in a row (retry budget {self.retry_budget}); "
                f"last: {self.last_error}"
            )
        return None


@dataclass
class HealthReport:
    components: dict[str, str | None] = field(
        default_factory=dict
    )  # component -> problem (None: healthy)

    @property
    def serving(self) -> bool:
        return all(problem is None for problem in self.components.values())

    def to_dict(self) -> dict:
        return {
            "status": "SERVING" if self.serving else "NOT_SERVING",
            "components": {
                name: {
                    "status": "SERVING" if problem is None else "NOT_SERVING",
                    **({"problem": problem} if problem else {}),
                }
                for name, problem in self.components.items()
            },
        }


class FarmHealth(BackgroundLoop):
    """Checks the components every ``interval`` seconds on a thread and pushes
    the result to a server's gRPC health service (``server.set_health``).
    ``checks`` maps a component to a callable returning its problem or None."""

    def __init__(self, checks: dict[str, Callable[[], str | None]], interval: float = 0.2) -> None:
        super().__init__("generals-rl-health")
        self.checks = checks
        self.interval = interval
        self.server: ExperienceServer | None = None
        self._report = HealthReport({name: None for name in checks})

    def check(self) -> HealthReport:
        components = {}
        for name, check in self.checks.items():
            try:
                components[name] = check()
            except Exception as exc:
                components[name] = f"health check failed: {type(exc).__name__}: {exc}"
        report = HealthReport(components)
        self._report = report
        server = self.server
        if server is not None:
            from .service.server import SERVICE_NAME

            for name, problem in components.items():
                server.set_health(SERVICE_PREFIX + name, problem is None)
            for service in ("", SERVICE_NAME):
                server.set_health(service, report.serving)
        return report

    @property
    def report(self) -> HealthReport:
        return self._report

    def start(self) -> FarmHealth:
        self.check()
        return super().start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
