"""SubmitExperiences: every field validated, bad items rejected with their
reasons (INVALID_ARGUMENT with rich details) while the valid ones land."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from generals_rl._proto import experience_pb2 as pb
from generals_rl._proto import experience_pb2_grpc as pb_grpc
from generals_rl.bots import RandomBot
from generals_rl.experience import RawBatch, format_game_id
from generals_rl.service import ExperienceConsumer, pack_message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from service_support import everything, fill, make_buffer, make_env, serving


def _board(raw: RawBatch, row: int) -> pb.RawState:
    return pb.RawState(
        height=raw.height,
        width=raw.width,
        kind=raw.state_kind[row].tobytes(),
        owner=raw.state_owner[row].astype("<i2").tobytes(),
        army=raw.state_army[row].astype("<i4").tobytes(),
    )


def _experience(raw: RawBatch, i: int, legal: bool = True) -> pb.Experience:
    exp = pb.Experience(
        experience_id=f"e{i}",
        game_id=format_game_id(raw.game_id[i]),
        player_id=int(raw.player_id[i]),
        tick=int(raw.tick[i]),
        action=int(raw.action[i]),
        reward=float(raw.reward[i]),
        done=bool(raw.terminated[i] or raw.truncated[i]),
        terminated=bool(raw.terminated[i]),
        truncated=bool(raw.truncated[i]),
        raw_state=_board(raw, raw.state_index[i]),
        raw_next_state=_board(raw, raw.next_state_index[i]),
    )
    if legal:
        exp.legal = bool(raw.legal[i])
    return exp


@pytest.fixture(scope="module")
def source() -> RawBatch:
    """Real experiences, including illegal moves (random indices mixed into a
    bot's play, so the engine flags some) and finished games."""
    buffer = make_buffer()
    env = make_env(buffer, num_envs=8, max_ticks=150)
    env.reset()
    bot, rng = RandomBot(3), np.random.default_rng(3)
    while buffer.head < 3_000:
        actions = bot.act(env)
        scramble = rng.random(actions.shape) < 0.3
        actions[scramble] = rng.integers(-1, env.num_actions, size=int(scramble.sum()))
        env.step(actions)
    raw = everything(buffer)
    picked = np.concatenate(
        [
            np.flatnonzero(~raw.legal)[:10],
            np.flatnonzero(raw.terminated | raw.truncated)[:5],
            np.arange(0, len(raw), 53)[:40],
        ]
    )
    return raw.select(np.unique(picked))


def _stream_back(address: str) -> RawBatch:
    with ExperienceConsumer(address) as consumer:
        return RawBatch.concat(
            list(consumer.stream_experiences(follow=False, start="oldest", decode=False))
        )


def _assert_same_experiences(got: RawBatch, want: RawBatch) -> None:
    for name in (
        "game_id",
        "player_id",
        "tick",
        "action",
        "reward",
        "legal",
        "terminated",
        "truncated",
    ):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for side in ("state_index", "next_state_index"):
        for table in ("state_kind", "state_owner", "state_army"):
            np.testing.assert_array_equal(
                getattr(got, table)[getattr(got, side)],
                getattr(want, table)[getattr(want, side)],
                err_msg=table,
            )


def test_malformed_submissions_are_rejected_with_reasons_while_valid_ones_land(source):
    n = len(source)
    assert (~source.legal[1::2]).sum() >= 3  # some illegal moves get their flag derived
    experiences = [
        _experience(source, i, legal=i % 2 == 0) for i in range(n)
    ]  # odd rows: legal derived
    bad = {
        3: ("game_id", "is not 16 hex digits"),
        7: ("player_id", "is not a player"),
        11: ("raw_state.kind", "holds 5 bytes"),
        13: ("raw_state", "cannot be stored losslessly"),
        17: ("reward", "not a finite number"),
        19: ("metadata", "is not stored"),
        23: ("legal", "is true but action 800 is not -1"),
        29: ("raw_next_state.owner", "owner 20"),
        31: ("done", "is false while terminated"),
        37: ("raw_next_state", "the server's buffer holds 10x10"),
    }
    experiences[3].game_id = "not-a-game"
    experiences[7].player_id = 17
    experiences[11].raw_state.kind = b"\x00" * 5
    experiences[13].ClearField("raw_state")
    experiences[13].state.shape[:] = [9, 10, 10]
    experiences[13].state.data[:] = [0.0] * 900
    experiences[17].reward = float("nan")
    experiences[19].metadata["source"] = "elsewhere"
    experiences[23].action, experiences[23].legal = 10 * 10 * 8, True
    experiences[25].action, experiences[25].legal = (
        -7,
        False,
    )  # recorded as an illegal no-op: accepted
    experiences[27].action = 10_000  # legal derived: false
    owner = np.frombuffer(experiences[29].raw_next_state.owner, "<i2").copy()
    owner[5] = 20
    experiences[29].raw_next_state.owner = owner.tobytes()
    experiences[31].terminated, experiences[31].done = True, False
    experiences[37].raw_next_state.height = 12
    buffer = make_buffer()
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.SubmitExperiences(pb.SubmitExperiencesRequest(experiences=experiences), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"10 of {n} experiences rejected, {n - 10} accepted" in error.value.details()
        status = rpc_status.from_call(error.value)
        bad_request, response = error_details_pb2.BadRequest(), pb.SubmitExperiencesResponse()
        assert status.details[0].Unpack(bad_request) and status.details[1].Unpack(response)
        assert (response.accepted_count, response.rejected_count) == (n - 10, 10)
        assert response.first_sequence == 0 and response.buffer_id == server.buffer_id
        violations = {v.field: v.description for v in bad_request.field_violations}
        shown = sorted(bad)[: len(violations)]  # the status details the first few
        assert len(violations) == 8
        for index in shown:
            field, words = bad[index]
            assert words in violations[f"experiences[{index}].{field}"], (index, violations)
        assert [r.experience_id for r in response.rejections] == [f"e{i}" for i in shown]
        got = _stream_back(server.address)
    valid = np.setdiff1d(np.arange(n), list(bad))
    np.testing.assert_array_equal(got.sequence, np.arange(n - 10))
    want = source.select(valid)
    for row, action in ((25, -7), (27, 10_000)):
        at = np.searchsorted(valid, row)
        want.action[at], want.legal[at] = action, False
    _assert_same_experiences(got, want)  # including the derived legal flags


def test_a_valid_submission_is_accepted_whole(source):
    buffer = make_buffer()
    fill(buffer, 100)
    head = buffer.head
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        request = pb.SubmitExperiencesRequest(
            experiences=[_experience(source, i) for i in range(len(source))]
        )
        response = stub.SubmitExperiences(request, timeout=30)
        assert (response.accepted_count, response.rejected_count) == (len(source), 0)
        assert response.first_sequence == head
        got = _stream_back(server.address)
    _assert_same_experiences(got.select(got.sequence >= head), source)


def test_packed_submissions_land_whole_or_are_refused_with_the_reason(source):
    buffer = make_buffer()
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        response = stub.SubmitExperiences(
            pb.SubmitExperiencesRequest(packed=pack_message(source)), timeout=30
        )
        assert response.accepted_count == len(source)
        _assert_same_experiences(_stream_back(server.address), source)

        def refused(packed=None, experiences=(), code=grpc.StatusCode.INVALID_ARGUMENT) -> str:
            with pytest.raises(grpc.RpcError) as error:
                stub.SubmitExperiences(
                    pb.SubmitExperiencesRequest(packed=packed, experiences=experiences), timeout=30
                )
            assert error.value.code() == code
            return error.value.details()

        missing = pack_message(source)
        del missing.columns[3]
        assert "column 'tick' is missing" in refused(missing)
        truncated = pack_message(source)
        truncated.payload = truncated.payload[:-10]
        assert "payload holds" in refused(truncated)
        out_of_range = source.select(np.arange(len(source)))
        out_of_range.state_index[0] = 10_000
        assert "state_index refers to a state outside" in refused(pack_message(out_of_range))
        wrong_dtype = pack_message(source)
        wrong_dtype.columns[0].dtype = pb.DTYPE_FLOAT64
        assert "column 'sequence' has dtype DTYPE_FLOAT64" in refused(wrong_dtype)
        bad_zstd = pack_message(source)
        bad_zstd.compression = pb.COMPRESSION_ZSTD
        assert "not a valid zstd frame" in refused(bad_zstd)
        other_board = RawBatch(
            **{
                **source.to_dict(),
                "state_kind": source.state_kind[:, :8, :8],
                "state_owner": source.state_owner[:, :8, :8],
                "state_army": source.state_army[:, :8, :8],
            }
        )
        assert "8x8" in refused(pack_message(other_board))
        assert "not both" in refused(pack_message(source), [_experience(source, 0)])
        assert buffer.head == len(source)  # nothing refused landed


def test_oversized_requests_are_refused(source):
    buffer = make_buffer(capacity=16)
    with serving(buffer) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.ExperienceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.SubmitExperiences(
                pb.SubmitExperiencesRequest(
                    experiences=[_experience(source, i % len(source)) for i in range(20)]
                ),
                timeout=30,
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "20 in one request, at most 16" in error.value.details()
    with (
        serving(make_buffer(), max_message_bytes=1 << 20) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.ExperienceServiceStub(channel)
        big = [_experience(source, i % len(source)) for i in range(2_000)]  # about 2.8 MB
        with pytest.raises(grpc.RpcError) as error:
            stub.SubmitExperiences(pb.SubmitExperiencesRequest(experiences=big), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
