"""A loop on a daemon thread that ``stop`` ends."""

from __future__ import annotations

import threading


class BackgroundLoop:
    """Runs ``self._run()`` on a daemon thread named ``name`` from ``start``;
    ``_run`` returns once ``self._stop`` is set, which ``stop`` does and waits for."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
