"""Fuzz targets: each takes one input (bytes) and must either finish or raise
its documented error type; anything else (another exception, a crash, a hang,
memory beyond the fuzzer's limit) is a failure.

A target builds its seed inputs itself (from the shared replays, or from data
written by the library at the start), so the corpus follows the formats.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from generals_rl import VecEnv
from generals_rl._proto import experience_pb2 as pb
from generals_rl.bots import RandomBot
from generals_rl.experience import BufferFileError, ExperienceBuffer
from generals_rl.experience.buffer import _DIGEST_SIZE, _digest
from generals_rl.experience.compact import CompactBatch
from generals_rl.replay import _ARRAY_FIELDS, ReplayError, load
from generals_rl.service import consumer, packing, server, status
from generals_rl.service.compact_packing import pack_compact
from generals_rl.storage import FORMATS, StorageError, open_dataset, open_writer
from generals_rl.storage.formats import format_of_file
from google.protobuf.message import DecodeError

HEIGHT = WIDTH = 6


def _buffer(experiences: int = 300, policy: str = "overwrite") -> ExperienceBuffer:
    buffer = ExperienceBuffer(HEIGHT, WIDTH, 4_096, policy)
    env = VecEnv(
        2,
        2,
        HEIGHT,
        WIDTH,
        seed=1,
        max_ticks=60,
        num_threads=1,
        observations=False,
        action_masks=False,
        buffer=buffer,
    )
    env.reset()
    bot = RandomBot(1)
    while buffer.head < experiences:
        env.step(bot.act(env))
    return buffer


def _everything(buffer: ExperienceBuffer):
    cursor = buffer.cursor(start="oldest")
    try:
        return cursor.read_raw(1 << 20, 0.0)
    finally:
        cursor.close()


@dataclass
class Target:
    name: str
    errors: tuple  # the documented error types

    def setup(self, work: Path, replays: Path | None) -> list[bytes]:
        """Prepares the target in ``work``; returns the seed inputs."""
        raise NotImplementedError

    def one(self, data: bytes) -> None:
        raise NotImplementedError


def lzstring_compress(text: str) -> bytes:
    """LZString's compress over 16-bit units (what .gior holds)."""
    bits: list[int] = []

    def write(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    dictionary: dict[str, int] = {}
    fresh: set[str] = set()  # single characters not yet written
    state = {"enlarge_in": 2, "num_bits": 2}

    def grow() -> None:
        state["enlarge_in"] -= 1
        if state["enlarge_in"] == 0:
            state["enlarge_in"] = 1 << state["num_bits"]
            state["num_bits"] += 1

    def emit(w: str) -> None:
        if w in fresh:
            code = ord(w)
            write(0 if code < 256 else 1, state["num_bits"])
            write(code, 8 if code < 256 else 16)
            grow()
            fresh.remove(w)
        else:
            write(dictionary[w], state["num_bits"])
        grow()

    w = ""
    for c in text:
        if c not in dictionary:
            dictionary[c] = len(dictionary) + 3
            fresh.add(c)
        if w + c in dictionary:
            w += c
        else:
            emit(w)
            dictionary[w + c] = len(dictionary) + 3
            w = c
    if w:
        emit(w)
    write(2, state["num_bits"])
    bits += [0] * (16 - len(bits) % 16)  # the decoder reads a unit past the end code
    return b"".join(
        int("".join(map(str, bits[i : i + 16])), 2).to_bytes(2, "big")
        for i in range(0, len(bits), 16)
    )


class Replay(Target):
    """``generals_rl.replay.load`` of a .gioreplay (JSON) or .gior, then its trace."""

    def setup(self, work, replays):
        self.work = work
        if replays is None:
            return []
        # The shared games cut to their first moves (small inputs mutate faster),
        # as JSON and as .gior (their array form, compressed).
        seeds = []
        for path in sorted(replays.glob("*.gioreplay")):
            fields = json.loads(path.read_bytes())
            fields["moves"], fields["afks"] = fields["moves"][:40], fields["afks"][:2]
            seeds.append(json.dumps(fields).encode())
            values = [
                fields.get(name) for name in _ARRAY_FIELDS[: _ARRAY_FIELDS.index("teams") + 1]
            ]
            for name in ("moves", "afks"):
                values[_ARRAY_FIELDS.index(name)] = [list(event.values()) for event in fields[name]]
            seeds.append(lzstring_compress(json.dumps(values, separators=(",", ":"))))
        return seeds

    def one(self, data):
        path = self.work / ("r.gioreplay" if data[:1] in (b"{", b"[") else "r.gior")
        path.write_bytes(data)
        load(path).trace()


class Dataset(Target):
    """``open_dataset`` over one shard file of each format (and a TFRecord of
    compact views), read as raw, decoded or compact batches. The first byte picks
    the file (bits 0-1 the format, bit 3 the compact-view TFRecord instead) and
    the form (bit 2 decoded, bit 4 compact, else raw)."""

    VARIANTS = [(fmt, fmt, {}) for fmt in FORMATS] + [
        ("tfrecord_compact_views", "tfrecord", {"states": "compact_views"})
    ]

    def setup(self, work, replays):
        self.work = work
        raw = _everything(_buffer())
        seeds, self.names = [], {}
        for name, fmt, options in self.VARIANTS:
            with open_writer(fmt, work / name, **options) as writer:
                writer.write(raw)
            for shard in sorted((work / name).rglob("game_*")):
                if format_of_file(shard.name) is None:
                    continue  # a side file, such as a TFRecord index
                self.names[name] = (
                    "game_0000000000000001_0000" + shard.name[shard.name.index(".") :]
                )
                code = 8 if name not in FORMATS else FORMATS.index(name)
                seeds += [bytes([code | form]) + shard.read_bytes() for form in (0, 4, 16)]
        return seeds

    def one(self, data):
        if not data:
            return
        name = "tfrecord_compact_views" if data[0] & 8 else FORMATS[(data[0] & 3) % len(FORMATS)]
        form = "compact" if data[0] & 16 else "decoded" if data[0] & 4 else "raw"
        path = self.work / self.names[name]
        path.write_bytes(data[1:])
        for batch in open_dataset(path, form=form):
            len(batch)


class _Context:
    """What a unary handler may call on its gRPC context."""

    class Refused(Exception):
        pass

    def abort_with_status(self, status):
        raise self.Refused(status)


class Submit(Target):
    """A ``SubmitExperiencesRequest`` (packed or per experience) through the
    server's checks into a buffer, and a packed batch through the consumer's
    unpacking and decoding (raw boards) or unpacking (compact views)."""

    def setup(self, work, replays):
        self.server = server.ExperienceServer(
            ExperienceBuffer(HEIGHT, WIDTH, 4_096, "overwrite"), "127.0.0.1:0"
        )
        raw = _everything(_buffer())
        import zstandard

        seeds = [
            pb.SubmitExperiencesRequest(
                packed=packing.pack_message(part, compressor)
            ).SerializeToString()
            for part in (raw.select(np.arange(40)), raw.select(np.arange(3)))
            for compressor in (None, zstandard.ZstdCompressor(level=1))
        ]
        experiences = [
            pb.Experience(
                game_id=f"{int(raw.game_id[i]):016x}",
                player_id=int(raw.player_id[i]),
                tick=int(raw.tick[i]),
                action=int(raw.action[i]),
                reward=float(raw.reward[i]),
                raw_state=_board(raw, raw.state_index[i]),
                raw_next_state=_board(raw, raw.next_state_index[i]),
            )
            for i in range(4)
        ]
        seeds.append(pb.SubmitExperiencesRequest(experiences=experiences).SerializeToString())
        for compressor in (None, zstandard.ZstdCompressor(level=1)):  # as a compact stream sends
            views = CompactBatch.from_raw(raw.select(np.arange(20)), army_scale=1000.0)
            packed, payload = pack_compact(views, False, compressor)
            packed.payload = b"".join(bytes(part) for part in payload)
            seeds.append(pb.SubmitExperiencesRequest(packed=packed).SerializeToString())
        return seeds

    def one(self, data):
        try:
            request = pb.SubmitExperiencesRequest.FromString(data)
        except DecodeError:
            return  # gRPC refuses what does not parse before any handler runs
        with contextlib.suppress(status.Abort, _Context.Refused):
            self.server.submissions.submit_or_abort(request, _Context())
        if request.HasField("packed"):
            message = pb.ExperienceBatch(packed=request.packed)
            compact = request.packed.layout == pb.PACKED_LAYOUT_COMPACT
            batch = consumer._batch_of(message, "compact" if compact else "decoded", 64 << 20)
            if batch is not None:
                len(batch)


class CompactStream(Target):
    """A serialized ``ExperienceBatch`` of the compact stream, as a consumer receives
    it: split without copying the payload, its keyframes and deltas rebuilt into the
    indexed views, each row's views gathered, its masks made from them and the batch
    expanded to float observations and masks."""

    def setup(self, work, replays):
        import zstandard
        from generals_rl.service.messages import MessageEncoder
        from generals_rl.service.stats import CollectionClock

        buffer = _buffer()
        raw = _everything(buffer)
        encoder = MessageEncoder(buffer, "fuzz", CollectionClock())
        big = raw.select(np.arange(12))
        big.state_army = np.where(big.state_army > 0, big.state_army + 300, 0).astype(np.int32)
        return [
            encoder.batch_message(
                CompactBatch.from_raw(part, obstacles=obstacles, indexed=True),
                0,
                99,
                compressor,
                obstacles,
            )
            for part in (raw.select(np.arange(30)), big)  # byte and uint16 armies
            for compressor in (None, zstandard.ZstdCompressor(level=1))
            for obstacles in (False, True)
        ]

    def one(self, data):
        try:
            message, payload = consumer._SPLIT_BATCH(data)
        except (DecodeError, ValueError):
            return  # the consumer's stream refuses what does not parse before any unpacking
        batch = consumer._batch_of(message, "compact", 64 << 20, payload)
        if batch is not None and len(batch):
            batch.expand()  # the masks made from the rebuilt views too


def _board(raw, row) -> pb.RawState:
    return pb.RawState(
        height=HEIGHT,
        width=WIDTH,
        kind=raw.state_kind[row].tobytes(),
        owner=raw.state_owner[row].astype("<i2").tobytes(),
        army=raw.state_army[row].astype("<i4").tobytes(),
    )


class BufferFile(Target):
    """``ExperienceBuffer.load`` of a save file; the input is the file without
    its checksum, which is added (else nearly every input would stop there)."""

    def setup(self, work, replays):
        self.path = work / "buffer.grl"
        seeds = []
        for experiences in (1, 200):
            _buffer(experiences, "block").save(self.path)
            seeds.append(self.path.read_bytes()[:-_DIGEST_SIZE])
        return seeds

    def one(self, data):
        self.path.write_bytes(data + _digest(data))
        buffer = ExperienceBuffer.load(self.path, capacity=None)
        _everything(buffer)


TARGETS = {
    "replay": Replay("replay", (ReplayError,)),
    "dataset": Dataset("dataset", (StorageError,)),
    "submit": Submit("submit", (packing.PackedBatchError,)),
    "compact_stream": CompactStream("compact_stream", (packing.PackedBatchError,)),
    "buffer": BufferFile("buffer", (BufferFileError,)),
}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="generals-rl-fuzz-"))
