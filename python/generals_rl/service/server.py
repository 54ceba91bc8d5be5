"""The gRPC experience service: a thin layer over an ``ExperienceBuffer``.

Each stream owns one cursor of the buffer and reads from it only when gRPC has
sent the previous message (the synchronous server pulls the next response once
the last one is written), so a slow client holds back its own cursor, never a
queue: in ``block`` mode that cursor holds producers back, in ``overwrite``
mode the client is told how many experiences it missed.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import socket
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from .. import _core
from .._proto import experience_pb2 as pb
from ..defaults import MAX_STREAMS, STREAM_ADDRESS
from ..experience import (
    BufferFullError,
    Cursor,
    ExperienceBuffer,
    RawBatch,
    format_game_id,
    parse_game_id,
)
from . import packing
from .stats import CollectionClock, StatsCollector
from .submit import row_problems, validate_submission
from .wire import len_field_parts

if TYPE_CHECKING:
    from typing_extensions import Self

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExperienceService"].full_name
DEFAULT_ADDRESS = STREAM_ADDRESS

DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 65536
DEFAULT_BATCH_WAIT_MS = 5
MAX_BATCH_WAIT_MS = 5000
MAX_FILTER_GAMES = 4096
MAX_SUBMIT_EXPERIENCES = 65536
HEARTBEAT_SECONDS = 1.0  # a follow stream with nothing to send still sends its position this often
REJECTIONS_IN_STATUS = 8  # rejections detailed in the status (the count is always complete)
MAX_REASON_CHARS = 200
# StreamExperiences decodes what it reads and sends it one experience at a time:
# a read is capped to this many bytes of decoded tensors (at least one
# experience), so batch_size bounds rows read, not memory held.
EXPERIENCE_READ_BYTES = 8 << 20


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


def _check_tls(tls: tuple[bytes, bytes]) -> None:
    for name, pem, block in zip(
        ("certificate chain", "private key"),
        tls,
        (b"-----BEGIN CERTIFICATE-----", b"PRIVATE KEY-----"),
        strict=False,
    ):
        if not pem.strip():
            raise ValueError(f"tls: the {name} is empty")
        if block not in pem:
            raise ValueError(f"tls: the {name} is not PEM (no {block.decode().strip('-')} block)")


class _Abort(Exception):
    """A request answered with a status instead of a result."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _StreamParams:
    game_ids: list[int]
    player_ids: list[int]
    min_turn: int
    follow: bool
    batch_size: int
    wait: float
    compress: bool
    start: str | int
    compact_states: bool


class _Stream:
    """An open stream: its cursor, where it ends (None: follows), and the
    position up to which everything was sent or did not match."""

    def __init__(self, cursor: Cursor, end: int | None) -> None:
        self.id = 0
        self.cursor = cursor
        self.end = end
        self.delivered = cursor.position


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
            _check_tls(tls)
        self.buffer = buffer
        self.buffer_id = buffer_id or uuid.uuid4().hex
        self._address = address
        self._token = token
        self._tls = tls
        self._max_streams = max_streams
        self._max_message_bytes = max_message_bytes
        tiles = buffer.height * buffer.width
        # A row and at most two boards of up to 5 bytes a tile, plus headers.
        self._max_rows = max(1, (max_message_bytes - (64 << 10)) // (64 + 10 * tiles))
        # Decoded: two float32 observations of 9 planes and a mask of 4 moves a tile.
        self._max_experience_rows = max(1, EXPERIENCE_READ_BYTES // (tiles * (2 * 9 * 4 + 4)))
        self._streams: set[_Stream] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.clock = CollectionClock()
        self._collector = StatsCollector(buffer, self.clock)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self.port: int | None = None
        self._started = False
        self.batch_wait_ms = DEFAULT_BATCH_WAIT_MS  # when a stream request does not say
        self._stream_ids = 0

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> ExperienceServer:
        """Binds and starts serving (once per server object)."""
        if self._started:
            raise RuntimeError(
                "this server was started already; create a new ExperienceServer to serve again"
            )
        self._started = True
        workers = self._max_streams + 16  # streams plus unary calls, health and reflection
        self._executor = futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="experience-rpc"
        )
        interceptors = [_TokenInterceptor(self._token)] if self._token else []
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
        handlers = {
            "StreamExperiences": grpc.unary_stream_rpc_method_handler(
                self._stream_experiences,
                request_deserializer=pb.StreamExperiencesRequest.FromString,
            ),
            "StreamExperienceBatches": grpc.unary_stream_rpc_method_handler(
                self._stream_batches, request_deserializer=pb.StreamExperiencesRequest.FromString
            ),
            "SubmitExperiences": grpc.unary_unary_rpc_method_handler(
                self._submit,
                request_deserializer=pb.SubmitExperiencesRequest.FromString,
                response_serializer=pb.SubmitExperiencesResponse.SerializeToString,
            ),
            "GetExperienceStats": grpc.unary_unary_rpc_method_handler(
                self._get_stats,
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
            certificate_chain, private_key = self._tls
            credentials = grpc.ssl_server_credentials([(private_key, certificate_chain)])
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
                f"cannot listen on {self._address}: {self._host!r} does not resolve ({exc.strerror})"
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
        self._stopping.set()
        self._server.stop(grace).wait()
        self._collector.stop()
        self._executor.shutdown(wait=False)
        self._server = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def active_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    @property
    def max_streams(self) -> int:
        return self._max_streams

    @max_streams.setter
    def max_streams(self, value: int) -> None:
        """Changes the limit for streams opened from now on (open ones stay). A
        started server has worker threads for the limit it started with: above
        that, streams would wait for threads, so raising past it needs a restart."""
        if value < 1:
            raise ValueError(f"max_streams: must be at least 1, got {value}")
        if self._executor is not None and value > self._executor._max_workers - 16:
            raise ValueError(
                f"max_streams: {value} is above the {self._executor._max_workers - 16} this server started with; "
                "restart to raise it"
            )
        self._max_streams = value

    def stream_lags(self) -> dict[int, int]:
        """Each open stream's lag (experiences appended it has not read), by the
        stream's number (counting the streams this server opened)."""
        with self._lock:
            streams = list(self._streams)
        return {s.id: s.cursor.lag for s in streams if not s.cursor.closed}

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
        head = self.buffer.head
        with self._lock:
            streams = list(self._streams)
        return all(s.delivered >= (head if s.end is None else min(head, s.end)) for s in streams)

    def wait_drained(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for ``drained``; returns it."""
        deadline = time.monotonic() + timeout
        while not self.drained():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # ---- streams -------------------------------------------------------------

    def _stream_params(self, request: pb.StreamExperiencesRequest, max_rows: int) -> _StreamParams:
        if len(request.game_ids) > MAX_FILTER_GAMES:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"game_ids: {len(request.game_ids)} games, at most {MAX_FILTER_GAMES} per stream",
            )
        game_ids = []
        for i, text in enumerate(request.game_ids):
            try:
                game_ids.append(parse_game_id(text))
            except ValueError:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"game_ids[{i}]: {text[:40]!r} is not 16 hex digits",
                )
        bad = [p for p in request.player_ids if not 0 <= p < _core.MAX_PLAYERS]
        if bad:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"player_ids: {bad[:8]} are not players 0..{_core.MAX_PLAYERS - 1}",
            )
        if request.min_turn < 0:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"min_turn: {request.min_turn} is negative"
            )
        if request.batch_size > MAX_BATCH_SIZE:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch_size: {request.batch_size} is above {MAX_BATCH_SIZE}",
            )
        if request.max_batch_wait_ms > MAX_BATCH_WAIT_MS:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"max_batch_wait_ms: {request.max_batch_wait_ms} is above {MAX_BATCH_WAIT_MS}",
            )
        start: str | int = "oldest"
        which = request.WhichOneof("start")
        if which == "start_sequence":
            if request.resume_buffer_id and request.resume_buffer_id != self.buffer_id:
                start = "oldest"  # another buffer: everything in this one is new to the client
            elif request.start_sequence > self.buffer.head:
                raise _Abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"start_sequence: {request.start_sequence} is beyond the buffer's head {self.buffer.head}",
                )
            else:
                start = int(request.start_sequence)
        elif which == "start_position":
            if request.start_position not in (pb.START_OLDEST, pb.START_NEWEST):
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"start_position: unknown value {request.start_position}",
                )
            start = "newest" if request.start_position == pb.START_NEWEST else "oldest"
        return _StreamParams(
            game_ids=game_ids,
            player_ids=list(request.player_ids),
            min_turn=request.min_turn,
            follow=request.follow,
            batch_size=min(request.batch_size or DEFAULT_BATCH_SIZE, max_rows),
            wait=(request.max_batch_wait_ms or self.batch_wait_ms) / 1000.0,
            compress=request.enable_compression,
            start=start,
            compact_states=request.compact_states,
        )

    def _open_stream(self, params: _StreamParams, context) -> _Stream:
        with self._lock:
            if len(self._streams) >= self._max_streams:
                raise _Abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server allows {self._max_streams} concurrent streams and all are in use",
                )
            cursor = self.buffer.cursor(
                params.game_ids, params.player_ids, params.min_turn, params.start
            )
            stream = _Stream(cursor, None if params.follow else self.buffer.head)
            self._stream_ids += 1
            stream.id = self._stream_ids
            self._streams.add(stream)
        context.add_callback(
            cursor.close
        )  # a cancelled stream stops holding producers back at once
        return stream

    def _close_stream(self, stream: _Stream) -> None:
        stream.cursor.close()
        with self._lock:
            self._streams.discard(stream)

    def _read_batches(self, stream: _Stream, params: _StreamParams, context):
        """Yields ``(raw, from_sequence, next_sequence)`` as the client takes them."""
        cursor = stream.cursor
        last_sent = time.monotonic()
        while context.is_active():
            if stream.end is None and self._stopping.is_set():
                stream.end = self.buffer.head  # shutting down: send what is there, then end
            from_sequence = cursor.position
            if stream.end is not None:
                if from_sequence >= stream.end:
                    return
                raw = cursor.read_raw(params.batch_size, 0.0)
                if len(raw) and int(raw.sequence[-1]) >= stream.end:
                    raw = raw.select(raw.sequence < stream.end)
                next_sequence = min(raw.next_sequence, stream.end)
                if not len(raw) and not raw.missed:
                    if next_sequence == from_sequence:  # an append is being published
                        time.sleep(0.001)
                        continue
                    if next_sequence < stream.end:
                        stream.delivered = next_sequence
                        continue
            else:
                raw = cursor.read_raw(params.batch_size, params.wait)
                next_sequence = raw.next_sequence
                if (
                    not len(raw)
                    and not raw.missed
                    and time.monotonic() - last_sent < HEARTBEAT_SECONDS
                ):
                    stream.delivered = next_sequence  # nothing to send up to here
                    continue
            yield raw, from_sequence, next_sequence
            last_sent = time.monotonic()
            stream.delivered = next_sequence  # gRPC asks for the next message once this one is sent

    @contextlib.contextmanager
    def _streaming(self, request, context, max_rows: int):
        """The checked parameters and an open stream for a streaming call that
        reads at most ``max_rows`` at a time; a bad request or a refused stream
        aborts the call with its status."""
        try:
            params = self._stream_params(request, max_rows)
            stream = self._open_stream(params, context)
        except _Abort as abort:
            context.abort(abort.code, str(abort))
        try:
            yield params, stream
        finally:
            self._close_stream(stream)

    def _stream_batches(self, request, context):
        with self._streaming(request, context, self._max_rows) as (params, stream):
            compressor = None
            if params.compress:
                import zstandard

                compressor = zstandard.ZstdCompressor(level=1)
            for raw, from_sequence, next_sequence in self._read_batches(stream, params, context):
                yield self._batch_message(raw, from_sequence, next_sequence, compressor)

    def _batch_header(
        self, raw: RawBatch, from_sequence: int, next_sequence: int
    ) -> pb.ExperienceBatch:
        header = pb.ExperienceBatch(
            buffer_id=self.buffer_id,
            from_sequence=from_sequence,
            next_sequence=next_sequence,
            missed=raw.missed,
            head_sequence=self.buffer.head,
            army_scaling=self.buffer.army_scaling,
            army_scale=self.buffer.army_scale,
        )
        if len(raw):
            first, last = int(raw.sequence[0]), int(raw.sequence[-1])
            header.first_sequence, header.last_sequence = first, last
            header.oldest_collected_at.FromNanoseconds(int(self.clock.time_of(first) * 1e9))
            header.newest_collected_at.FromNanoseconds(int(self.clock.time_of(last) * 1e9))
        return header

    def _batch_message(
        self, raw: RawBatch, from_sequence: int, next_sequence: int, compressor
    ) -> bytes:
        """The serialized ``ExperienceBatch``: the header by protobuf, then the
        packed field written around the column buffers (one copy of the data)."""
        header = self._batch_header(raw, from_sequence, next_sequence)
        packed, parts = packing.pack(raw, compressor)
        packed_fields = [
            packed.SerializeToString(),
            *len_field_parts(8, parts),
        ]  # 8: PackedBatch.payload
        return b"".join(
            [header.SerializeToString(), *len_field_parts(2, packed_fields)]
        )  # 2: .packed

    def _stream_experiences(self, request, context):
        with self._streaming(request, context, self._max_experience_rows) as (params, stream):
            missed = 0
            for raw, _, _ in self._read_batches(stream, params, context):
                missed += raw.missed
                if not len(raw):
                    continue
                yield from self._experience_messages(raw, params.compact_states, missed)
                missed = 0

    def _experience_messages(self, raw: RawBatch, compact: bool, missed_before: int):
        """One serialized ``Experience`` per row (the simple path)."""
        h, w = self.buffer.height, self.buffer.width
        times = self.clock.times_of(raw.sequence)
        done = raw.terminated | raw.truncated
        columns = zip(
            raw.sequence.tolist(),
            raw.game_id.tolist(),
            raw.player_id.tolist(),
            raw.tick.tolist(),
            raw.action.tolist(),
            raw.reward.tolist(),
            raw.legal.tolist(),
            raw.terminated.tolist(),
            raw.truncated.tolist(),
            done.tolist(),
            (times * 1e9).astype("int64").tolist(),
            strict=False,
        )
        if compact:
            boards = [
                pb.CompactState(
                    height=h,
                    width=w,
                    kind=raw.state_kind[s].tobytes(),
                    owner=raw.state_owner[s].astype("<i2").tobytes(),
                    army=raw.state_army[s].astype("<i4").tobytes(),
                ).SerializeToString()
                for s in range(raw.state_kind.shape[0])
            ]
        else:
            decoded = self.buffer.decode(raw)
            shape = pb.TensorState(shape=[9, h, w]).SerializeToString()
        for i, (
            seq,
            game,
            player,
            tick,
            action,
            reward,
            legal,
            term,
            trunc,
            is_done,
            nanos,
        ) in enumerate(columns):
            exp = pb.Experience(
                experience_id=f"{self.buffer_id}:{seq}",
                game_id=format_game_id(game),
                player_id=player,
                turn=tick,
                action=action,
                reward=reward,
                done=is_done,
                sequence=seq,
                legal=legal,
                terminated=term,
                truncated=trunc,
                missed_before=missed_before if i == 0 else 0,
            )
            exp.collected_at.FromNanoseconds(nanos)
            parts = [exp.SerializeToString()]
            if compact:
                parts += len_field_parts(17, [boards[raw.state_index[i]]])  # compact_state
                parts += len_field_parts(
                    18, [boards[raw.next_state_index[i]]]
                )  # compact_next_state
            else:
                for field_number, tensor in (
                    (5, decoded.state[i]),
                    (6, decoded.next_state[i]),
                ):  # state, next_state
                    parts += len_field_parts(
                        field_number, [shape, *len_field_parts(2, [tensor.astype("<f4").data])]
                    )
                parts += len_field_parts(
                    10, [decoded.action_mask[i].view("u1").data]
                )  # action_mask
            yield b"".join(parts)

    # ---- submissions and stats ------------------------------------------------

    def _submit(
        self, request: pb.SubmitExperiencesRequest, context
    ) -> pb.SubmitExperiencesResponse:
        try:
            return self._submit_or_abort(request, context)
        except _Abort as abort:
            context.abort(abort.code, str(abort))

    def _submit_or_abort(self, request, context) -> pb.SubmitExperiencesResponse:
        response = pb.SubmitExperiencesResponse(buffer_id=self.buffer_id)
        if request.experiences and request.HasField("packed"):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, "send either experiences or packed, not both"
            )
        if request.HasField("packed"):
            raw = self._unpack_submission(request.packed)
            response.accepted_count = len(raw)
            response.first_sequence = self._append(raw) if len(raw) else self.buffer.head
            return response
        count = len(request.experiences)
        self._check_submit_rows("experiences", count)
        raw, accepted, rejections = validate_submission(
            request.experiences, self.buffer.height, self.buffer.width
        )
        response.accepted_count = len(accepted)
        response.rejected_count = count - len(accepted)
        response.first_sequence = self._append(raw) if raw is not None else self.buffer.head
        if not rejections:
            return response
        shown = rejections[:REJECTIONS_IN_STATUS]
        for r in shown:
            response.rejections.add(
                index=r.index,
                experience_id=r.experience_id,
                field=r.field,
                reason=r.reason[:MAX_REASON_CHARS],
            )
        bad_request = error_details_pb2.BadRequest()
        for r in shown:
            bad_request.field_violations.add(
                field=f"experiences[{r.index}].{r.field}", description=r.reason[:MAX_REASON_CHARS]
            )
        reasons = "; ".join(
            f"experiences[{r.index}].{r.field}: {r.reason[:MAX_REASON_CHARS]}" for r in shown[:3]
        )
        more = f" (and {len(rejections) - 3} more problems)" if len(rejections) > 3 else ""
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT,
            message=(
                f"{response.rejected_count} of {count} experiences rejected, {response.accepted_count} accepted: "
                f"{reasons}{more}"
            ),
        )
        status.details.add().Pack(bad_request)
        status.details.add().Pack(response)
        context.abort_with_status(rpc_status.to_status(status))

    def _check_submit_rows(self, field: str, count: int) -> None:
        limit = min(MAX_SUBMIT_EXPERIENCES, self.buffer.capacity)
        if count > limit:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}: {count} in one request, at most {limit}",
            )

    def _check_submit_states(self, field: str, states: int) -> None:
        limit = self.buffer.state_capacity // 2
        if states > limit:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{field}: {states} distinct boards in one request, at most {limit}: split it",
            )

    def _unpack_submission(self, packed: pb.PackedBatch) -> RawBatch:
        """A packed submission checked to its last row. Its header is checked
        first, so the payload is inflated only when it fits the limits."""
        self._check_submit_rows("packed.count", packed.count)
        self._check_submit_states("packed.state_count", packed.state_count)
        height, width = self.buffer.height, self.buffer.width
        if packed.count and (packed.height, packed.width) != (height, width):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"packed: board is {packed.height}x{packed.width}, the server's buffer holds {height}x{width} boards",
            )
        try:
            raw = packing.unpack(packed, max_bytes=self._max_message_bytes)
        except packing.PayloadTooLargeError as exc:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except packing.PackedBatchError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        problems = row_problems(
            raw.player_id, raw.tick, raw.action, raw.reward, raw.legal, height, width
        )
        if problems:
            row, field, reason = problems[0]
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"packed: {field} of row {row}: {reason}{more}"
            )
        return raw

    def _append(self, raw: RawBatch) -> int:
        self._check_submit_states("experiences", raw.state_kind.shape[0])
        try:
            return self.buffer.append_raw(raw)
        except BufferFullError as exc:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"experience buffer full: {exc}"
            ) from None
        except ValueError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    def _get_stats(
        self, request: pb.GetExperienceStatsRequest, context
    ) -> pb.GetExperienceStatsResponse:
        snapshot, resident_games, through = self._collector.snapshot(request.max_games or 1000)
        head, oldest = self.buffer.head, self.buffer.oldest
        buffer_stats = self.buffer.stats()
        response = pb.GetExperienceStatsResponse(
            total_experiences=head,
            total_games=snapshot.games_seen,
            reward_mean=snapshot.reward_mean,
            reward_min=snapshot.reward_min if snapshot.experiences_seen else 0.0,
            reward_max=snapshot.reward_max if snapshot.experiences_seen else 0.0,
            resident_experiences=buffer_stats["resident"],
            capacity=buffer_stats["capacity"],
            overwritten_experiences=buffer_stats["total_overwritten"],
            oldest_sequence=oldest,
            head_sequence=head,
            policy=self.buffer.policy,
            active_streams=self.active_streams,
            buffer_id=self.buffer_id,
            done_experiences=snapshot.done_experiences,
            resident_games=resident_games,
            stats_missed=snapshot.missed,
            aggregated_through=through,
        )
        for game, count in snapshot.per_game.items():
            response.experiences_per_game[format_game_id(game)] = count
        for player, count in enumerate(snapshot.per_player.tolist()):
            if count:
                response.experiences_per_player[player] = count
        if head > oldest:
            response.oldest_collected_at.FromNanoseconds(int(self.clock.time_of(oldest) * 1e9))
            response.newest_collected_at.FromNanoseconds(int(self.clock.time_of(head - 1) * 1e9))
        return response


class _TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` (health checks
    excepted, so load balancers can probe) with UNAUTHENTICATED."""

    _EXEMPT = ("/grpc.health.v1.Health/",)

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request, context):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token (metadata 'authorization')",
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(self._EXEMPT):
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return continuation(handler_call_details)
        return self._deny
