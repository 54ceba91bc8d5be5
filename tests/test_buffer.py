"""The experience buffer's API: what is appended reads back unchanged through
cursors (raw and decoded), waiting and closing, start positions, the sampler,
save/load and damaged files, statistics, game ids and input errors."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from generals_rl import ExperienceBuffer, VecEnv, _core
from generals_rl.experience import BufferFileError, RawBatch, format_game_id, parse_game_id
from generals_rl.experience import batch as batch_columns
from generals_rl.storage import npz
from generals_rl.vec_env import encode_observation
from test_experience import bits, read_all, small_env

SIDE = 8


def synthetic_batch(
    n: int,
    game_id: int = 1,
    players: int = 2,
    first_tick: int = 0,
    seed: int = 0,
    max_army: int = 500,
    side: int = SIDE,
) -> RawBatch:
    """``n`` experiences of one game on random boards: the players take turns at
    each tick; a tick's state is one board and its next_state the next tick's."""
    rng = np.random.default_rng(seed)
    ticks = -(-n // players)
    shape = (ticks + 1, side, side)
    k = np.arange(n)
    row = k // players
    return RawBatch(
        sequence=np.zeros(n, np.uint64),
        game_id=np.full(n, game_id, np.uint64),
        player_id=(k % players).astype(np.int32),
        tick=(first_tick + row).astype(np.int32),
        action=(k - 1).astype(np.int32),
        reward=(k * 0.25 - 3).astype(np.float32),
        legal=k % 3 != 0,
        terminated=k == n - 1,
        truncated=np.zeros(n, bool),
        state_index=row.astype(np.int32),
        next_state_index=(row + 1).astype(np.int32),
        state_kind=rng.integers(0, 4, shape, dtype=np.uint8),
        state_owner=rng.integers(-1, players, shape, dtype=np.int16),
        state_army=rng.integers(0, max_army, shape, dtype=np.int32),
    )


# Every record column but the sequence number, which some comparisons leave out.
RECORD_COLUMNS = tuple(name for name in batch_columns.RECORD_COLUMNS if name != "sequence")


def assert_same_experiences(got: RawBatch, expected: RawBatch, check_sequence: bool = True) -> None:
    """Same rows: record columns and the boards each row's state and next_state refer to."""
    assert len(got) == len(expected)
    names = RECORD_COLUMNS + (("sequence",) if check_sequence else ())
    for name in names:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    for table in ("state_kind", "state_owner", "state_army"):
        for index in ("state_index", "next_state_index"):
            np.testing.assert_array_equal(
                getattr(got, table)[getattr(got, index)],
                getattr(expected, table)[getattr(expected, index)],
                err_msg=f"{table}[{index}]",
            )


def filled(
    capacity: int = 1 << 12, batches: int = 3, size: int = 50, policy: str = "overwrite", **kwargs
) -> tuple[ExperienceBuffer, RawBatch]:
    """A buffer with ``batches`` synthetic batches of different games appended, and
    those batches concatenated (with the sequence numbers they got)."""
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=capacity, policy=policy, **kwargs)
    appended = []
    for g in range(batches):
        batch = synthetic_batch(size, game_id=100 + g, seed=g, first_tick=g)
        batch.sequence = buffer.append_raw(batch) + np.arange(size, dtype=np.uint64)
        appended.append(batch)
    return buffer, RawBatch.concat(appended)


# ---------------------------------------------------------------------------
# reading back


def test_appended_experiences_read_back_unchanged_in_order():
    buffer, appended = filled()
    batch = read_all(buffer.cursor(), raw=True, max_items=33)
    np.testing.assert_array_equal(appended.sequence, np.arange(150))
    assert_same_experiences(batch, appended)
    assert (batch.missed, batch.next_sequence) == (0, 150)
    # each distinct board of a batch is stored once, however many rows share it
    one = buffer.cursor().read_raw(40)
    assert len(one.state_kind) == 21


def test_raw_reads_decode_to_the_decoded_reads():
    buffer, _ = filled()
    raw = read_all(buffer.cursor(), raw=True, max_items=64)
    decoded = read_all(buffer.cursor(), max_items=64)
    for other in (raw.decode(), buffer.decode(raw)):
        for name in ("sequence", *RECORD_COLUMNS, "action_mask"):
            np.testing.assert_array_equal(
                getattr(other, name), getattr(decoded, name), err_msg=name
            )
        np.testing.assert_array_equal(bits(other.state), bits(decoded.state))
        np.testing.assert_array_equal(bits(other.next_state), bits(decoded.next_state))


def test_record_reads_carry_every_record_column_and_no_boards():
    buffer, _ = filled()
    raw = buffer.cursor().read_raw(10_000)
    records = buffer.cursor().read_records(10_000)
    assert len(records) == len(raw) > 0
    for name in RECORD_COLUMNS:
        np.testing.assert_array_equal(getattr(records, name), getattr(raw, name), err_msg=name)
    assert (records.state_index == -1).all() and (records.next_state_index == -1).all()
    assert len(records.state_kind) == len(records.state_owner) == len(records.state_army) == 0
    assert (records.missed, records.next_sequence) == (raw.missed, raw.next_sequence)


def test_decoded_states_are_the_observation_encoding_of_the_boards():
    buffer, appended = filled(army_scaling="log", army_scale=300.0)
    decoded = read_all(buffer.cursor())
    raw = read_all(buffer.cursor(), raw=True)
    np.testing.assert_array_equal(bits(buffer.decode(raw).state), bits(decoded.state))
    for row in range(0, len(decoded), 7):
        s, ns, player = (
            appended.state_index[row],
            appended.next_state_index[row],
            appended.player_id[row],
        )
        obs, mask = encode_observation(
            appended.state_kind[s],
            appended.state_owner[s],
            appended.state_army[s],
            player,
            "log",
            300.0,
        )
        next_obs, _ = encode_observation(
            appended.state_kind[ns],
            appended.state_owner[ns],
            appended.state_army[ns],
            player,
            "log",
            300.0,
        )
        np.testing.assert_array_equal(bits(decoded.state[row]), bits(obs))
        np.testing.assert_array_equal(decoded.action_mask[row], mask)
        np.testing.assert_array_equal(bits(decoded.next_state[row]), bits(next_obs))


def test_armies_beyond_16_bits_read_back_exactly():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=64, policy="overwrite", state_capacity=40)
    for g in range(6):  # wraps both rings, replacing wide boards by narrow ones and back
        batch = synthetic_batch(24, game_id=g, seed=g, max_army=200_000 if g % 2 else 500)
        batch.sequence = buffer.append_raw(batch) + np.arange(24, dtype=np.uint64)
    assert batch.state_army.max() > 65535
    assert_same_experiences(read_all(buffer.cursor(start=buffer.head - 24), raw=True), batch)


def test_batches_kept_by_the_caller_are_not_overwritten_by_later_reads():
    buffer, _ = filled(batches=6, size=200)
    cursor = buffer.cursor()
    kept, kept_raw = cursor.read(300), cursor.read_raw(300)
    copies = [
        (name, getattr(kept, name).copy())
        for name in ("state", "next_state", "action_mask", "tick")
    ]
    raw_copies = [
        (name, getattr(kept_raw, name).copy()) for name in ("state_army", "state_index", "sequence")
    ]
    view = kept.state[5:10]  # a view keeps its batch's memory too
    view_copy = view.copy()
    del kept_raw.state_owner  # dropping some arrays of a batch returns only their memory
    for _ in range(3):  # later reads into recycled memory
        read_all(buffer.cursor(), max_items=300)
        read_all(buffer.cursor(), raw=True, max_items=300)
    for name, copy in copies:
        np.testing.assert_array_equal(getattr(kept, name), copy, err_msg=name)
    for name, copy in raw_copies:
        np.testing.assert_array_equal(getattr(kept_raw, name), copy, err_msg=name)
    np.testing.assert_array_equal(view, view_copy)


def test_raw_batch_select_keeps_rows_and_only_their_boards():
    _, appended = filled()
    rows = np.zeros(len(appended), bool)
    rows[[3, 4, 60, 149]] = True
    picked = appended.select(rows)
    assert len(picked) == 4 and len(picked.state_kind) <= 8
    np.testing.assert_array_equal(picked.sequence, appended.sequence[rows])
    np.testing.assert_array_equal(bits(picked.decode().state), bits(appended.decode().state[rows]))


# ---------------------------------------------------------------------------
# waiting, closing, start positions


def test_read_waits_for_experiences_up_to_its_timeout():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=256)
    cursor = buffer.cursor()
    started = time.monotonic()
    assert len(cursor.read(10, timeout=0.2)) == 0
    assert 0.2 <= time.monotonic() - started < 2

    timer = threading.Timer(0.1, lambda: buffer.append_raw(synthetic_batch(6)))
    timer.start()
    started = time.monotonic()
    batch = cursor.read_raw(10, timeout=10)
    timer.join()
    assert len(batch) == 6 and time.monotonic() - started < 5


def test_a_closed_cursor_returns_what_is_left_without_waiting():
    buffer, _ = filled(batches=1)
    cursor = buffer.cursor()
    cursor.close()
    started = time.monotonic()
    assert len(cursor.read_raw(1000, timeout=10)) == 50
    assert len(cursor.read_raw(1000, timeout=10)) == 0
    assert time.monotonic() - started < 2 and cursor.closed


def test_cursor_start_positions():
    buffer, _ = filled(capacity=100, batches=3)  # 150 appended: 0..49 overwritten
    assert (buffer.oldest, buffer.head) == (50, 150)
    np.testing.assert_array_equal(read_all(buffer.cursor(), raw=True).sequence, np.arange(50, 150))
    np.testing.assert_array_equal(
        read_all(buffer.cursor(start=120), raw=True).sequence, np.arange(120, 150)
    )
    newest = buffer.cursor(start="newest")
    assert len(newest.read_raw(10)) == 0 and newest.position == 150
    buffer.append_raw(synthetic_batch(5))
    np.testing.assert_array_equal(read_all(newest, raw=True).sequence, np.arange(150, 155))
    # a start before the oldest resident is reported as missed, and reading resumes at the oldest
    behind = buffer.cursor(start=10)
    batch = behind.read_raw(5)
    assert batch.missed == buffer.oldest - 10
    np.testing.assert_array_equal(batch.sequence, np.arange(buffer.oldest, buffer.oldest + 5))


def test_overwrite_reports_each_gap_once_and_exactly():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=100, policy="overwrite")
    cursor = buffer.cursor()
    missed_total = 0
    for round_ in range(4):
        for g in range(3):
            buffer.append_raw(synthetic_batch(40, game_id=g, seed=g))
        position = cursor.position
        batch = read_all(cursor, raw=True, max_items=30)
        assert batch.missed == buffer.oldest - position, f"round {round_}"
        np.testing.assert_array_equal(batch.sequence, np.arange(buffer.oldest, buffer.head))
        missed_total += batch.missed
    assert cursor.total_missed == missed_total


def test_block_policy_without_open_cursors_keeps_the_newest():
    buffer, _ = filled(capacity=100, batches=3, policy="block")
    stats = buffer.stats()
    assert (stats["resident"], stats["total_overwritten"]) == (100, 50)
    np.testing.assert_array_equal(read_all(buffer.cursor(), raw=True).sequence, np.arange(50, 150))


# ---------------------------------------------------------------------------
# sampling


def test_sampler_draws_only_resident_experiences_uniformly():
    buffer, appended = filled(
        capacity=1000, batches=6, size=500
    )  # 3000 appended, 2000..2999 resident
    sample = buffer.sample_raw(20_000, seed=1)
    assert len(sample) == 20_000
    assert sample.sequence.min() >= 2000 and sample.sequence.max() < 3000
    counts = np.bincount((sample.sequence - 2000) // 100, minlength=10)
    np.testing.assert_allclose(counts, 2000, rtol=0.1)  # 10 bins of 2000 expected, sd about 42
    assert len(np.unique(sample.sequence)) > 990
    rows = sample.sequence.astype(np.int64)
    assert_same_experiences(sample, appended.select(rows))

    decoded = buffer.sample(500, seed=2)
    again = buffer.sample(500, seed=2)
    np.testing.assert_array_equal(decoded.sequence, again.sequence)
    expected = appended.select(decoded.sequence.astype(np.int64)).decode()
    np.testing.assert_array_equal(bits(decoded.state), bits(expected.state))
    np.testing.assert_array_equal(decoded.action_mask, expected.action_mask)


def test_sampling_an_empty_buffer_gives_an_empty_batch():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=10)
    assert len(buffer.sample(5, seed=0)) == 0 and len(buffer.sample_raw(5)) == 0


# ---------------------------------------------------------------------------
# save and load


def test_save_load_round_trip_continues_sequence_numbers(tmp_path):
    buffer, _ = filled(capacity=120, batches=4, size=50, army_scaling="log", army_scale=64.0)
    buffer.append_raw(synthetic_batch(30, game_id=7, seed=7, max_army=300_000))  # wide armies too
    path = tmp_path / "buffer.grlb"
    buffer.save(path)
    loaded = ExperienceBuffer.load(path)

    for name in ("height", "width", "capacity", "state_capacity", "policy", "head", "oldest"):
        assert getattr(loaded, name) == getattr(buffer, name), name
    original = read_all(buffer.cursor(), raw=True)
    restored = read_all(loaded.cursor(), raw=True)
    assert_same_experiences(restored, original)
    np.testing.assert_array_equal(
        bits(read_all(loaded.cursor()).state), bits(buffer.decode(original).state)
    )
    stats, loaded_stats = buffer.stats(), loaded.stats()
    for name in ("resident", "total_appended", "total_overwritten"):
        assert loaded_stats[name] == stats[name], name

    first = loaded.append_raw(synthetic_batch(10, game_id=8))
    assert first == buffer.head
    np.testing.assert_array_equal(
        read_all(loaded.cursor(start=first), raw=True).sequence, first + np.arange(10)
    )


def test_load_into_a_larger_buffer_keeps_everything(tmp_path):
    buffer, _ = filled(capacity=100, batches=3)
    buffer.save(tmp_path / "b.grlb")
    loaded = ExperienceBuffer.load(tmp_path / "b.grlb", capacity=1000)
    assert (loaded.capacity, loaded.oldest, loaded.head) == (1000, 50, 150)
    assert loaded.stats()["resident"] == 100
    assert_same_experiences(
        read_all(loaded.cursor(), raw=True), read_all(buffer.cursor(), raw=True)
    )
    assert loaded.sample_raw(200, seed=0).sequence.min() >= 50
    with pytest.raises(ValueError, match="capacity"):
        ExperienceBuffer.load(tmp_path / "b.grlb", capacity=50)


def test_save_load_of_an_empty_buffer(tmp_path):
    ExperienceBuffer(SIDE, SIDE, capacity=10).save(tmp_path / "empty.grlb")
    loaded = ExperienceBuffer.load(tmp_path / "empty.grlb")
    assert loaded.head == 0 and len(read_all(loaded.cursor(), raw=True)) == 0


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def _header_digit(data: bytes) -> int:
    """The offset of the first digit of next_sequence in the header."""
    return data.index(b'"next_sequence": ') + len(b'"next_sequence": ')


def _reframed(data: bytes, header: dict, payload: bytes | None = None) -> bytes:
    """A file with a new header (and payload) and a valid checksum: damage the
    checksum cannot see."""
    import hashlib

    header_bytes = json.dumps(header).encode()
    _, _, old_len = struct.unpack_from("<8sII", data)
    body = (
        struct.pack("<8sII", data[:8], 2, len(header_bytes))
        + header_bytes
        + (data[16 + old_len : -32] if payload is None else payload)
    )
    return body + hashlib.blake2b(body, digest_size=32).digest()


def _forged(**fields):
    """Damage: the file's own header with ``fields`` replaced."""

    def forge(data: bytes) -> bytes:
        _, _, length = struct.unpack_from("<8sII", data)
        return _reframed(data, {**json.loads(data[16 : 16 + length]), **fields})

    return forge


def _forged_column(index: int, dtype: str | None = None, shape: list | None = None):
    """Damage: one entry of the header's column list replaced."""

    def forge(data: bytes) -> bytes:
        _, _, length = struct.unpack_from("<8sII", data)
        header = json.loads(data[16 : 16 + length])
        name, old_dtype, old_shape = header["columns"][index]
        header["columns"][index] = [name, dtype or old_dtype, old_shape if shape is None else shape]
        return _reframed(data, header)

    return forge


def _bomb(data: bytes) -> bytes:
    """Damage: a 16-byte zstd frame claiming 1 TiB of content (inflating it
    raised MemoryError)."""
    _, _, length = struct.unpack_from("<8sII", data)
    # magic; single segment with an 8-byte content size; one empty last raw block
    frame = struct.pack("<IBQ", 0xFD2FB528, 0xE0, 1 << 40) + bytes([1, 0, 0])
    return _reframed(data, json.loads(data[16 : 16 + length]), frame)


DAMAGE = {
    "flipped payload byte": (lambda d: _flip(d, len(d) - 40), "checksum mismatch"),
    "flipped header byte": (lambda d: _flip(d, _header_digit(d)), "checksum mismatch"),
    "flipped checksum byte": (lambda d: _flip(d, len(d) - 1), "checksum mismatch"),
    "truncated": (lambda d: d[: len(d) // 2], "damaged or truncated"),
    "wrong magic": (lambda d: b"NOTMAGIC" + d[8:], "not a generals-rl experience buffer file"),
    "wrong version": (
        lambda d: d[:8] + struct.pack("<I", 99) + d[12:],
        "version 99 is not supported",
    ),
    "garbage": (
        lambda d: bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
        "not a generals",
    ),
    "empty": (lambda d: b"", "not a generals-rl experience buffer file"),
    "header without fields": (lambda d: _reframed(d, {"height": 8}), "malformed buffer file"),
    "header not an object": (lambda d: _reframed(d, [8]), "the header is not an object"),
    "next_sequence near 2^64": (_forged(next_sequence=2**64 - 2), "beyond the limit"),
    "next_sequence beyond 2^64": (_forged(next_sequence=2**64), r"next_sequence: \d+ is outside"),
    "negative next_sequence": (_forged(next_sequence=-1), "next_sequence: -1 is outside"),
    "huge capacity": (_forged(capacity=2**40), "capacity is too large"),
    "capacity beyond memory": (_forged(capacity=2**34), "more than this machine's"),
    "huge state_capacity": (_forged(state_capacity=2**40), "state_capacity is too large"),
    "board too large": (_forged(height=300), "must be in 2..256"),
    "height not a number": (_forged(height="8"), "malformed buffer file"),
    "unknown army scaling": (
        _forged(army_scaling="Log"),
        "army_scaling: expected 'linear' or 'log'",
    ),
    "object column": (_forged_column(0, dtype="|O"), "column sequence: dtype '|O'"),
    "huge column": (_forged_column(0, shape=[2**40]), "column sequence: shape .* capacity"),
    "negative column": (_forged_column(0, shape=[-1]), "does not fit"),
    "state table of another board": (_forged_column(-1, shape=[1, 9, 9]), "boards of 8x8"),
    "missing column": (_forged(columns=[]), "columns: expected"),
    "compression bomb": (_bomb, "payload size does not match its columns"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_or_foreign_files_are_rejected_with_a_clear_error(tmp_path, damage):
    buffer, _ = filled(batches=2)
    good = tmp_path / "good.grlb"
    buffer.save(good)
    ExperienceBuffer.load(good)  # intact, it loads
    corrupt, message = DAMAGE[damage]
    bad = tmp_path / "bad.grlb"
    bad.write_bytes(corrupt(good.read_bytes()))
    with pytest.raises(BufferFileError, match=message) as error:
        ExperienceBuffer.load(bad)
    assert str(bad) in str(error.value)


# ---------------------------------------------------------------------------
# statistics


def test_stats_count_what_is_held_and_how_far_each_cursor_lags():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=100)
    stats = buffer.stats()
    assert (
        stats["capacity"],
        stats["resident"],
        stats["total_appended"],
        stats["total_overwritten"],
    ) == (100, 0, 0, 0)
    assert (
        stats["cursor_lag"] == []
        and stats["bytes_per_experience"] is None
        and stats["bytes_used"] > 0
    )
    behind, ahead, closed = buffer.cursor(), buffer.cursor(), buffer.cursor()
    for g in range(3):
        buffer.append_raw(synthetic_batch(30, game_id=g))
    ahead.read_raw(70)
    closed.close()
    stats = buffer.stats()
    assert (stats["resident"], stats["total_appended"], stats["total_overwritten"]) == (90, 90, 0)
    assert sorted(stats["cursor_lag"]) == [20, 90] == sorted([ahead.lag, behind.lag])
    behind.close()
    ahead.close()
    buffer.append_raw(synthetic_batch(60))
    stats = buffer.stats()
    assert (stats["resident"], stats["total_appended"], stats["total_overwritten"]) == (
        100,
        150,
        50,
    )
    assert stats["bytes_per_experience"] == stats["bytes_used"] / 100


def test_resident_memory_is_under_1kb_per_experience_at_20x20():
    buffer = ExperienceBuffer(20, 20, capacity=1 << 14, policy="overwrite")
    env = VecEnv(
        256, players=2, seed=1, num_threads=2, buffer=buffer, observations=False, action_masks=False
    )
    actions = np.full((256, 2), -1, np.int32)
    while buffer.head < 2 * buffer.capacity:
        env.step(actions)
    stats = buffer.stats()
    assert stats["resident"] == buffer.capacity
    assert 40 * buffer.capacity < stats["bytes_used"] <= 1024 * stats["resident"]
    assert len(read_all(buffer.cursor(), raw=True)) == buffer.capacity  # the state ring keeps up


# ---------------------------------------------------------------------------
# game ids


def test_game_ids_are_unique_within_and_across_processes():
    script = (
        "from generals_rl import VecEnv\n"
        "env = VecEnv(64, height=8, width=8, num_threads=1, max_ticks=0)\n"
        "print(' '.join(str(int(g)) for g in env.reset()[1]['game_id']))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
        for _ in range(2)
    ]
    theirs = [set(map(int, run.stdout.split())) for run in runs]
    env = small_env(num_envs=64)
    ours = {int(g) for g in env.reset()[1]["game_id"]} | {int(g) for g in env.reset()[1]["game_id"]}
    assert len(ours) == 128 and all(len(ids) == 64 for ids in theirs)
    assert not (ours & theirs[0]) and not (ours & theirs[1]) and not (theirs[0] & theirs[1])


@pytest.mark.parametrize("game_id", [0, 1, 0xDEADBEEF, 2**63, 2**64 - 1])
def test_game_id_string_form_round_trips(game_id):
    text = format_game_id(game_id)
    assert len(text) == 16 and text == text.lower()
    assert parse_game_id(text) == game_id
    assert parse_game_id(text.upper()) == game_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "123",
        "xyz0000000000000",
        "00000000000000001",
        "0x00000000000001",
        "-000000000000001",
        " 00000000000001 ",
        "0000_00000000001",
        None,
    ],
)
def test_malformed_game_id_strings_are_rejected(text):
    with pytest.raises(ValueError, match="game_id"):
        parse_game_id(text)


# ---------------------------------------------------------------------------
# input errors


def _with(**changes):
    def change(batch: RawBatch) -> RawBatch:
        for name, value in changes.items():
            value = value(batch) if callable(value) else value
            setattr(batch, name, value)
        return batch

    return change


def _set(table: str, value: int):
    def change(batch: RawBatch) -> RawBatch:
        getattr(batch, table)[1, 2, 3] = value
        return batch

    return change


BAD_BATCHES = {
    "other board size": (
        lambda b: synthetic_batch(10, side=6),
        "batch board is 6x6, the buffer's is 8x8",
    ),
    "short column": (_with(reward=lambda b: b.reward[:-1]), "reward: expected 10 elements, got 9"),
    "state index": (
        _with(state_index=lambda b: b.state_index + 50),
        "row 0: state_index refers to a state outside",
    ),
    "next state index": (
        _with(next_state_index=lambda b: b.next_state_index * 0 - 1),
        "row 0: next_state_index refers to a state outside",
    ),
    "player": (_with(player_id=lambda b: b.player_id + 15), "row 1: player_id 16 outside 0..15"),
    "kind": (_set("state_kind", 7), "state 1 tile 19: invalid kind 7"),
    "owner": (_set("state_owner", 20), "state 1 tile 19: invalid owner 20"),
    "army": (_set("state_army", -5), "state 1 tile 19: invalid army -5"),
    "tick type": (_with(tick=lambda b: b.tick + 0.5), "tick: expected integers"),
    "too many states": (lambda b: synthetic_batch(200), "more than the buffer's state_capacity 60"),
    "too many experiences": (
        lambda b: synthetic_batch(120, players=4),
        "120 experiences, more than the buffer's capacity 100",
    ),
}


@pytest.mark.parametrize(
    "height, width, message",
    [
        (1, 1025, "batch: size must be between 1x1 and 1024x1024, got 1x1025"),
        (1, 1100, "got 1x1100"),
        (2, 0, "got 2x0"),
    ],
)
def test_decoding_boards_beyond_the_size_limit_is_refused(height, width, message):
    # What a dataset reader does with a crafted shard (open_dataset(..., form="decoded")):
    # 1100 wide overflowed a stack row (SIGSEGV), 1025-1090 gave wrong tensors, 0 divided by zero.
    shard = io.BytesIO()
    batch = synthetic_batch(2).to_dict()
    for name in batch_columns.STATE_TABLES:
        batch[name] = np.zeros((2, height, width), dtype=batch_columns.STATE_TABLES[name])
    meta = {
        "format_version": npz.FORMAT_VERSION,
        "states": "compact",
        "height": height,
        "width": width,
    }
    np.savez(shard, _meta=np.array(json.dumps(meta)), **batch)
    (read,) = npz.NpzFormat.read(shard.getvalue())
    with pytest.raises(ValueError, match=message):
        read.decode()


def test_decoding_with_an_unknown_army_scaling_is_refused():
    # Any name but "log" used to decode as linear.
    with pytest.raises(ValueError, match="army_scaling: expected 'linear' or 'log', got 'Log'"):
        synthetic_batch(4).decode("Log")


@pytest.mark.parametrize("problem", list(BAD_BATCHES))
def test_append_raw_rejects_a_bad_batch_naming_the_problem_and_keeps_the_contents(problem):
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=100, policy="overwrite", state_capacity=60)
    buffer.append_raw(synthetic_batch(10, seed=1))
    make_bad, message = BAD_BATCHES[problem]
    with pytest.raises(ValueError, match=message):
        buffer.append_raw(make_bad(synthetic_batch(10, seed=2)))
    assert buffer.head == 10
    assert len(read_all(buffer.cursor(), raw=True)) == 10


@pytest.mark.parametrize(
    "table, value, message",
    [
        ("state_kind", 4, "invalid kind 4"),
        ("state_owner", -2, "invalid owner -2"),
        ("state_owner", 16, "invalid owner 16"),
        ("state_army", -1, "invalid army -1"),
    ],
)
def test_the_tile_check_names_the_first_bad_tile_wherever_it_is(table, value, message):
    # The tables are checked a stride of tiles at a time: the first bad tile is
    # found past the first stride, and before a later one.
    batch = synthetic_batch(400, seed=3)
    tiles = SIDE * SIDE
    assert batch.state_kind.size > 9000
    batch.state_kind[:, 0, 0] = 3  # the extremes in range pass
    batch.state_owner[:, 0, 1] = -1
    batch.state_owner[:, 0, 2] = 15
    batch.state_army[:, 0, 3] = 0
    batch.state_army[:, 0, 4] = np.iinfo(np.int32).max
    _core.check_raw_batch(batch)
    first, later = 5000, 9000
    for flat in (later, first):
        getattr(batch, table).reshape(-1)[flat] = value
    where = f"state {first // tiles} tile {first % tiles}: "
    with pytest.raises(ValueError, match=where + message):
        _core.check_raw_batch(batch)


@pytest.mark.parametrize(
    "column, change, message",
    [
        ("next_state_index", lambda v: v + 10, "row 0: next_state_index refers to a state outside"),
        ("player_id", lambda v: v - 1, "row 0: player_id -1 outside 0..15"),
    ],
)
def test_decoding_a_bad_raw_batch_is_an_error_naming_the_row(column, change, message):
    batch = synthetic_batch(10)
    setattr(batch, column, change(getattr(batch, column)).astype(np.int32))
    with pytest.raises(ValueError, match=message):
        batch.decode()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ExperienceBuffer(policy="drop"), "policy: expected 'block' or 'overwrite'"),
        (lambda: ExperienceBuffer(capacity=0), "capacity: must be at least 1"),
        (lambda: ExperienceBuffer(state_capacity=1), "state_capacity: must be at least 2"),
        (lambda: ExperienceBuffer(height=1), "height and width must be in 2..256"),
        (lambda: ExperienceBuffer(army_scaling="cubic"), "army_scaling"),
        (lambda: ExperienceBuffer(army_scale=0), "army_scale: must be positive"),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(start="middle"),
            "start: expected 'oldest', 'newest'",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(start=-1),
            "start: a sequence number must be >= 0",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(player_ids=[0, 16]),
            r"player_ids\[1\]: 16 is outside 0..15",
        ),
        # These reached C++ unchecked and crashed the interpreter.
        (
            lambda: ExperienceBuffer(capacity=10).cursor(game_ids=[-1]),
            r"game_ids\[0\]: -1 is outside 0..18446744073709551615",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(game_ids=[2**64]),
            r"game_ids\[0\]: 18446744073709551616 is outside",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(min_tick=2**31),
            "min_tick: 2147483648 is outside -2147483648..2147483647",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor(start=2**64),
            "start: 18446744073709551616 is outside",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor().read(timeout=float("nan")),
            "timeout: expected a number of seconds, got nan",
        ),
        (
            lambda: ExperienceBuffer(capacity=10).cursor().read_raw(timeout=float("nan")),
            "timeout: expected a number of seconds, got nan",
        ),
        (
            lambda: small_env(
                ExperienceBuffer(SIDE, SIDE, capacity=1000), buffer_timeout=float("nan")
            ),
            "buffer_timeout: expected a number of seconds, got nan",
        ),
        (lambda: ExperienceBuffer(capacity=2**40), "capacity is too large"),
        (lambda: ExperienceBuffer(capacity=2**34), "more than this machine's"),
        (lambda: ExperienceBuffer(capacity=10).cursor().read(0), "max_items: must be at least 1"),
        (lambda: ExperienceBuffer(capacity=10).sample(0), "count: must be at least 1"),
        (lambda: small_env(ExperienceBuffer(6, 6, capacity=100)), "buffer: its boards are 6x6"),
        (
            lambda: small_env(ExperienceBuffer(SIDE, SIDE, capacity=10)),
            "below one step's experiences",
        ),
        (
            lambda: small_env(ExperienceBuffer(SIDE, SIDE, capacity=100, state_capacity=8)),
            "4 x num_envs",
        ),
    ],
)
def test_bad_arguments_are_errors_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_cursor_filters_take_integers_only():
    with pytest.raises(TypeError, match=r"game_ids\[0\]: expected an integer, got 1.5"):
        ExperienceBuffer(capacity=10).cursor(game_ids=[1.5])
