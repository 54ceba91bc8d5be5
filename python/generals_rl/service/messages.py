"""The two encoders of what streams send: ``pb.ExperienceBatch`` messages (the
fast path: a header serialized by protobuf, then the packed columns, raw boards
or compact views, written around the buffers they are in) and one
``Experience`` message per row (the simple path: decoded tensors, or raw
states)."""

from __future__ import annotations

from .._proto import experience_pb2 as pb
from ..experience import ExperienceBuffer, RawBatch, format_game_id
from ..experience.compact import CompactBatch
from ..vec_env import OBSERVATION_CHANNELS
from . import packing
from .compact_packing import pack_compact
from .stats import CollectionClock
from .wire import LengthDelimitedField

_PACKED = LengthDelimitedField(pb.ExperienceBatch, "packed")
_PAYLOAD = LengthDelimitedField(pb.PackedBatch, "payload")
_RAW_STATE = LengthDelimitedField(pb.Experience, "raw_state")
_RAW_NEXT_STATE = LengthDelimitedField(pb.Experience, "raw_next_state")
_STATE = LengthDelimitedField(pb.Experience, "state")
_NEXT_STATE = LengthDelimitedField(pb.Experience, "next_state")
_ACTION_MASK = LengthDelimitedField(pb.Experience, "action_mask")
_TENSOR_DATA = LengthDelimitedField(pb.DecodedState, "data")


class MessageEncoder:
    """Serializes what a stream sends from ``buffer``, stamped with its
    ``buffer_id`` and the collection times of ``clock``."""

    def __init__(self, buffer: ExperienceBuffer, buffer_id: str, clock: CollectionClock) -> None:
        self.buffer = buffer
        self.buffer_id = buffer_id
        self.clock = clock

    def batch_header(
        self, raw: RawBatch | CompactBatch, from_sequence: int, next_sequence: int
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

    def batch_message(
        self,
        batch: RawBatch | CompactBatch,
        from_sequence: int,
        next_sequence: int,
        compressor=None,
        obstacles: bool = False,
    ) -> bytes:
        """The serialized ``pb.ExperienceBatch``: the header by protobuf, then the
        packed field written around the column buffers (one copy of the data). A
        ``RawBatch`` is sent as raw boards; an indexed ``CompactBatch`` (a cursor's
        ``read_compact(indexed=True)``) as its views, keyframes and deltas, made with
        the observation option ``obstacles``."""
        header = self.batch_header(batch, from_sequence, next_sequence).SerializeToString()
        if isinstance(batch, CompactBatch):
            packed, payload = pack_compact(batch, obstacles, compressor)
        else:
            packed, payload = packing.pack(batch, compressor)
        packed_fields = [packed.SerializeToString(), *_PAYLOAD.parts(payload)]
        return b"".join([header, *_PACKED.parts(packed_fields)])

    def experience_messages(self, raw: RawBatch, raw_states: bool, missed_before: int):
        """One serialized ``Experience`` per row."""
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
            strict=True,
        )
        if raw_states:
            boards = [
                pb.RawState(
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
            shape = pb.DecodedState(shape=[len(OBSERVATION_CHANNELS), h, w]).SerializeToString()
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
                tick=tick,
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
            if raw_states:
                parts += _RAW_STATE.parts([boards[raw.state_index[i]]])
                parts += _RAW_NEXT_STATE.parts([boards[raw.next_state_index[i]]])
            else:
                for field, tensor in (
                    (_STATE, decoded.state[i]),
                    (_NEXT_STATE, decoded.next_state[i]),
                ):
                    parts += field.parts([shape, *_TENSOR_DATA.parts([tensor.astype("<f4").data])])
                parts += _ACTION_MASK.parts([decoded.action_mask[i].view("u1").data])
            yield b"".join(parts)
