"""The storage error and how a failure is described to an operator."""

from __future__ import annotations


class StorageError(RuntimeError):
    """A destination that cannot be written or read, named with the cause."""


def failure_reason(exc: BaseException) -> str:
    """A short description of why a destination failed: the OS's words for an
    OSError underneath (``no space left on device``), else the message."""
    cause = exc
    while isinstance(cause, StorageError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[0].lower() + cause.strerror[1:]
    return str(exc) or type(exc).__name__
