"""A request answered with a gRPC status instead of a result."""

from __future__ import annotations

import contextlib

import grpc


class Abort(Exception):
    """Raised by a handler's checks; the handler aborts the call with ``code``
    and the message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def aborting(context):
    """Turns an ``Abort`` raised inside into the call's status."""
    try:
        yield
    except Abort as abort:
        context.abort(abort.code, str(abort))
