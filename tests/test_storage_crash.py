"""A writer process killed with SIGKILL in the middle of a shard leaves no partial
shard visible, keeps everything it reported durable, and a restart resumes after
the last durable sequence without gaps or duplicates."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from generals_rl.experience import RawBatch
from generals_rl.storage import open_dataset
from storage_support import assert_same_raw

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "storage_crash_writer.py"
RESTART_STEPS = 1_000


class Child:
    """The writer script as a subprocess, its output lines collected by a thread."""

    def __init__(self, fmt: str, destination: Path, steps: int, record: Path | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                fmt,
                str(destination),
                str(steps),
                *([str(record)] if record else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def values(self, word: str) -> list[int]:
        return [
            int(line.split()[1])
            for line in list(self.lines)
            if line.startswith(word + " ") and line.split()[1] != "None"
        ]

    def finish(self, timeout: float) -> None:
        self.process.wait(timeout)
        self._reader.join(5)
        assert self.process.returncode == 0, self.process.stderr.read()


def staging_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if ".tmp-" in p.name]


def visible_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.parts[-1:])
    ]


def check_complete(path: Path, fmt: str) -> np.ndarray:
    """The sequence numbers of a visible shard, read in full by an independent
    reader (a torn file fails here)."""
    if fmt == "parquet":
        return pq.read_table(path, columns=["sequence"]).column("sequence").to_numpy()
    data = path.read_bytes()
    pos, sequences = 0, []
    from tfrecord import example_pb2

    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        assert pos + 16 + length <= len(data), f"{path} is torn"
        example = example_pb2.Example.FromString(data[pos + 12 : pos + 12 + length])
        sequences.append(example.features.feature["sequence"].int64_list.value[0])
        pos += 16 + length
    return np.array(sequences, dtype=np.uint64)


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_sigkill_mid_shard_then_resume(tmp_path, fmt):
    destination = tmp_path / "out"
    child = Child(fmt, destination, steps=0)
    deadline = time.monotonic() + 60
    try:
        while True:
            assert time.monotonic() < deadline, f"no durable progress: {child.lines}"
            assert child.process.poll() is None, child.process.stderr.read()
            durable = child.values("durable")
            if durable and durable[-1] >= 4_000 and staging_files(destination):
                child.process.send_signal(signal.SIGSTOP)  # freeze it mid-shard, then kill
                if staging_files(destination):
                    break
                child.process.send_signal(signal.SIGCONT)
            time.sleep(0.005)
        reported = child.values("durable")[-1]
        child.process.send_signal(signal.SIGKILL)
    finally:
        child.process.kill()
        child.process.wait(10)
    assert staging_files(destination), "the kill did not happen mid-shard"

    # Nothing partial is visible: every visible shard reads in full, the indexes parse.
    stored = []
    indexed = set()
    for path in visible_files(destination):
        if path.name == "_index.json":
            for entry in json.loads(path.read_text())["shards"]:
                indexed.add(entry["key"])
        elif not path.name.endswith(".index"):
            stored.append(check_complete(path, fmt))
    assert indexed <= {p.relative_to(destination).as_posix() for p in visible_files(destination)}
    sequences = np.sort(np.concatenate(stored))
    # Everything reported durable is there, once.
    assert len(np.unique(sequences)) == len(sequences)
    assert sequences[0] == 0 and sequences[-1] >= reported
    assert (np.diff(sequences) == 1).all()
    from_index = open_dataset(destination).read()
    assert int(from_index.sequence[-1]) >= reported

    # A restart removes the staging leftovers and continues after the durable sequence.
    record = tmp_path / "produced.npz"
    restart = Child(fmt, destination, steps=RESTART_STEPS, record=record)
    restart.finish(timeout=120)
    resumed_at = restart.values("resume")[0]
    assert resumed_at == int(from_index.sequence[-1]) + 1 or resumed_at == int(sequences[-1]) + 1
    assert not staging_files(destination)
    total = restart.values("done")[0]
    assert resumed_at < total
    stored = open_dataset(destination).read()
    assert restart.values("durable")[-1] == total - 1
    np.testing.assert_array_equal(stored.sequence, np.arange(total, dtype=np.uint64))
    # What was durable before the crash is unchanged; the rest is what the restarted
    # process produced after its resume sequence.
    before = stored.sequence <= from_index.sequence[-1]
    assert_same_raw(stored.select(before), from_index)
    with np.load(record) as arrays:
        produced = RawBatch(
            **{k: arrays[k] for k in arrays.files if k not in ("missed", "next_sequence")}
        )
    assert_same_raw(
        stored.select(stored.sequence >= resumed_at),
        produced.select(produced.sequence >= resumed_at),
    )
