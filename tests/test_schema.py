"""The experience schema is defined once (cpp/core/schema.hpp, exported by _core and
read into generals_rl.experience.batch); the bindings, the wire packing and every
storage format carry exactly its columns, with its dtypes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import tfrecord
from generals_rl import _core
from generals_rl.experience.batch import (
    DECODED_COLUMNS,
    OBSERVATION_CHANNELS,
    RECORD_COLUMNS,
    ROW_COLUMNS,
    SOURCE_COLUMNS,
    STATE_COLUMNS,
    STATE_TABLES,
)
from generals_rl.service import packing
from generals_rl.storage import open_dataset, open_writer
from generals_rl.vec_env import OBSERVATION_CHANNELS as ENV_CHANNELS
from storage_support import played

# The record columns the wire form packs into one flags byte.
FLAG_COLUMNS = [name for name, dtype in RECORD_COLUMNS.items() if dtype is np.bool_]
BATCH_COUNTERS = {"missed", "next_sequence"}


def core_buffer() -> _core.ExperienceBuffer:
    """A buffer of the bindings holding a few ticks of 1v1 self-play."""
    (batch, *_) = played()
    buffer = _core.ExperienceBuffer(
        height=batch.height,
        width=batch.width,
        capacity=4096,
        policy="overwrite",
        state_capacity=0,
        army_scaling="linear",
        army_scale=1000.0,
    )
    buffer.append_raw(batch)
    return buffer


def columns_of(batch) -> dict:
    """The columns a batch object of the bindings holds (name -> array), after
    checking that it has the batch counters."""
    assert all(isinstance(getattr(batch, name), int) for name in BATCH_COUNTERS)
    attributes = {name: getattr(batch, name) for name in dir(batch) if not name.startswith("_")}
    return {name: value for name, value in attributes.items() if isinstance(value, np.ndarray)}


def assert_columns(columns: dict, schema: dict) -> None:
    """``columns`` (name -> array) holds exactly the schema's, with its dtypes."""
    assert set(columns) == set(schema)
    for name, dtype in schema.items():
        assert columns[name].dtype == np.dtype(dtype), name


def test_the_python_definitions_are_the_exported_schema():
    def names(specs):
        return {name: np.dtype(dtype) for name, dtype, _ in specs}

    assert {k: np.dtype(v) for k, v in RECORD_COLUMNS.items()} == names(_core.RECORD_COLUMNS)
    assert {k: np.dtype(v) for k, v in STATE_COLUMNS.items()} == names(_core.STATE_INDEX_COLUMNS)
    assert {k: np.dtype(v) for k, v in STATE_TABLES.items()} == names(_core.STATE_TABLES)
    assert {k: np.dtype(v) for k, v in DECODED_COLUMNS.items()} == names(_core.DECODED_COLUMNS)
    assert all(shape == () for _, _, shape in _core.RECORD_COLUMNS)
    assert all(shape == ("height", "width") for _, _, shape in _core.STATE_TABLES)
    assert ENV_CHANNELS == _core.OBSERVATION_CHANNELS
    assert len(_core.OBSERVATION_CHANNELS) == OBSERVATION_CHANNELS
    assert set(ROW_COLUMNS) == set(RECORD_COLUMNS) | set(SOURCE_COLUMNS)


def test_the_tile_code_and_flags_match_the_engine():
    # A stored board packed by the wire code reads back as the engine stored it.
    kind = np.array([[_core.TILE_GENERAL, _core.TILE_MOUNTAIN]], dtype=np.uint8)
    owner = np.array([[_core.MAX_PLAYERS - 1, _core.NEUTRAL]], dtype=np.int16)
    code = (kind << np.uint8(_core.TILE_KIND_SHIFT)) | (owner + 1).astype(np.uint8)
    assert (code >> _core.TILE_KIND_SHIFT).tolist() == kind.tolist()
    assert ((code & _core.TILE_OWNER_MASK).astype(np.int16) - 1).tolist() == owner.tolist()
    flags = {_core.FLAG_LEGAL, _core.FLAG_TERMINATED, _core.FLAG_TRUNCATED}
    assert len(flags) == len(FLAG_COLUMNS) == 3
    assert all(bit & (bit - 1) == 0 for bit in flags)


def test_cursor_batches_of_the_bindings_carry_exactly_the_schema():
    buffer = core_buffer()
    raw = columns_of(buffer.open_cursor("oldest", 0, (), (), 0).read_raw(1 << 20, 0.0))
    assert_columns(raw, {**RECORD_COLUMNS, **STATE_COLUMNS, **STATE_TABLES})
    n, states = len(raw["sequence"]), raw["state_kind"].shape[0]
    side = (buffer.height, buffer.width)
    assert n > 0
    assert all(raw[name].shape == (n,) for name in (*RECORD_COLUMNS, *STATE_COLUMNS))
    assert all(raw[name].shape == (states, *side) for name in STATE_TABLES)
    decoded = columns_of(buffer.open_cursor("oldest", 0, (), (), 0).read_decoded(1 << 20, 0.0))
    assert_columns(decoded, {**RECORD_COLUMNS, **DECODED_COLUMNS})
    assert decoded["state"].shape == (n, OBSERVATION_CHANNELS, *side)
    assert decoded["action_mask"].shape == (n, side[0] * side[1] * 4)


def specs(*lists) -> dict:
    return {name: dtype for columns in lists for name, dtype, _ in columns}


@pytest.mark.parametrize("raw", [True, False])
def test_sampled_batches_of_the_bindings_add_exactly_the_sample_columns(raw):
    buffer = core_buffer()
    sample = buffer.sample_raw if raw else buffer.sample
    form = (_core.STATE_INDEX_COLUMNS, _core.STATE_TABLES) if raw else (_core.DECODED_COLUMNS,)
    form_sample = _core.STATE_INDEX_SAMPLE_COLUMNS if raw else _core.DECODED_SAMPLE_COLUMNS
    plain = columns_of(sample(16, 1))
    assert_columns(plain, specs(_core.RECORD_COLUMNS, *form))
    full = columns_of(sample(16, 1, prioritized=True, n_step=3))
    assert_columns(full, specs(_core.RECORD_COLUMNS, *form, _core.SAMPLE_COLUMNS, form_sample))
    for name in specs(_core.SAMPLE_COLUMNS, form_sample):
        assert len(full[name]) == 16, name


def test_the_wire_packing_carries_exactly_the_record_and_state_columns():
    (batch, *_) = played()
    packed, payload = packing.pack(batch)
    wire = {column.name for column in packed.columns}
    assert wire == (
        (set(RECORD_COLUMNS) - set(FLAG_COLUMNS))
        | {"flags"}
        | set(STATE_COLUMNS)
        | {"state_code", "state_army"}
    )
    packed.payload = b"".join(payload)
    back = packing.unpack(packed)
    for name, dtype in RECORD_COLUMNS.items():
        assert getattr(back, name).dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name), err_msg=name)
    for name in (*STATE_COLUMNS, *STATE_TABLES):
        np.testing.assert_array_equal(getattr(back, name), getattr(batch, name), err_msg=name)


def stored_columns(fmt: str, path) -> set[str]:
    """The column (feature, array) names in one shard file, read without our readers."""
    if fmt == "parquet":
        return set(pq.read_table(path).column_names)
    if fmt == "npz":
        return set(np.load(path).files) - {"_meta"}
    return set(next(iter(tfrecord.tfrecord_loader(str(path), None, None))))


def expected_columns(fmt: str, states: str) -> set[str]:
    if fmt == "tfrecord":  # one Example per row, with the shape of its boards
        if states == "decoded":
            return set(ROW_COLUMNS) | set(DECODED_COLUMNS) | {"state_shape"}
        boards = {prefix + name for prefix in ("", "next_") for name in STATE_TABLES}
        return set(ROW_COLUMNS) | boards | {"state_shape"}
    if states == "decoded":
        return set(ROW_COLUMNS) | set(DECODED_COLUMNS)
    return set(ROW_COLUMNS) | set(STATE_COLUMNS) | set(STATE_TABLES)


@pytest.mark.parametrize("states", ["raw", "decoded"])
@pytest.mark.parametrize("fmt", ["parquet", "npz", "tfrecord"])
def test_every_storage_format_stores_and_reads_back_exactly_the_schema(tmp_path, fmt, states):
    batches = played()[:3]
    options = {"states": states}
    if fmt == "tfrecord":  # TFRecord stores the masks only when asked
        options["action_mask"] = states == "decoded"
    writer = open_writer(fmt, tmp_path, **options)
    for batch in batches:
        writer.write(batch if states == "raw" else batch.decode())
    writer.close()
    shards = [p for p in tmp_path.rglob("game_*") if p.is_file() and not p.name.endswith(".index")]
    assert shards
    for shard in shards:
        assert stored_columns(fmt, shard) == expected_columns(fmt, states), shard.name
    back = open_dataset(tmp_path, form=states).read()
    expected = {**ROW_COLUMNS, **(STATE_TABLES if states == "raw" else DECODED_COLUMNS)}
    for name, dtype in expected.items():
        assert getattr(back, name).dtype == np.dtype(dtype), name
    assert len(back) == sum(len(b) for b in batches)
