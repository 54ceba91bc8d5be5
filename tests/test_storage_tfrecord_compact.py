"""Compact-view TFRecords read by TensorFlow's own reader: tf.data parses them with
``generals_rl.tensorflow.parse_compact_examples`` into the float observations and
masks of the float format, bit for bit. TensorFlow runs in a child process
(tests/tensorflow_reader.py): its ``example.proto`` and the ``tfrecord`` package's,
which other tests import, cannot share one protobuf descriptor pool."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from generals_rl.experience import CompactBatch
from generals_rl.storage import TFRecordWriter
from storage_support import joined, played

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="tensorflow is not installed (the test extra has it)",
)
READER = Path(__file__).with_name("tensorflow_reader.py")


def _records(tmp_path, compression=None):
    batches = played(heuristic=True)
    with TFRecordWriter(
        tmp_path / "shards", states="compact_views", compression=compression
    ) as writer:
        for batch in batches:
            writer.write(batch)
    files = sorted(
        str(p) for p in (tmp_path / "shards").rglob("*.tfrecord*") if p.suffix != ".index"
    )
    return joined(batches), files


def _read_with_tensorflow(tmp_path, files, *options) -> dict:
    out = tmp_path / "parsed.npz"
    subprocess.run(
        [sys.executable, str(READER), str(out), *files, *options], check=True, timeout=300
    )
    with np.load(out) as parsed:
        return dict(parsed)


@pytest.mark.parametrize(
    ("scaling", "scale", "obstacles"),
    [
        ("linear", 1000.0, False),
        ("log", 50.0, False),
        ("linear", 30.0, True),
        ("log", 32768.0, True),
    ],
)
def test_tf_data_expands_compact_views_to_the_float_observations(
    tmp_path, scaling, scale, obstacles
):
    truth, files = _records(tmp_path)
    options = ["--scaling", scaling, "--scale", str(scale), *(["--obstacles"] * obstacles)]
    got = _read_with_tensorflow(tmp_path, files, *options)
    # The C++ expansion (equal to the float observation format, tests/test_compact_*.py)
    want = CompactBatch.from_raw(truth, obstacles=obstacles, wide=True).expand(
        scaling, scale, obstacles=obstacles
    )
    if not obstacles:
        assert want.state.tobytes() == truth.decode(scaling, scale).state.tobytes()
    assert got["state"].shape == want.state.shape
    for name in ("state", "next_state", "action_mask"):
        assert got[name].tobytes() == getattr(want, name).tobytes(), name
    assert np.array_equal(got["sequence"], truth.sequence)
    assert np.array_equal(got["game_id"].view(np.uint64), truth.game_id)
    assert np.array_equal(got["reward"], truth.reward)
    assert np.array_equal(got["legal"], truth.legal)


def test_one_gzip_record_parses_alone(tmp_path):
    truth, files = _records(tmp_path, compression="gzip")
    got = _read_with_tensorflow(tmp_path, files, "--gzip", "--single")
    assert got["state"].shape == (1, 9, 20, 20)
    assert got["state"][0].tobytes() == truth.decode().state[0].tobytes()


def test_the_parser_refuses_a_scale_it_cannot_expand_exactly(tmp_path):
    _, files = _records(tmp_path)
    run = subprocess.run(
        [sys.executable, str(READER), str(tmp_path / "x.npz"), *files, "--scale", "1e6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "army_scale: the TensorFlow parser takes at most 32768.0, got 1000000.0" in run.stderr
