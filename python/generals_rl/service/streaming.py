"""The two streaming calls: their parameters checked, the open streams (one
cursor each, at most ``max_streams``), and the read loop that paces them.

Each stream owns one cursor of the buffer. A batch stream reads and makes its
next message on a thread of its own while gRPC sends the last one (the
synchronous server pulls the next response once the last one is written), and
reads no further ahead than that one message, so a slow client holds back its
own cursor, never a queue: in ``block`` mode that cursor holds producers back,
in ``overwrite`` mode the client is told how many experiences it missed. What a
stream has delivered counts only what gRPC has sent.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass

import grpc

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience import CompactBatch, Cursor, ExperienceBuffer, RawBatch, parse_game_id
from ..vec_env import OBSERVATION_CHANNELS
from .messages import MessageEncoder
from .status import Abort, aborting

DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 65536
DEFAULT_BATCH_WAIT_MS = 5
MAX_BATCH_WAIT_MS = 5000
MAX_FILTER_GAMES = 4096
MAX_PLAYER_ID = _core.MAX_PLAYERS - 1
HEARTBEAT_SECONDS = 1.0  # a follow stream with nothing to send still sends its position this often
# StreamExperiences decodes what it reads and sends it one experience at a time:
# a read is capped to this many bytes of decoded tensors (at least one
# experience), so batch_size bounds rows read, not memory held.
EXPERIENCE_READ_BYTES = 8 << 20


@dataclass
class StreamParams:
    game_ids: list[int]
    player_ids: list[int]
    min_tick: int
    follow: bool
    batch_size: int
    wait: float
    compress: bool
    start: str | int
    raw_states: bool
    compact_views: bool
    obstacles: bool


class Stream:
    """An open stream: its cursor, where it ends (None: follows), and the
    position up to which everything was sent or did not match."""

    def __init__(self, stream_id: int, cursor: Cursor, end: int | None) -> None:
        self.id = stream_id
        self.cursor = cursor
        self.end = end
        self.delivered = cursor.position


class Streams:
    """The streaming calls of a server over ``buffer``: at most ``max_streams``
    open at once, messages of at most ``max_message_bytes``."""

    def __init__(
        self,
        buffer: ExperienceBuffer,
        encoder: MessageEncoder,
        max_streams: int,
        max_message_bytes: int,
    ) -> None:
        self.buffer = buffer
        self.encoder = encoder
        self.max_streams = max_streams
        self.batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS  # when a request does not say
        tiles = buffer.height * buffer.width
        # A row and at most two boards (or views) of up to 5 bytes a tile and a
        # packed mask, plus headers.
        self._max_rows = max(1, (max_message_bytes - (64 << 10)) // (64 + 11 * tiles))
        # Decoded: two float32 observations and a mask of 4 moves a tile.
        decoded_bytes = tiles * (2 * len(OBSERVATION_CHANNELS) * 4 + 4)
        self._max_experience_rows = max(1, EXPERIENCE_READ_BYTES // decoded_bytes)
        self._open: set[Stream] = set()
        self._lock = threading.Lock()
        self._opened = 0
        self.stopping = threading.Event()  # set: follow streams end at the head

    # ---- the calls -------------------------------------------------------------

    def stream_batches(self, request: pb.StreamExperiencesRequest, context):
        with self._streaming(request, context, self._max_rows) as (params, stream):
            compressor = None
            if params.compress:
                import zstandard

                compressor = zstandard.ZstdCompressor(level=1)

            def messages():
                for batch, from_sequence, next_sequence in self._read_batches(
                    stream, params, context
                ):
                    message = None
                    if batch is not None:
                        message = self.encoder.batch_message(
                            batch, from_sequence, next_sequence, compressor, params.obstacles
                        )
                    yield message, next_sequence

            ahead = ReadAhead(messages())
            try:
                for message, next_sequence in ahead:
                    if message is not None:
                        yield message
                    stream.delivered = next_sequence  # sent, or nothing to send up to here
            finally:
                stream.cursor.close()  # a read waiting for appends returns at once
                ahead.close()

    def stream_experiences(self, request: pb.StreamExperiencesRequest, context):
        if request.compact_views:
            with aborting(context):
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "compact_views: only StreamExperienceBatches carries compact views",
                )
        with self._streaming(request, context, self._max_experience_rows) as (params, stream):
            missed = 0
            for raw, _, next_sequence in self._read_batches(stream, params, context):
                if raw is not None:
                    missed += raw.missed
                    if len(raw):
                        yield from self.encoder.experience_messages(raw, params.raw_states, missed)
                        missed = 0
                stream.delivered = next_sequence

    # ---- what is open ----------------------------------------------------------

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._open)

    def lags(self) -> dict[int, int]:
        """Each open stream's lag (experiences appended it has not read), by the
        stream's number (counting the streams opened)."""
        with self._lock:
            streams = list(self._open)
        return {s.id: s.cursor.lag for s in streams if not s.cursor.closed}

    def drained(self) -> bool:
        """Whether every open stream has sent everything appended so far (that it
        will send: non-follow streams end at the head they started with)."""
        head = self.buffer.head
        with self._lock:
            streams = list(self._open)
        return all(s.delivered >= (head if s.end is None else min(head, s.end)) for s in streams)

    # ---- opening, reading, closing ---------------------------------------------

    @contextlib.contextmanager
    def _streaming(self, request, context, max_rows: int):
        """The checked parameters and an open stream for a streaming call that
        reads at most ``max_rows`` at a time; a bad request or a refused stream
        aborts the call with its status."""
        with aborting(context):
            params = self._params(request, max_rows)
            stream = self._open_stream(params, context)
        try:
            yield params, stream
        finally:
            self._close_stream(stream)

    def _params(self, request: pb.StreamExperiencesRequest, max_rows: int) -> StreamParams:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if len(request.game_ids) > MAX_FILTER_GAMES:
            raise Abort(
                invalid,
                f"game_ids: {len(request.game_ids)} games, at most {MAX_FILTER_GAMES} per stream",
            )
        game_ids = []
        for i, text in enumerate(request.game_ids):
            try:
                game_ids.append(parse_game_id(text))
            except ValueError:
                raise Abort(invalid, f"game_ids[{i}]: {text[:40]!r} is not 16 hex digits") from None
        bad = [p for p in request.player_ids if not 0 <= p <= MAX_PLAYER_ID]
        if bad:
            raise Abort(invalid, f"player_ids: {bad[:8]} are not players 0..{MAX_PLAYER_ID}")
        if request.min_tick < 0:
            raise Abort(invalid, f"min_tick: {request.min_tick} is negative")
        if request.batch_size > MAX_BATCH_SIZE:
            raise Abort(invalid, f"batch_size: {request.batch_size} is above {MAX_BATCH_SIZE}")
        if request.max_batch_wait_ms > MAX_BATCH_WAIT_MS:
            raise Abort(
                invalid,
                f"max_batch_wait_ms: {request.max_batch_wait_ms} is above {MAX_BATCH_WAIT_MS}",
            )
        return StreamParams(
            game_ids=game_ids,
            player_ids=list(request.player_ids),
            min_tick=request.min_tick,
            follow=request.follow,
            batch_size=min(request.batch_size or DEFAULT_BATCH_SIZE, max_rows),
            wait=(request.max_batch_wait_ms or self.batch_wait_ms) / 1000.0,
            compress=request.enable_compression,
            start=self._start(request),
            raw_states=request.raw_states,
            compact_views=request.compact_views,
            obstacles=request.obstacles,
        )

    def _start(self, request: pb.StreamExperiencesRequest) -> str | int:
        which = request.WhichOneof("start")
        if which == "start_sequence":
            if request.resume_buffer_id and request.resume_buffer_id != self.encoder.buffer_id:
                return "oldest"  # another buffer: everything in this one is new to the client
            if request.start_sequence > self.buffer.head:
                raise Abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"start_sequence: {request.start_sequence} is beyond the buffer's head "
                    f"{self.buffer.head}",
                )
            return int(request.start_sequence)
        if which == "start_position":
            if request.start_position not in (pb.START_OLDEST, pb.START_NEWEST):
                raise Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"start_position: unknown value {request.start_position}",
                )
            return "newest" if request.start_position == pb.START_NEWEST else "oldest"
        return "oldest"

    def _open_stream(self, params: StreamParams, context) -> Stream:
        with self._lock:
            if len(self._open) >= self.max_streams:
                raise Abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the server allows {self.max_streams} concurrent streams and all are in use",
                )
            cursor = self.buffer.cursor(
                params.game_ids, params.player_ids, params.min_tick, params.start
            )
            self._opened += 1
            stream = Stream(self._opened, cursor, None if params.follow else self.buffer.head)
            self._open.add(stream)
        context.add_callback(
            cursor.close
        )  # a cancelled stream stops holding producers back at once
        return stream

    def _close_stream(self, stream: Stream) -> None:
        stream.cursor.close()
        with self._lock:
            self._open.discard(stream)

    @staticmethod
    def _read(
        cursor: Cursor, params: StreamParams, timeout: float, end: int | None
    ) -> RawBatch | CompactBatch:
        """One read for a stream: raw boards, or the indexed compact views it sends."""
        if params.compact_views:
            return cursor.read_compact(
                params.batch_size, timeout, obstacles=params.obstacles, indexed=True, end=end
            )
        return cursor.read_raw(params.batch_size, timeout, end=end)

    def _read_batches(self, stream: Stream, params: StreamParams, context):
        """Yields ``(batch, from_sequence, next_sequence)`` to send, or ``(None, ...,
        next_sequence)`` when nothing up to ``next_sequence`` is to be sent; the
        caller counts what it sent as delivered."""
        cursor = stream.cursor
        last_sent = time.monotonic()
        while context.is_active() and not cursor.closed:
            if stream.end is None and self.stopping.is_set():
                stream.end = self.buffer.head  # shutting down: send what is there, then end
            from_sequence = cursor.position
            if stream.end is not None:
                if from_sequence >= stream.end:
                    return
                batch = self._read(cursor, params, 0.0, stream.end)
                next_sequence = batch.next_sequence
                if not len(batch) and not batch.missed:
                    if next_sequence == from_sequence:  # an append is being published
                        time.sleep(0.001)
                        continue
                    if next_sequence < stream.end:
                        yield None, from_sequence, next_sequence
                        continue
            else:
                batch = self._read(cursor, params, params.wait, None)
                next_sequence = batch.next_sequence
                if (
                    not len(batch)
                    and not batch.missed
                    and time.monotonic() - last_sent < HEARTBEAT_SECONDS
                ):
                    yield None, from_sequence, next_sequence
                    continue
            yield batch, from_sequence, next_sequence
            last_sent = time.monotonic()


class ReadAhead:
    """Runs ``items`` on a thread of its own, making at most ``depth`` items
    ahead of the one the reader holds: a stream makes its next message while
    gRPC sends the last. An error raised by ``items`` is raised to the reader.
    ``close`` stops the thread; whatever ``items`` waits on must end by itself."""

    _END = object()

    def __init__(self, items, depth: int = 1) -> None:
        self._items = items
        self._made: queue.SimpleQueue = queue.SimpleQueue()
        self._room = threading.Semaphore(depth)  # taken before an item is made
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while self._wait_for_room():
                item = next(self._items, self._END)
                self._made.put((item, None))
                if item is self._END:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._made.put((self._END, exc))

    def _wait_for_room(self) -> bool:
        while not self._stop.is_set():
            if self._room.acquire(timeout=0.1):
                return True
        return False

    def __iter__(self):
        while True:
            item, error = self._made.get()
            if error is not None:
                raise error
            if item is self._END:
                return
            self._room.release()  # the reader holds this one: make the next
            yield item

    def close(self) -> None:
        """Stops the thread and waits for it."""
        self._stop.set()
        self._thread.join()
