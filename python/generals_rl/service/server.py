"""The gRPC experience service over an ``ExperienceBuffer``: this module is its
lifecycle (binding, TLS, health, reflection, starting and stopping); the calls
are served by ``streaming.py`` (the two streams, encoded by ``messages.py``),
``submit.py`` and ``stats.py``, and authenticated by ``auth.py``."""

from __future__ import annotations

import errno
import socket
import time
import uuid
from concurrent import futures
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .._proto import experience_pb2 as pb
from ..defaults import MAX_STREAMS, STREAM_ADDRESS
from ..experience import ExperienceBuffer
from .auth import TokenInterceptor, check_tls, server_credentials
from .messages import MessageEncoder
from .stats import CollectionClock, StatsCollector, stats_response
from .streaming import Streams
from .submit import Submissions

if TYPE_CHECKING:
    from typing_extensions import Self

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExperienceService"].full_name
DEFAULT_ADDRESS = STREAM_ADDRESS
# Worker threads beyond one per stream: unary calls, health checks and reflection.
EXTRA_WORKERS = 16


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``"host:port"`` (``"[v6 address]:port"``); ValueError
    naming what is wrong."""
    host, colon, port_text = address.rpartition(":")
    if not colon or not host:
        raise ValueError(f"address: {address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"address: {address!r}: put an IPv6 address in brackets, [{host}]:{port_text}"
        )
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"address: the port {port_text!r} of {address!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"address: the port {port} of {address!r} is outside 0..65535")
    return host, port


class ExperienceServer:
    """Serves ``buffer`` over gRPC on ``address`` ("host:port"; port 0 picks a
    free one, see ``port`` after ``start``).

    Parameters
    ----------
    token:
        When set, every call but health checks must carry the metadata
        ``authorization: Bearer <token>``; others get UNAUTHENTICATED.
    tls:
        ``(certificate_chain, private_key)`` PEM bytes to serve over TLS.
    max_streams:
        Concurrent streams; one more is refused with RESOURCE_EXHAUSTED.
    max_message_bytes:
        Largest message sent or received; stream batches are capped to fit.
    buffer_id:
        Identifies the buffer the sequence numbers belong to (default: random).
    """

    def __init__(
        self,
        buffer: ExperienceBuffer,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        max_streams: int = MAX_STREAMS,
        max_message_bytes: int = 64 << 20,
        buffer_id: str | None = None,
    ) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams: must be at least 1, got {max_streams}")
        if max_message_bytes < 1 << 20:
            raise ValueError(f"max_message_bytes: must be at least 1 MiB, got {max_message_bytes}")
        self._host, self._port = parse_address(address)
        if tls is not None:
            check_tls(tls)
        self.buffer = buffer
        self.buffer_id = buffer_id or uuid.uuid4().hex
        self._address = address
        self._token = token
        self._tls = tls
        self._max_message_bytes = max_message_bytes
        self.clock = CollectionClock()
        self._collector = StatsCollector(buffer, self.clock)
        self.encoder = MessageEncoder(buffer, self.buffer_id, self.clock)
        self.streams = Streams(buffer, self.encoder, max_streams, max_message_bytes)
        self.submissions = Submissions(buffer, self.buffer_id, max_message_bytes)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self.port: int | None = None
        self._started = False

    def start(self) -> Self:
        """Binds and starts serving (once per server object)."""
        if self._started:
            raise RuntimeError(
                "this server was started already; create a new ExperienceServer to serve again"
            )
        self._started = True
        workers = self.streams.max_streams + EXTRA_WORKERS
        self._executor = futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="experience-rpc"
        )
        interceptors = [TokenInterceptor(self._token)] if self._token else []
        server = grpc.server(
            self._executor,
            interceptors=interceptors,
            maximum_concurrent_rpcs=workers,
            options=[
                ("grpc.max_send_message_length", self._max_message_bytes),
                ("grpc.max_receive_message_length", self._max_message_bytes),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        # The handlers look their targets up per call, so wrapping one (farm's
        # submission counts) takes effect on a running server.
        handlers = {
            "StreamExperiences": grpc.unary_stream_rpc_method_handler(
                lambda request, context: self.streams.stream_experiences(request, context),
                request_deserializer=pb.StreamExperiencesRequest.FromString,
            ),
            "StreamExperienceBatches": grpc.unary_stream_rpc_method_handler(
                lambda request, context: self.streams.stream_batches(request, context),
                request_deserializer=pb.StreamExperiencesRequest.FromString,
            ),
            "SubmitExperiences": grpc.unary_unary_rpc_method_handler(
                lambda request, context: self.submissions.submit(request, context),
                request_deserializer=pb.SubmitExperiencesRequest.FromString,
                response_serializer=pb.SubmitExperiencesResponse.SerializeToString,
            ),
            "GetExperienceStats": grpc.unary_unary_rpc_method_handler(
                lambda request, context: stats_response(
                    self._collector, self.clock, request, self.buffer_id, self.active_streams
                ),
                request_deserializer=pb.GetExperienceStatsRequest.FromString,
                response_serializer=pb.GetExperienceStatsResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        if self._tls:
            credentials = server_credentials(self._tls)
            port = self._bind(lambda target: server.add_secure_port(target, credentials))
        else:
            port = self._bind(server.add_insecure_port)
        self.port = port
        self._collector.start()
        server.start()
        self._server = server
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self

    def _bind(self, add_port) -> int:
        """Binds every address the host resolves to, on one port, and returns
        it: serving on some of them only would let another process answer on
        the others. Each is tried with a plain socket first, so a port in use
        is reported as such."""
        try:
            infos = socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ValueError(
                f"cannot listen on {self._address}: {self._host!r} does not resolve "
                f"({exc.strerror})"
            ) from None
        port = self._port
        for family, host in dict.fromkeys((info[0], info[4][0]) for info in infos):
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(
                        socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
                    )  # as gRPC's listeners do
                    probe.bind((host, port))
            except OSError as exc:
                where = f"cannot listen on {self._address} ({host} port {port})"
                if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    raise ValueError(f"{where}: the address is not one of this machine's") from None
                raise OSError(exc.errno, f"{where}: {(exc.strerror or str(exc)).lower()}") from None
            target = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            try:
                bound = add_port(target)
            except RuntimeError:
                bound = 0
            if not bound:
                raise OSError(f"cannot listen on {self._address}: gRPC could not bind {target}")
            port = bound
        return port

    @property
    def address(self) -> str:
        """``host:port`` with the port actually bound."""
        host = self._address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting calls, lets streams send what the buffer holds (follow
        streams end there) for up to ``grace`` seconds, then cancels the rest."""
        if self._server is None:
            return
        self._health.enter_graceful_shutdown()
        self.streams.stopping.set()
        self._server.stop(grace).wait()
        self._collector.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._server = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def active_streams(self) -> int:
        return self.streams.active

    @property
    def max_streams(self) -> int:
        return self.streams.max_streams

    @max_streams.setter
    def max_streams(self, value: int) -> None:
        """Changes the limit for streams opened from now on (open ones stay). A
        started server has worker threads for the limit it started with: above
        that, streams would wait for threads, so raising past it needs a restart."""
        if value < 1:
            raise ValueError(f"max_streams: must be at least 1, got {value}")
        started_with = self._executor._max_workers - EXTRA_WORKERS if self._executor else None
        if started_with is not None and value > started_with:
            raise ValueError(
                f"max_streams: {value} is above the {started_with} this server started with; "
                "restart to raise it"
            )
        self.streams.max_streams = value

    @property
    def batch_wait_ms(self) -> float:
        """How long a stream batch waits to fill when the request does not say."""
        return self.streams.batch_wait_ms

    @batch_wait_ms.setter
    def batch_wait_ms(self, value: float) -> None:
        self.streams.batch_wait_ms = value

    def stream_lags(self) -> dict[int, int]:
        """Each open stream's lag (experiences appended it has not read), by the
        stream's number (counting the streams this server opened)."""
        return self.streams.lags()

    def set_health(self, service: str, serving: bool) -> None:
        """Reports ``service`` ("" for the server as a whole) SERVING or
        NOT_SERVING through the gRPC health service (ignored once stopping)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self._health.set(service, status)

    def drained(self) -> bool:
        """Whether every open stream has sent everything appended so far (that it
        will send: non-follow streams end at the head they started with)."""
        return self.streams.drained()

    def wait_drained(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for ``drained``; returns it."""
        deadline = time.monotonic() + timeout
        while not self.drained():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
