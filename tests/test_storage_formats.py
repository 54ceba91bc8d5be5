"""Local storage: each format written from real self-play and read back with a
reader that is not ours (pyarrow, numpy, the tfrecord package plus an independent
CRC32C), the partition layout and index, rotation, open_dataset, bad input."""

from __future__ import annotations

import dataclasses
import gc
import json
import struct
import weakref
from datetime import datetime, timezone
from pathlib import Path

import google_crc32c
import numpy as np
import pyarrow.parquet as pq
import pytest
import tfrecord
from generals_rl.experience import RawBatch, format_game_id
from generals_rl.storage import (
    NpzWriter,
    ParquetWriter,
    StorageError,
    TFRecordWriter,
    open_dataset,
    open_writer,
)
from generals_rl.storage.npz import NpzFormat
from storage_support import SHARD_KEY, TABLES, assert_same_decoded, assert_same_raw, joined, played


def committed_entries(root: Path) -> list[dict]:
    entries = []
    for index in sorted(root.glob("year=*/month=*/day=*/hour=*/_index.json")):
        body = json.loads(index.read_text())
        assert body["version"] == 1
        assert body["partition"] == str(index.parent.relative_to(root))
        entries += body["shards"]
    return sorted(entries, key=lambda e: e["sequence_first"])


def visible_shards(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("game_*") if not p.name.endswith(".index"))


def write_all(writer, batches) -> None:
    with writer:
        for batch in batches:
            writer.write(batch)


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_layout(root: Path, entries: list[dict], extension: str, total: int) -> None:
    """Keys, partition hours, ids, sizes, checksums and contiguous sequence ranges."""
    assert [p.relative_to(root).as_posix() for p in visible_shards(root)] == sorted(
        e["key"] for e in entries
    )
    expected_first = 0
    for entry in entries:
        match = SHARD_KEY.match(entry["key"])
        assert match, entry["key"]
        year, month, day, hour = (int(g) for g in match.groups()[:4])
        created = datetime.fromtimestamp(entry["time_first"], timezone.utc)
        assert (created.year, created.month, created.day, created.hour) == (year, month, day, hour)
        assert match[7] == extension
        data = (root / entry["key"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["checksum"] == f"crc32c:{google_crc32c.value(data):08x}"
        assert entry["sequence_first"] == expected_first
        assert entry["sequence_last"] == expected_first + entry["experiences"] - 1
        expected_first = entry["sequence_last"] + 1
    assert expected_first == total


# ---- each format, read by an independent reader ----------------------------------------


def read_parquet_with_pyarrow(path: Path) -> RawBatch:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"generals_rl"])
    height, width = meta["height"], meta["width"]
    columns = {
        name: table.column(name).to_numpy()
        for name in (
            "sequence",
            "game_id",
            "player_id",
            "tick",
            "action",
            "reward",
            "legal",
            "terminated",
            "truncated",
            "state_index",
            "next_state_index",
        )
    }
    tables = {}
    for name in TABLES:
        field = table.schema.field(name)
        dtype = np.dtype(field.metadata[b"dtype"].decode())
        assert json.loads(field.metadata[b"shape"]) == [height, width]
        boards = table.column(name).combine_chunks().flatten().to_pylist()
        tables[name] = np.frombuffer(b"".join(boards), dtype=dtype).reshape(-1, height, width)
    return RawBatch(**columns, **tables)


def test_parquet_read_back_with_pyarrow(tmp_path):
    batches = played()
    expected = joined(batches)
    write_all(ParquetWriter(tmp_path, max_experiences=3000, chunk_size=1000), batches)
    entries = committed_entries(tmp_path)
    assert len(entries) == -(-len(expected) // 3000)
    check_layout(tmp_path, entries, "parquet", len(expected))
    parts = [read_parquet_with_pyarrow(tmp_path / e["key"]) for e in entries]
    for part, entry in zip(parts, entries, strict=False):
        assert len(part) == entry["experiences"]
        assert pq.ParquetFile(tmp_path / entry["key"]).metadata.num_row_groups == -(
            -len(part) // 1000
        )
        assert part.game_id[0] == int(SHARD_KEY.match(entry["key"])[5], 16)
    got = joined(parts)
    assert_same_raw(got, expected)
    assert_same_decoded(got.decode(), expected.decode())
    # Compact: each game state once per chunk, so about one state per two rows in 1v1.
    states = sum(len(p.state_kind) for p in parts)
    assert states < 0.6 * len(expected)
    types = pq.read_schema(tmp_path / entries[0]["key"])
    assert (
        str(types.field("game_id").type) == "uint64" and str(types.field("reward").type) == "float"
    )


def test_parquet_zstd_compresses_below_150_bytes_per_experience(tmp_path):
    batches = played(200, envs=16, heuristic=True)
    with ParquetWriter(tmp_path) as writer:
        for batch in batches:
            writer.write(batch)
    stats = writer.stats()
    on_disk = sum(p.stat().st_size for p in visible_shards(tmp_path))
    assert stats["bytes_committed"] == on_disk
    assert stats["bytes_per_experience"] == pytest.approx(on_disk / len(joined(batches)))
    assert stats["bytes_per_experience"] <= 150
    assert (
        pq.ParquetFile(visible_shards(tmp_path)[0]).metadata.row_group(0).column(11).compression
        == "ZSTD"
    )


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_read_back_with_numpy(tmp_path, compressed):
    batches = played()
    expected = joined(batches)
    write_all(NpzWriter(tmp_path, max_experiences=4000, compressed=compressed), batches)
    entries = committed_entries(tmp_path)
    check_layout(tmp_path, entries, "npz", len(expected))
    parts = []
    for entry in entries:
        with np.load(tmp_path / entry["key"], allow_pickle=False) as arrays:
            assert json.loads(str(arrays["_meta"]))["states"] == "raw"
            parts.append(RawBatch(**{k: arrays[k] for k in arrays.files if k != "_meta"}))
    got = joined(parts)
    assert_same_raw(got, expected)
    assert_same_decoded(got.decode(), expected.decode())


def test_npz_decoded_arrays(tmp_path):
    batches = played()[:3]
    expected = joined(batches).decode()
    write_all(NpzWriter(tmp_path, states="decoded"), batches)
    (path,) = visible_shards(tmp_path)
    with np.load(path) as arrays:
        assert arrays["state"].dtype == np.float32 and arrays["state"].shape == expected.state.shape
        got = {k: arrays[k] for k in arrays.files}
    for name in ("sequence", "state", "next_state", "action_mask", "reward"):
        np.testing.assert_array_equal(got[name], getattr(expected, name))


def tfrecord_records(path: Path, gzip: bool = False) -> list[dict]:
    """Records through the ``tfrecord`` package, in file order via our offset index;
    the framing checked with google-crc32c."""
    if not gzip:
        data = path.read_bytes()
        offsets = []
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            assert struct.unpack_from("<I", data, pos + 8)[0] == masked_crc(data[pos : pos + 8])
            record = data[pos + 12 : pos + 12 + length]
            assert struct.unpack_from("<I", data, pos + 12 + length)[0] == masked_crc(record)
            offsets.append((pos, length + 16))
            pos += length + 16
        index = [
            tuple(int(v) for v in line.split())
            for line in Path(f"{path}.index").read_text().splitlines()
        ]
        assert index == offsets
    return list(
        tfrecord.tfrecord_loader(
            str(path),
            f"{path}.index",
            None,
            shard=(0, 1),
            compression_type="gzip" if gzip else None,
        )
    )


def raw_from_records(records: list[dict]) -> RawBatch:
    n = len(records)
    columns = {
        name: np.concatenate([r[name] for r in records])
        for name in (
            "sequence",
            "game_id",
            "player_id",
            "tick",
            "action",
            "legal",
            "terminated",
            "truncated",
        )
    }
    columns = {
        k: v.view(np.uint64) if k in ("sequence", "game_id") else v.astype(np.int32)
        for k, v in columns.items()
    }
    for flag in ("legal", "terminated", "truncated"):
        columns[flag] = columns[flag].astype(bool)
    reward = np.concatenate([r["reward"] for r in records])
    height, width = records[0]["state_shape"]
    tables = {}
    for name, dtype in zip(TABLES, ("<u1", "<i2", "<i4"), strict=False):
        suffix = name[len("state_") :]
        boards = [r[f"state_{suffix}"] for r in records] + [
            r[f"next_state_{suffix}"] for r in records
        ]
        tables[name] = np.frombuffer(b"".join(boards), dtype=dtype).reshape(2 * n, height, width)
    return RawBatch(
        **columns,
        reward=reward,
        state_index=np.arange(n, dtype=np.int32),
        next_state_index=np.arange(n, 2 * n, dtype=np.int32),
        **tables,
    )


@pytest.mark.parametrize("gzip", [False, True])
def test_tfrecord_read_back_with_the_tfrecord_package(tmp_path, gzip):
    batches = played()[:6]
    expected = joined(batches)
    write_all(
        TFRecordWriter(tmp_path, max_experiences=1500, compression="gzip" if gzip else None),
        batches,
    )
    entries = committed_entries(tmp_path)
    check_layout(tmp_path, entries, "tfrecord.gz" if gzip else "tfrecord", len(expected))
    records = [r for e in entries for r in tfrecord_records(tmp_path / e["key"], gzip)]
    got = raw_from_records(records)
    got.state_kind = got.state_kind.astype(np.uint8)
    got.state_owner = got.state_owner.astype(np.int16)
    got.state_army = got.state_army.astype(np.int32)
    assert_same_raw(got, expected)
    assert sorted(records[0]) == sorted(
        [
            "sequence",
            "game_id",
            "player_id",
            "tick",
            "action",
            "reward",
            "legal",
            "terminated",
            "truncated",
            "replay_id",
            "stars",
            "state_shape",
            "state_kind",
            "state_owner",
            "state_army",
            "next_state_kind",
            "next_state_owner",
            "next_state_army",
        ]
    )


def test_tfrecord_float_lists_and_masks(tmp_path):
    batches = played()[:2]
    expected = joined(batches).decode()
    write_all(TFRecordWriter(tmp_path, states="decoded"), batches)
    (path,) = [p for p in visible_shards(tmp_path)]
    records = tfrecord_records(path)
    assert list(records[0]["state_shape"]) == [9, 20, 20]
    np.testing.assert_array_equal(
        np.stack([r["state"] for r in records]).reshape(expected.state.shape), expected.state
    )
    np.testing.assert_array_equal(
        np.stack([r["next_state"] for r in records]).reshape(expected.state.shape),
        expected.next_state,
    )
    np.testing.assert_array_equal(
        np.stack([r["action_mask"] for r in records]).astype(bool), expected.action_mask
    )
    # The same experiences through our reader, decoded form only.
    assert_same_decoded(open_dataset(tmp_path, form="decoded").read(), expected)
    with pytest.raises(StorageError, match="form='decoded'"):
        open_dataset(tmp_path).read()


def test_tfrecord_bytes_with_masks(tmp_path):
    batches = played()[:2]
    expected = joined(batches).decode()
    write_all(TFRecordWriter(tmp_path, action_mask=True), batches)
    records = tfrecord_records(visible_shards(tmp_path)[0])
    masks = np.stack([np.frombuffer(r["action_mask"], np.uint8) for r in records]).astype(bool)
    np.testing.assert_array_equal(masks, expected.action_mask)


# ---- open_dataset --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "npz", "tfrecord"])
def test_open_dataset_returns_the_buffers_batches_with_filters(tmp_path, fmt):
    batches = played()[:8]
    expected = joined(batches)
    write_all(open_writer(fmt, tmp_path, max_experiences=1200, chunk_size=500), batches)
    dataset = open_dataset(tmp_path)
    assert dataset.experiences == len(expected)
    got = list(dataset)
    assert all(isinstance(b, RawBatch) for b in got)
    assert_same_raw(joined(got), expected)
    assert_same_decoded(open_dataset(tmp_path, form="decoded").read(), expected.decode())
    # Filters by game and player, as the cursor's filters would select.
    games = [int(expected.game_id[3]), format_game_id(int(expected.game_id[-1]))]
    game_values = [int(expected.game_id[3]), int(expected.game_id[-1])]
    rows = np.isin(expected.game_id, game_values) & (expected.player_id == 1)
    assert_same_raw(
        open_dataset(tmp_path, game_ids=games, player_ids=[1]).read(), expected.select(rows)
    )
    assert open_dataset(tmp_path, game_ids=[12345]).read() is None


def test_partition_pruning_by_time(tmp_path):
    """Shards written in different hours land in their hour's partition and time
    bounds select them without opening the others."""
    batches = played()
    clock = {"now": datetime(2024, 3, 1, 10, 15, tzinfo=timezone.utc).timestamp()}
    writer = ParquetWriter(tmp_path, max_experiences=2000, clock=lambda: clock["now"])
    for i, batch in enumerate(batches):
        clock["now"] += 3600 * (i % 7 == 6) + 1
        writer.write(batch)
    writer.close()
    partitions = sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("year=*/month=*/day=*/hour=*")
    )
    assert partitions[0] == "year=2024/month=03/day=01/hour=10"
    assert len(partitions) >= 3
    entries = committed_entries(tmp_path)
    for entry in entries:
        assert entry["key"].startswith(
            datetime.fromtimestamp(entry["time_first"], timezone.utc).strftime(
                "year=%Y/month=%m/day=%d/hour=%H/"
            )
        )
    start = datetime(2024, 3, 1, 11, tzinfo=timezone.utc)
    end = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    window = open_dataset(tmp_path, start=start, end=end)
    chosen = [e for e in entries if start.timestamp() <= e["time_first"] < end.timestamp()]
    assert window.shards == [e["key"] for e in chosen] and chosen
    got = window.read()
    first, last = chosen[0]["sequence_first"], chosen[-1]["sequence_last"]
    expected = joined(batches)
    assert_same_raw(
        got, expected.select((expected.sequence >= first) & (expected.sequence <= last))
    )
    # The same bounds as ISO strings; nothing before the first hour.
    assert (
        open_dataset(tmp_path, start="2024-03-01T11:00:00", end="2024-03-01T12:00:00").shards
        == window.shards
    )
    assert open_dataset(tmp_path, end="2024-03-01T10:00:00").read() is None


# ---- rotation -------------------------------------------------------------------------------


def test_rotation_by_count_bytes_and_age(tmp_path):
    batches = played()[:10]
    total = len(joined(batches))
    write_all(ParquetWriter(tmp_path / "count", max_experiences=777), batches)
    sizes = [e["experiences"] for e in committed_entries(tmp_path / "count")]
    assert sizes[:-1] == [777] * (len(sizes) - 1) and sum(sizes) == total

    write_all(ParquetWriter(tmp_path / "bytes", max_bytes=8_000, chunk_size=200), batches)
    entries = committed_entries(tmp_path / "bytes")
    assert len(entries) >= 3 and sum(e["experiences"] for e in entries) == total
    assert all(e["bytes"] >= 8_000 for e in entries[:-1])
    groups = [
        pq.ParquetFile(tmp_path / "bytes" / e["key"]).metadata.num_row_groups for e in entries
    ]
    assert all(g <= 2 for g in groups)

    clock = {"now": 1_700_000_000.0}
    writer = ParquetWriter(tmp_path / "age", max_age=30.0, clock=lambda: clock["now"])
    writer.write(batches[0])
    writer.poll()
    assert writer.durable_sequence is None
    clock["now"] += 31
    writer.poll()
    assert writer.durable_sequence == batches[0].sequence[-1]
    writer.close()


def test_flush_commits_and_reports_durable_sequence(tmp_path):
    batches = played()[:4]
    writer = NpzWriter(tmp_path)
    writer.write(batches[0])
    assert writer.durable_sequence is None and writer.resume_sequence == 0
    assert visible_shards(tmp_path) == []
    writer.flush()
    assert writer.durable_sequence == int(batches[0].sequence[-1])
    writer.write(batches[1])
    writer.close()
    assert writer.durable_sequence == int(batches[1].sequence[-1])
    assert writer.stats()["shards_committed"] == 2
    writer.close()  # idempotent


def test_reopening_resumes_after_the_durable_sequence(tmp_path):
    batches = played()[:6]
    write_all(ParquetWriter(tmp_path), batches[:3])
    writer = ParquetWriter(tmp_path)
    assert writer.resume_sequence == int(batches[2].sequence[-1]) + 1
    for batch in batches:  # a producer replaying from the start: stored rows are skipped
        writer.write(batch)
    writer.close()
    assert writer.stats()["experiences_skipped"] == len(joined(batches[:3]))
    assert_same_raw(open_dataset(tmp_path).read(), joined(batches))
    names = [e["name"] for e in committed_entries(tmp_path)]
    assert [n[-12:-8] for n in names] == ["0001", "0002"]


# ---- bad input ------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(tmp_path):
    raw = played()[0]
    writer = ParquetWriter(tmp_path / "out")
    with pytest.raises(TypeError, match="RawBatch"):
        writer.write({"sequence": raw.sequence})
    with pytest.raises(TypeError, match="RawBatch"):
        writer.write(raw.decode())
    broken = RawBatch(**{**raw.to_dict(), "tick": raw.tick[:-1]})
    with pytest.raises(ValueError, match="tick: expected"):
        writer.write(broken)
    bad_index = RawBatch(**{**raw.to_dict(), "state_index": raw.state_index + len(raw.state_kind)})
    with pytest.raises(ValueError, match="state_index refers to a state outside"):
        writer.write(bad_index)
    writer.close()
    with pytest.raises(StorageError, match="after close"):
        writer.write(raw)

    for bad in (
        {"max_experiences": 0},
        {"max_experiences": -5},
        {"max_experiences": "many"},
        {"max_bytes": 0},
        {"max_age": 0},
        {"max_age": -1.0},
        {"chunk_size": 0},
        {"max_experiences": 2.5},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ParquetWriter(tmp_path / "x", **bad)
    with pytest.raises(TypeError, match="max_shards"):
        ParquetWriter(tmp_path / "x", max_shards=3)
    with pytest.raises(ValueError, match="format"):
        open_writer("csv", tmp_path / "x")
    with pytest.raises(ValueError, match="s3://"):
        open_writer("parquet", "ftp://host/dir")
    with pytest.raises(ValueError, match="compression"):
        TFRecordWriter(tmp_path / "x", compression="zstd")
    with pytest.raises(ValueError, match="states"):
        NpzWriter(tmp_path / "x", states="floats")
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(ValueError, match="not a directory"):
        ParquetWriter(a_file)
    with pytest.raises(ValueError, match="neither a directory nor a shard"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="player_ids"):
        open_dataset(tmp_path, player_ids=[16])
    with pytest.raises(ValueError, match="form"):
        open_dataset(tmp_path, form="tensor")
    with pytest.raises(ValueError, match="start"):
        open_dataset(tmp_path, start="yesterday")


def test_damaged_shards_and_indexes_are_named(tmp_path):
    write_all(ParquetWriter(tmp_path, max_experiences=2000), played()[:6])
    entries = committed_entries(tmp_path)
    shard = tmp_path / entries[0]["key"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"checksum.*damaged") as info:
        open_dataset(tmp_path).read()
    assert entries[0]["key"] in str(info.value)
    index = next(tmp_path.glob("year=*/month=*/day=*/hour=*/_index.json"))
    index.write_text("{not json")
    with pytest.raises(StorageError, match="malformed index"):
        open_dataset(tmp_path)


def test_an_npz_shard_with_an_encrypted_member_is_named_not_raised_as_is(tmp_path):
    write_all(NpzWriter(tmp_path, max_experiences=2000), played()[:2])
    data = bytearray((tmp_path / committed_entries(tmp_path)[0]["key"]).read_bytes())
    # Set the "encrypted" flag of every member, in the local and the central headers.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start >= 0:
            data[start + flag_offset] |= 1
            start = data.find(signature, start + 4)
    with pytest.raises(StorageError, match=r"not an NPZ experience shard: .*encrypted"):
        list(NpzFormat.read(bytes(data)))


def test_state_tables_are_compacted_sorted_and_merged_only_when_equal():
    from generals_rl.storage._batches import compact_states

    first, second = played()[:2]
    joined_copy = compact_states(first, second)
    assert_same_raw(joined_copy, joined([first, second]))
    # Boundary states held by both batches are stored once.
    assert len(joined_copy.state_kind) < len(first.state_kind) + len(second.state_kind)
    # A batch's states are sorted by game and tick.
    alone = compact_states(first)
    assert_same_raw(alone, first)
    game = np.zeros(len(alone.state_kind), np.uint64)
    tick = np.zeros(len(alone.state_kind), np.int64)
    game[alone.state_index], tick[alone.state_index] = alone.game_id, alone.tick
    game[alone.next_state_index], tick[alone.next_state_index] = alone.game_id, alone.tick + 1
    assert (np.lexsort((tick, game)) == np.arange(len(game))).all()
    # A batch claiming the same (game, tick) with other boards keeps its own boards.
    forged = RawBatch(**{**second.to_dict(), "state_army": second.state_army + 1})
    kept_apart = compact_states(first, forged)
    assert_same_raw(kept_apart, joined([first, forged]))
    assert len(kept_apart.state_kind) > len(joined_copy.state_kind)


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord", "npz"])
def test_a_writer_keeps_no_batch_it_was_given(tmp_path, fmt):
    """Rows waiting for their chunk are copied, not held as the batches written:
    holding thousands of batches (each with its whole state table) and freeing
    them at once made a long run's memory grow without bound."""
    batches = played()
    writer = open_writer(fmt, tmp_path, max_experiences=1_500, chunk_size=1_000)
    alive = []
    for rerun in range(3):
        offset = rerun * len(joined(batches))
        for batch in batches:
            given = dataclasses.replace(
                batch,
                sequence=batch.sequence + np.uint64(offset),
                state_kind=batch.state_kind.copy(),
            )
            writer.write(given)
            alive.append(weakref.ref(given.state_kind))
            del given
    gc.collect()
    assert not [ref for ref in alive if ref() is not None]
    writer.close()
    assert len(open_dataset(tmp_path).read()) == 3 * len(joined(batches))
