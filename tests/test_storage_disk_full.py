"""Destinations that fill up or cannot be written, on a real small filesystem: a
tmpfs the test mounts (so these tests run as root, and are skipped otherwise),
filled with a file or mounted read-only.

A write that fails loses nothing it took and raises; what the writer reports
durable reads back with independent readers (pyarrow, numpy, the ``tfrecord``
package), with sizes and checksums as indexed and no gap or duplicate; when space
returns everything is stored. ``generals-rl selfplay`` stops on a full disk with
one line and exit code 1, and loses nothing when space returns in time; into a
read-only filesystem or below a regular file it stops the same way."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import google_crc32c
import numpy as np
import pyarrow.parquet as pq
import pytest
import tfrecord
from generals_rl.storage import MultiWriter, StorageError, open_dataset, open_writer
from storage_support import assert_same_raw, joined, played

FORMATS = ["parquet", "tfrecord", "npz"]
# Small shards and chunks, so a few commit before the disk is full.
OPTIONS = {"max_experiences": 600, "chunk_size": 200, "retry_attempts": 2, "retry_base_delay": 0.01}


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mounts tmpfs filesystems of a given size under ``tmp_path``; unmounts them after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
        )
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """A file taking the free space of ``fs`` but about ``leave`` bytes."""
    stats = os.statvfs(fs)
    filler = fs / "filler"
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))
    return filler


def stored_sequences(root: Path, fmt: str) -> np.ndarray:
    """The sequence numbers of every indexed shard, read with a reader independent
    of generals_rl, after checking each shard's size and CRC32C against its entry."""
    sequences = []
    for index in sorted(root.glob("year=*/month=*/day=*/hour=*/_index.json")):
        for entry in json.loads(index.read_text())["shards"]:
            path = root / entry["key"]
            data = path.read_bytes()
            assert len(data) == entry["bytes"], entry["key"]
            assert f"crc32c:{google_crc32c.value(data):08x}" == entry["checksum"], entry["key"]
            if fmt == "parquet":
                found = pq.read_table(path, columns=["sequence"]).column("sequence").to_numpy()
            elif fmt == "npz":
                with np.load(path) as arrays:
                    found = arrays["sequence"]
            else:
                records = tfrecord.tfrecord_loader(str(path), f"{path}.index", {"sequence": "int"})
                found = np.concatenate([r["sequence"] for r in records]).view(np.uint64)
            assert (int(found.min()), int(found.max())) == (
                entry["sequence_first"],
                entry["sequence_last"],
            )
            sequences.append(found)
    return np.sort(np.concatenate(sequences)) if sequences else np.zeros(0, np.uint64)


def staging_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name]


def shard_bytes(tmp_path: Path, fmt: str, batches) -> int:
    """What ``batches`` take in ``fmt`` on an unconstrained disk."""
    root = tmp_path / f"measure-{fmt}"
    with open_writer(fmt, root, **OPTIONS) as writer:
        for batch in batches:
            writer.write(batch)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_loses_nothing_and_space_coming_back_stores_everything(
    mount_tmpfs, tmp_path, fmt
):
    batches = played()
    expected = joined(batches)
    fs = mount_tmpfs("32m")
    filler = fill(fs, leave=shard_bytes(tmp_path, fmt, batches) // 2)
    root = fs / "data"
    writer = open_writer(fmt, root, **OPTIONS)
    taken = 0
    with pytest.raises(StorageError, match="no space left on device"):
        for batch in batches:
            writer.write(batch)  # takes the batch, or raises having taken none of it
            taken += 1
        writer.flush()
    durable = writer.durable_sequence
    assert durable is not None and 0 < durable + 1 < len(expected)
    np.testing.assert_array_equal(stored_sequences(root, fmt), np.arange(durable + 1))
    with pytest.raises(StorageError, match="no space left on device"):
        writer.close()  # still full: fails again, claims nothing more, stays open
    assert writer.durable_sequence == durable and not writer.closed
    np.testing.assert_array_equal(stored_sequences(root, fmt), np.arange(durable + 1))

    filler.unlink()  # space returns: the batch refused and the rest go in, nothing is lost
    for batch in batches[taken:]:
        writer.write(batch)
    writer.close()
    np.testing.assert_array_equal(stored_sequences(root, fmt), np.arange(len(expected)))
    assert_same_raw(open_dataset(root).read(), expected)
    assert staging_files(root) == []


def selfplay(destination: Path, fmt: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "generals_rl.cli",
            "selfplay",
            "--address",
            "127.0.0.1:0",
            "--json",
            "--output",
            str(destination),
            "--format",
            fmt,
            "--num-envs",
            "8",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_selfplay_stops_on_a_full_disk_with_one_line_and_exit_code_1(mount_tmpfs):
    runs = {}
    for fmt in FORMATS:
        fs = mount_tmpfs("8m")
        fill(fs, leave=1 << 20)
        runs[fmt] = (fs / "data", selfplay(fs / "data", fmt, "--games", "0"))
    for fmt, (root, process) in runs.items():
        out, err = process.communicate(timeout=480)
        assert process.returncode == 1, (fmt, err)
        lines = err.strip().splitlines()
        last = lines[-1]
        assert [
            line
            for line in lines
            if not line.startswith(("games ", "generals-rl selfplay: serving"))
        ] == [last]
        match = re.fullmatch(
            f"generals-rl selfplay: storage: no space left on device at {re.escape(str(root))}: "
            r"(\d+) experiences durable, (\d+) not stored",
            last,
        )
        assert match, (fmt, last)
        durable, missing = int(match[1]), int(match[2])
        assert missing > 0, last
        np.testing.assert_array_equal(stored_sequences(root, fmt), np.arange(durable))
        assert staging_files(root) == [], fmt
        assert out == ""


def test_selfplay_loses_nothing_when_space_returns_within_the_retry_budget(mount_tmpfs):
    runs = {}
    for fmt in FORMATS:
        fs = mount_tmpfs("48m")
        filler = fill(fs, leave=0)
        root = fs / "data"
        runs[fmt] = (root, filler, selfplay(root, fmt, "--games", "16", "--max-ticks", "100"))
    for root, filler, process in runs.values():
        deadline = time.monotonic() + 120
        while not staging_files(root) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first shard is being written: the disk is full
        time.sleep(1.0)
        filler.unlink()
    for fmt, (root, _, process) in runs.items():
        out, err = process.communicate(timeout=480)
        assert process.returncode == 0, (fmt, err)
        summary = json.loads(out)
        assert summary["stored"]["experiences"] == summary["experiences"] > 0
        np.testing.assert_array_equal(
            stored_sequences(root, fmt), np.arange(summary["experiences"])
        )
        assert staging_files(root) == []


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float) -> str:
    """Reads the process's stderr until a line starts with ``prefix``; returns what
    it read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if not ready:
            continue
        line = process.stderr.readline()
        if not line:
            break  # the process ended
        seen.append(line)
        if line.startswith(prefix):
            return "".join(seen)
    raise AssertionError(f"no line starting {prefix!r} within {timeout} s: {''.join(seen)}")


def test_selfplay_stopped_stores_everything_with_every_games_end_marked(tmp_path):
    """A run stopped by SIGINT (how a farm ends) stores every experience, and the
    last experience of each player in each game is terminated or truncated,
    including the games still running at the stop."""
    process = selfplay(tmp_path / "data", "parquet", "--games", "0", "--max-ticks", "2000")
    # Stopped once play runs (its first progress line), not while it is still starting.
    seen = wait_for_line(process, "games ", timeout=240)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, seen + err
    summary = json.loads(out)
    np.testing.assert_array_equal(
        stored_sequences(tmp_path / "data", "parquet"), np.arange(summary["experiences"])
    )
    batch = open_dataset(tmp_path / "data").read()
    order = np.lexsort((batch.tick, batch.player_id, batch.game_id))
    game, player = batch.game_id[order], batch.player_id[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (game[1:] != game[:-1]) | (player[1:] != player[:-1])
    ended = (batch.terminated | batch.truncated)[order]
    assert ended[last].all()
    assert batch.truncated[order][last].sum() >= 8  # the games running at the stop (8 at once)


def test_a_multiwriter_with_a_full_destination_has_no_gap_or_duplicate(mount_tmpfs, tmp_path):
    batches = played()
    expected = joined(batches)
    fs = mount_tmpfs("32m")
    filler = fill(fs, leave=0)
    roomy = open_writer("tfrecord", tmp_path / "data", **OPTIONS)
    full = open_writer("tfrecord", fs / "data", **OPTIONS)
    multi = MultiWriter([roomy, full])
    refused = None
    for i, batch in enumerate(batches):
        try:
            multi.write(batch)
        except StorageError as exc:
            assert "no space left on device" in str(exc)
            refused = i
            break
    assert refused is not None
    with pytest.raises(StorageError):
        multi.write(
            batches[refused]
        )  # still full: refused again; the roomy destination took it once
    filler.unlink()
    for batch in batches[refused:]:
        multi.write(batch)
    multi.close()
    for root in (tmp_path / "data", fs / "data"):
        np.testing.assert_array_equal(stored_sequences(root, "tfrecord"), np.arange(len(expected)))
        assert_same_raw(open_dataset(root).read(), expected)


def one_storage_line(err: str) -> str:
    """The single line a failed run ends with; progress lines aside, there is no other."""
    lines = err.strip().splitlines()
    noise = ("games ", "generals-rl selfplay: serving")
    assert [line for line in lines if not line.startswith(noise)] == lines[-1:], err
    return lines[-1]


def test_selfplay_into_a_read_only_filesystem_is_one_line_and_exit_code_1(mount_tmpfs):
    fs = mount_tmpfs("8m")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    process = selfplay(fs / "data", "parquet", "--games", "4", "--max-ticks", "50")
    out, err = process.communicate(timeout=480)
    assert process.returncode == 1, err
    line = one_storage_line(err)
    assert line.startswith("generals-rl selfplay: storage: "), line
    assert "Read-only file system" in line and str(fs / "data") in line, line
    assert out == ""


def test_selfplay_below_a_regular_file_is_one_line_and_exit_code_1(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    process = selfplay(tmp_path / "file" / "data", "npz", "--games", "4", "--max-ticks", "50")
    out, err = process.communicate(timeout=480)
    assert process.returncode == 1, err
    line = one_storage_line(err)
    assert "Not a directory" in line and str(tmp_path / "file") in line, line
    assert out == ""
