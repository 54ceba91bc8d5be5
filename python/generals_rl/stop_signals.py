"""The signals that stop a run: SIGINT (Ctrl-C) and SIGTERM (a pod's or a service's stop).

Handlers are installed explicitly, so a run also stops where SIGINT was ignored from the
start (a background job of a shell) and where SIGTERM would end it without cleanup.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(handler: Callable) -> Callable[[], None]:
    """Calls ``handler(signum, frame)`` on SIGINT and SIGTERM (from the main thread only;
    elsewhere nothing changes); returns what restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT and SIGTERM set ``stop``; returns the restorer (:func:`on_stop_signals`)."""
    return on_stop_signals(lambda *_: stop.set())
