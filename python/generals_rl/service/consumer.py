"""The Python consumer of the experience service: batches of numpy arrays from
one or several servers, resumable after disconnections and crashes.

Longer than 400 lines: the reconnecting, resuming stream of several servers is
one state machine (positions, retries, delivery order).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import grpc

from .._arguments import whole_number
from .._proto import experience_pb2 as pb
from .._proto import experience_pb2_grpc as pb_grpc
from ..backoff import Backoff
from ..experience import CompactBatch, DecodedBatch, RawBatch, format_game_id
from . import packing
from .compact_packing import unpack_compact
from .discovery import AddressBook, AddressSource
from .streaming import MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS
from .wire import NestedBytesSplitter

if TYPE_CHECKING:
    from typing_extensions import Self

# The batches' stream, its messages parsed without copying their payload.
_BATCHES_METHOD = "/{}/StreamExperienceBatches".format(
    pb.DESCRIPTOR.services_by_name["ExperienceService"].full_name
)
_SPLIT_BATCH = NestedBytesSplitter(pb.ExperienceBatch, "packed", "payload")

# Waits between reconnection attempts: 0.05 s doubling to 2 s, each +-50%.
RECONNECT_BACKOFF = Backoff(base_delay=0.05, max_delay=2.0, jitter=(0.5, 1.5))
# Codes after which the consumer reconnects (the server went away, restarted, or
# the connection broke). Others (refusals, server errors) end the stream.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)


class StreamPosition(NamedTuple):
    """Where a stream of one server resumes: the buffer the sequence numbers
    belong to and the next sequence to read."""

    buffer_id: str
    next_sequence: int


class ConsumerError(RuntimeError):
    """A server refused the stream or stayed unreachable; ``code`` is the gRPC
    status code and ``address`` the server."""

    def __init__(self, address: str, code: grpc.StatusCode | None, message: str) -> None:
        super().__init__(f"{address}: {message}")
        self.address = address
        self.code = code


class BufferSwitch(NamedTuple):
    """A stream's server came back with another buffer (a restarted actor):
    this consumer had delivered the old buffer's experiences up to
    ``delivered_next`` and last heard of its head at ``old_head``; the new
    buffer's first experience is ``new_first``."""

    key: str
    old_buffer_id: str
    new_buffer_id: str
    delivered_next: int
    old_head: int
    new_first: int

    @property
    def undelivered(self) -> int:
        """The old buffer's experiences this consumer never received (at least:
        its head may have moved on after it last heard)."""
        return max(0, self.old_head - self.delivered_next)


@dataclass
class _ServerState:
    key: str  # names the stream for its whole life, across address changes
    address: str
    channel: grpc.Channel
    stub: pb_grpc.ExperienceServiceStub
    delivered: StreamPosition | None = None  # after the last batch handed to the caller
    received: StreamPosition | None = None  # after the last batch taken off the wire
    head: int = 0
    missed: int = 0
    reconnects: int = 0
    call: grpc.Call | None = None
    removed: bool = False  # gone from the address book: its pump ends
    # Its address changed and no call has been opened to the new one yet: a pump
    # that ended before it saw the change is started again.
    moved: bool = False
    thread: threading.Thread | None = None


_END = object()
_STARTED = object()  # a pump was added while streaming


class ExperienceConsumer:
    """Streams experiences from one or several experience servers.

    Parameters
    ----------
    address:
        ``"host:port"``, ``"dns:///name:port"`` (every A/AAAA record of the name,
        e.g. a Kubernetes headless Service), a list of those, or a callable
        listing servers (see ``generals_rl.service.discovery``); batches of all
        are merged. DNS names and callables are resolved again every
        ``discovery_interval`` seconds while streaming: new servers are
        streamed from, vanished ones dropped (their positions are kept), and a
        key whose address changed is followed to it.
    token:
        Bearer token sent with every call (when the servers require one).
    root_certificates:
        PEM bytes to connect over TLS (``tls=True`` uses the system roots).
    reconnect_timeout:
        How long a server may stay unreachable before the stream gives up with
        ``ConsumerError`` (a server of a DNS name or callable is retried as long
        as it is listed); reconnection attempts back off up to 2 s apart.
    queue_batches:
        Batches received ahead of the caller (per server): bounds memory, and a
        slow caller slows its streams down instead of piling up data.
    decode_threads:
        Threads unpacking and decoding batches (in C++, off the GIL) while the
        caller works; batches are still delivered in order.
    """

    def __init__(
        self,
        address: str | Sequence[str] | AddressSource,
        token: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        server_name_override: str | None = None,
        reconnect_timeout: float = 60.0,
        queue_batches: int = 4,
        decode_threads: int = 2,
        max_message_bytes: int = 256 << 20,
        discovery_interval: float = 2.0,
    ) -> None:
        self._book = AddressBook(address)
        if not discovery_interval > 0:
            raise ValueError(f"discovery_interval: must be > 0 seconds, got {discovery_interval}")
        self._discovery_interval = discovery_interval
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._reconnect_timeout = reconnect_timeout
        self._queue_batches = max(1, queue_batches)
        if decode_threads < 1:
            raise ValueError(f"decode_threads: must be at least 1, got {decode_threads}")
        self._decode_threads = decode_threads
        self._max_message_bytes = (
            max_message_bytes  # also bounds what a compressed batch may inflate to
        )
        self._channel_options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 20000),
            ("grpc.keepalive_timeout_ms", 10000),
        ]
        if server_name_override:
            self._channel_options.append(("grpc.ssl_target_name_override", server_name_override))
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates) if (tls or root_certificates) else None
        )
        self._servers: dict[str, _ServerState] = {}
        for key, addr in self._book.resolve().items():
            self._servers[key] = _ServerState(key, addr, *self._connect(addr))
        self.switches: list[BufferSwitch] = []
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._streaming = False

    def _connect(self, address: str) -> tuple[grpc.Channel, pb_grpc.ExperienceServiceStub]:
        channel = (
            grpc.secure_channel(address, self._credentials, options=self._channel_options)
            if self._credentials
            else grpc.insecure_channel(address, options=self._channel_options)
        )
        return channel, pb_grpc.ExperienceServiceStub(channel)

    # ---- reading ---------------------------------------------------------------

    def stream_experiences(
        self,
        game_ids: Iterable[int | str] | None = None,
        player_ids: Iterable[int] | None = None,
        batch_size: int = 32,
        follow: bool = True,
        min_tick: int = 0,
        start: str | int | Mapping[str, StreamPosition] | None = None,
        compression: bool = False,
        decode: bool = True,
        max_batch_wait_ms: int = 5,
        *,
        compact: bool = False,
        obstacles: bool = False,
    ) -> Iterator[DecodedBatch] | Iterator[RawBatch] | Iterator[CompactBatch]:
        """Yields batches of the matching experiences: ``DecodedBatch`` (float
        observations and masks decoded in C++) or, with ``decode=False``,
        ``RawBatch`` (raw boards). With ``compact=True`` (``decode`` is then not
        used) the server sends the rows' compact player views and the batches
        are indexed ``CompactBatch``es: each distinct view once and each row's
        view indices (``batch.views``), arrays over the received bytes for
        ``generals_rl.torch.as_tensor`` without a copy (``obstacles``: the
        observation option they are made with); the trainer's fast path. A
        batch's ``missed`` counts experiences its server lost to overwriting
        before it (a batch may then hold no rows).

        ``start``: ``"oldest"`` (what is resident), ``"newest"`` (only what comes
        next), a sequence number (one server), or the ``positions`` of an earlier
        consumer to resume exactly after what it delivered; by default, after what
        this consumer delivered before (from the oldest the first time). ``follow=False`` ends
        once every server has sent what it held when the stream began; with
        ``follow=True`` it ends when every server has shut down gracefully.
        Broken streams reconnect and resume after the last delivered batch.
        """
        if self._streaming:
            raise RuntimeError("this consumer is already streaming; use one consumer per stream")
        batch_size = whole_number(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        max_batch_wait_ms = whole_number(
            max_batch_wait_ms, "max_batch_wait_ms", 0, MAX_BATCH_WAIT_MS
        )
        request = pb.StreamExperiencesRequest(
            game_ids=[g if isinstance(g, str) else format_game_id(g) for g in game_ids or []],
            player_ids=list(player_ids or []),
            min_tick=min_tick,
            follow=follow,
            batch_size=batch_size,
            enable_compression=compression,
            max_batch_wait_ms=max_batch_wait_ms,
            compact_views=compact,
            obstacles=obstacles,
        )
        self._apply_start(start)
        return self._run(request, start, "compact" if compact else "decoded" if decode else "raw")

    def _run(self, request: pb.StreamExperiencesRequest, start, form: str):
        """Starts one receiving thread per server on first use and yields what they deliver."""
        if self._streaming:
            raise RuntimeError("this consumer is already streaming; use one consumer per stream")
        self._streaming = True
        self._stop.clear()
        self._decoder = ThreadPoolExecutor(
            self._decode_threads, thread_name_prefix="consumer-decode"
        )
        # Sized for the servers known now (servers found later share it: still bounded).
        out: queue.Queue = queue.Queue(maxsize=self._queue_batches * max(1, len(self._servers)))
        pumping = (request, start, form, out)
        for server in self._servers.values():
            self._start_pump(server, pumping)
        following = self._book.dynamic and request.follow
        if following:
            self._follower = threading.Thread(
                target=self._follow, args=(pumping,), name="consumer-discovery", daemon=True
            )
            self._follower.start()
        yield from self._deliver(out, len(self._servers), following)

    def _start_pump(self, server: _ServerState, pumping: tuple) -> None:
        server.removed = False
        server.thread = threading.Thread(
            target=self._pump, args=(server, *pumping), name=f"consumer-{server.key}", daemon=True
        )
        server.thread.start()

    def _follow(self, pumping: tuple) -> None:
        """Resolves the address book again and again: streams from servers that
        appeared, drops vanished ones, reconnects keys whose address changed."""
        out = pumping[-1]
        while not self._stop.wait(self._discovery_interval):
            try:
                found = self._book.resolve()
            except Exception:  # a failed lookup keeps the servers known so far
                continue
            for key, server in list(self._servers.items()):
                if key not in found and not server.removed:
                    server.removed = True
                    _cancel(server)
            for key, address in found.items():
                known = self._servers.get(key)
                if known is None:
                    known = _ServerState(key, address, *self._connect(address))
                    # A new mapping: readers iterating the old one (positions, lag) go on safely.
                    self._servers = {**self._servers, key: known}
                elif known.address != address:
                    old = known.channel
                    known.address = address
                    known.channel, known.stub = self._connect(address)
                    known.moved = True
                    _cancel(known)
                    old.close()
                ended = known.thread is not None and not known.thread.is_alive()
                if known.thread is None or (ended and (known.removed or known.moved)):
                    if not self._put(out, _STARTED):
                        return
                    self._start_pump(known, pumping)

    def _apply_start(self, start) -> None:
        """Sets where each server's stream begins (``received``: resume after it)."""
        if start is None:  # continue after what this consumer delivered
            for server in self._servers.values():
                server.received = server.delivered
            return
        if isinstance(start, Mapping):
            unknown = set(start) - set(self._servers)
            if unknown:
                raise ValueError(
                    f"start: positions of servers this consumer does not read: {sorted(unknown)}"
                )
            for address, server in self._servers.items():
                position = start.get(address)
                server.received = server.delivered = (
                    StreamPosition(*position) if position is not None else None
                )
            return
        if isinstance(start, str):
            if start not in ("oldest", "newest"):
                raise ValueError(
                    "start: expected 'oldest', 'newest', a sequence number or positions, got "
                    f"{start!r}"
                )
        elif isinstance(start, int) and not isinstance(start, bool):
            if len(self._servers) != 1:
                raise ValueError(
                    "start: a sequence number needs exactly one server; give positions per server"
                )
            if start < 0:
                raise ValueError(f"start: a sequence number must be >= 0, got {start}")
        else:
            raise TypeError(
                f"start: expected 'oldest', 'newest', a sequence number or positions, got {start!r}"
            )
        for server in self._servers.values():
            server.received = None

    def _request_for(self, server: _ServerState, template: pb.StreamExperiencesRequest, start):
        request = pb.StreamExperiencesRequest()
        request.CopyFrom(template)
        if server.received is not None:
            request.start_sequence = server.received.next_sequence
            request.resume_buffer_id = server.received.buffer_id
        elif isinstance(start, int) and not isinstance(start, bool):
            request.start_sequence = start
        elif start == "newest":
            request.start_position = pb.START_NEWEST
        else:
            request.start_position = pb.START_OLDEST
        return request

    def _pump(self, server: _ServerState, template, start, form: str, out: queue.Queue) -> None:
        """Receives one server's batches (decoding them off the caller's thread)
        and reconnects when the stream breaks."""
        failures = 0  # consecutive failed connections
        failing_since = None
        decoder = self._decoder
        assert decoder is not None  # started by _run
        while not self._stop.is_set():
            if server.removed:
                self._put(out, _END)
                return
            server.moved = False  # the call below goes to the current address
            request = self._request_for(server, template, start)
            try:
                batches = server.channel.unary_stream(
                    _BATCHES_METHOD,
                    request_serializer=pb.StreamExperiencesRequest.SerializeToString,
                    response_deserializer=_SPLIT_BATCH,
                )
                call = batches(request, metadata=self._metadata)
                server.call = call
                for message, payload in call:
                    failing_since, failures = None, 0
                    try:
                        work = decoder.submit(
                            _batch_of, message, form, self._max_message_bytes, payload
                        )  # in order, decoded in parallel
                    except RuntimeError:
                        if self._stop.is_set():
                            return  # halted while the batch arrived: the decoder is shut down
                        raise
                    server.received = StreamPosition(message.buffer_id, message.next_sequence)
                    if not self._put(out, (server, message, work)):
                        return
                self._put(out, _END)  # the server ended the stream: done
                return
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                if server.removed:
                    continue
                code = exc.code() if hasattr(exc, "code") else None
                if code not in RETRYABLE:
                    details = exc.details() if hasattr(exc, "details") else str(exc)
                    self._put(
                        out,
                        ConsumerError(
                            server.address, code, f"{code.name if code else 'error'}: {details}"
                        ),
                    )
                    return
                assert code is not None  # retryable
                now = time.monotonic()
                failing_since = failing_since or now
                # A listed server of a DNS name or source is retried while it stays listed.
                if now - failing_since > self._reconnect_timeout and not self._book.dynamic:
                    self._put(
                        out,
                        ConsumerError(
                            server.address,
                            code,
                            f"unreachable for {self._reconnect_timeout:.0f} s ({code.name})",
                        ),
                    )
                    return
                server.reconnects += 1
                failures += 1
                self._stop.wait(RECONNECT_BACKOFF.delay(failures))
            finally:
                server.call = None

    def _put(self, out: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _deliver(self, out: queue.Queue, live: int, following: bool):
        try:
            while live or following:
                try:
                    item = out.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # closed from another thread
                        return
                    continue
                if item is _END:
                    live -= 1
                    continue
                if item is _STARTED:
                    live += 1
                    continue
                if isinstance(item, ConsumerError):
                    raise item
                server, message, work = item
                try:
                    batch = work.result()
                except packing.PackedBatchError as exc:
                    raise ConsumerError(server.address, None, f"malformed batch: {exc}") from None
                before = server.delivered
                if before is not None and before.buffer_id != message.buffer_id:
                    self.switches.append(
                        BufferSwitch(
                            server.key,
                            before.buffer_id,
                            message.buffer_id,
                            before.next_sequence,
                            server.head,
                            message.from_sequence,
                        )
                    )
                    server.head = 0  # the new buffer's head
                server.delivered = StreamPosition(message.buffer_id, message.next_sequence)
                server.head = max(server.head, message.head_sequence)
                server.missed += message.missed
                if batch is not None:
                    batch.source, batch.buffer_id = server.key, message.buffer_id
                    yield batch
        finally:
            self._halt()

    def _halt(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None
        for server in self._servers.values():
            _cancel(server)
        for server in self._servers.values():
            if server.thread is not None:
                server.thread.join(timeout=5)
                server.thread = None
        if self._decoder is not None:
            self._decoder.shutdown(wait=True, cancel_futures=True)
            self._decoder = None
        self._streaming = False

    # ---- state -----------------------------------------------------------------

    @property
    def positions(self) -> dict[str, StreamPosition]:
        """Per server, where a new stream resumes right after the last batch this
        consumer delivered (pass it as ``start=``; it survives as JSON lists)."""
        return {a: s.delivered for a, s in self._servers.items() if s.delivered is not None}

    @property
    def lag_by_server(self) -> dict[str, int]:
        """Per server, experiences appended that this consumer has not delivered
        (by sequence number, so filtered-out ones count until passed)."""
        return {
            a: max(0, s.head - s.delivered.next_sequence) if s.delivered else s.head
            for a, s in self._servers.items()
        }

    @property
    def lag(self) -> int:
        return sum(self.lag_by_server.values())

    @property
    def total_missed(self) -> int:
        """Experiences the servers lost to overwriting before this consumer read them."""
        return sum(s.missed for s in self._servers.values())

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self._servers.values())

    def stats(
        self, address: str | None = None, max_games: int = 1000
    ) -> pb.GetExperienceStatsResponse:
        """The ``GetExperienceStats`` answer of one server (the first by default)."""
        server = self._servers[address] if address else next(iter(self._servers.values()))
        return server.stub.GetExperienceStats(
            pb.GetExperienceStatsRequest(max_games=max_games), metadata=self._metadata, timeout=30
        )

    def close(self) -> None:
        self._halt()
        for server in self._servers.values():
            server.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cancel(server: _ServerState) -> None:
    call = server.call
    if call is not None:
        call.cancel()


_local = threading.local()


def _batch_of(message: pb.ExperienceBatch, form: str, max_bytes: int, payload=None):
    """The batch to deliver in ``form`` ("raw", "decoded" or "compact"), or None for
    a message that only moves the position. ``payload``: the packed payload when
    it was kept out of the parsed message."""
    if message.packed.count == 0 and message.missed == 0:
        return None
    decompressor = None
    if message.packed.compression == pb.COMPRESSION_ZSTD:
        decompressor = getattr(_local, "decompressor", None)
        if decompressor is None:  # one per thread: they are not thread-safe
            import zstandard

            decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    batch: RawBatch | DecodedBatch | CompactBatch
    # The server checked the tiles; the sizes are checked before inflating.
    if form == "compact":
        if message.packed.layout != pb.PACKED_LAYOUT_COMPACT:
            raise packing.PackedBatchError(
                "packed: compact views were asked for, the server sent raw boards "
                "(a server from before compact views?)"
            )
        batch = unpack_compact(message.packed, decompressor, payload, max_bytes)
    else:
        raw = packing.unpack(
            message.packed, decompressor, payload, check_tiles=False, max_bytes=max_bytes
        )
        batch = raw
        if form == "decoded":
            try:
                batch = raw.decode(message.army_scaling or "linear", message.army_scale or 1000.0)
            except ValueError as exc:  # the decoder's own checks of what the server checks
                raise packing.PackedBatchError(f"packed: {exc}") from None
    batch.missed, batch.next_sequence = message.missed, message.next_sequence
    return batch
