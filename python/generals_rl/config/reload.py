"""Hot reload of the farm configuration file (watchfiles).

When the file changes, it is read and validated again (with the same
environment variables and command-line overrides); the hot keys
(``HOT_KEYS``) that changed are applied at once as one new immutable
``FarmConfig``, the cold keys that changed are reported as needing a restart
and keep their running values, and an invalid file is rejected with its error
while the running configuration stays. Subscribers get every outcome as a
``ConfigChange``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._background import BackgroundLoop
from .farm import ConfigError, FarmConfig, apply_hot, load_config

log = logging.getLogger("generals_rl.config")


@dataclass(frozen=True)
class ConfigChange:
    """The outcome of one reload. ``config`` is the configuration now in force
    (``previous`` when nothing applied)."""

    config: FarmConfig
    previous: FarmConfig
    applied: list[str] = field(default_factory=list)  # hot keys now in force
    needs_restart: list[str] = field(default_factory=list)  # cold keys changed in the file, kept
    error: str | None = None  # why the file was rejected

    def describe(self, source: str = "config") -> list[str]:
        if self.error is not None:
            return [f"{source} rejected, keeping the running configuration:\n{self.error}"]
        lines = []
        if self.applied:
            lines.append(f"{source}: applied {', '.join(self.applied)}")
        for key in self.needs_restart:
            lines.append(
                f"{source}: {key} changed: needs a restart to take effect (keeping the running "
                "value)"
            )
        return lines


class ConfigWatcher(BackgroundLoop):
    """Watches ``path`` and reloads it on change (``start``/``stop``, or call
    ``reload`` yourself). ``subscribe(callback)`` registers a callable taking a
    ``ConfigChange``; callbacks run on the watcher's thread, in order."""

    def __init__(
        self,
        path: str | os.PathLike,
        current: FarmConfig,
        *,
        environ: Mapping[str, str] | None = os.environ,
        overrides: Mapping | None = None,
        debounce_ms: int = 100,
    ) -> None:
        super().__init__("generals-rl-config-watch")
        self.path = Path(path).resolve()
        self._config = current
        self._environ = environ
        self._overrides = overrides
        self._debounce_ms = debounce_ms
        self._callbacks: list[Callable[[ConfigChange], None]] = []
        self._lock = threading.Lock()
        self.last_change: ConfigChange | None = None

    @property
    def config(self) -> FarmConfig:
        return self._config

    def subscribe(self, callback: Callable[[ConfigChange], None]) -> Callable[[], None]:
        """Calls ``callback`` after every reload; returns the unsubscriber."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def reload(self) -> ConfigChange:
        """Reads the file now and applies its hot keys."""
        with self._lock:
            previous = self._config
            try:
                candidate = load_config(self.path, environ=self._environ, overrides=self._overrides)
                config, applied, cold = apply_hot(previous, candidate)
                change = ConfigChange(config, previous, applied, cold)
            except ConfigError as exc:
                change = ConfigChange(previous, previous, error=str(exc))
            self._config = change.config
            self.last_change = change
            for line in change.describe(str(self.path)):
                (log.warning if change.error or change.needs_restart else log.info)("%s", line)
            for callback in list(self._callbacks):
                try:
                    callback(change)
                except Exception:
                    log.exception("config reload: a subscriber failed")
            return change

    def start(self) -> ConfigWatcher:
        import watchfiles  # the `farm` extra

        self._watchfiles = watchfiles
        return super().start()

    def _run(self) -> None:
        # The directory, not the file: editors and deployments replace the file by renaming.
        name = self.path.name
        for _ in self._watchfiles.watch(
            self.path.parent,
            watch_filter=lambda _change, changed: Path(changed).name == name,
            debounce=self._debounce_ms,
            step=20,
            stop_event=self._stop,
            recursive=False,
            rust_timeout=200,
            yield_on_timeout=False,
        ):
            if self._stop.is_set():
                return
            if self.path.exists():
                self.reload()
