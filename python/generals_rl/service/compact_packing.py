"""The compact layout of the packed wire form (``PACKED_LAYOUT_COMPACT``): a
``CompactBatch`` as columns of one payload, each row carrying the acting player's
views of its state and next state and its packed action mask.

The consumer's arrays are views of the received payload (no copy when it is not
compressed), ready for ``generals_rl.torch.as_tensor``. Per experience it is
about 2.6 KB on 20x20 against about 0.7 KB of raw boards shared by the rows, but
nothing is left to compute where the trainer is (bench/bench_service.py).
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience.batch import RawBatch
from ..experience.compact import CompactBatch
from ..observations import army_dtype, packed_mask_bytes
from .packing import (
    MAX_PAYLOAD_BYTES,
    ROW_COLUMNS,
    PackedBatchError,
    describe_columns,
    little_endian,
    pack_columns,
    packed_rows,
    record_columns,
    unpack_columns,
)

# The row columns of the raw layout but the state indices (each row has its views).
COMPACT_ROW_COLUMNS = {
    name: dtypes
    for name, dtypes in ROW_COLUMNS.items()
    if name not in ("state_index", "next_state_index")
}
VIEW_COLUMNS = {
    "state_tiles": ("|u1",),  # (n, H, W)
    "state_armies": ("<u2", "<i4"),  # (n, H, W)
    "next_state_tiles": ("|u1",),
    "next_state_armies": ("<u2", "<i4"),
    "action_mask": ("|u1",),  # (n, packed_mask_bytes)
}


def _compact_packed(batch: RawBatch | CompactBatch, obstacles: bool) -> pb.PackedBatch:
    return pb.PackedBatch(
        count=len(batch),
        height=batch.height,
        width=batch.width,
        layout=pb.PACKED_LAYOUT_COMPACT,
        obstacles=obstacles,
    )


def pack_compact(
    batch: CompactBatch, obstacles: bool, compressor=None
) -> tuple[pb.PackedBatch, list]:
    """The ``PackedBatch`` (compact layout) of ``batch`` without its payload, and
    the payload as buffers to join; ``obstacles``: the option its views were made with."""
    packed = _compact_packed(batch, obstacles)
    arrays = packed_rows(batch) + [(name, getattr(batch, name)) for name in VIEW_COLUMNS]
    return packed, pack_columns(packed, arrays, compressor)


def pack_compact_rows(
    raw: RawBatch, obstacles: bool, army_scale: float
) -> tuple[pb.PackedBatch, list[bytes]]:
    """The complete ``PackedBatch`` (compact layout, uncompressed) of ``raw``'s
    compact views without its payload, and the payload's row columns as bytes:
    the views that end the payload are left to ``_core.compact_message``, which
    writes them straight into the message (``pack_compact`` makes the same
    payload from a ``CompactBatch``)."""
    packed = _compact_packed(raw, obstacles)
    rows = [(name, little_endian(array)) for name, array in packed_rows(raw)]
    board = (len(raw), raw.height, raw.width)
    armies = army_dtype(army_scale).newbyteorder("<")
    mask = (len(raw), packed_mask_bytes(raw.height, raw.width))
    # In the order _core.compact_message writes them.
    views = [
        (
            name,
            armies if name.endswith("armies") else np.dtype(dtypes[0]),
            mask if name == "action_mask" else board,
        )
        for name, dtypes in VIEW_COLUMNS.items()
    ]
    describe_columns(packed, [(name, array.dtype, array.shape) for name, array in rows] + views)
    return packed, [array.tobytes() for _, array in rows]


def unpack_compact(
    packed: pb.PackedBatch,
    decompressor=None,
    payload=None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    check_tiles: bool = True,
) -> CompactBatch:
    """The ``CompactBatch`` a compact packed batch holds, its arrays over the
    payload (read-only). Checks the structure as ``packing.unpack`` does and, with
    ``check_tiles``, that every tile code is one ``observations.expand`` knows;
    raises ``PackedBatchError`` naming the first problem."""
    if packed.layout != pb.PACKED_LAYOUT_COMPACT:
        raise PackedBatchError("packed: layout is not PACKED_LAYOUT_COMPACT (compact views)")
    if packed.state_count:
        raise PackedBatchError(
            f"packed: state_count is {packed.state_count}, the compact layout has no state tables"
        )
    n, board = packed.count, (packed.count, packed.height, packed.width)
    shapes: dict[str, tuple[int, ...]] = {name: (n,) for name in COMPACT_ROW_COLUMNS}
    shapes.update({name: board for name in VIEW_COLUMNS})
    shapes["action_mask"] = (n, packed_mask_bytes(packed.height, packed.width))
    arrays = unpack_columns(
        packed, {**COMPACT_ROW_COLUMNS, **VIEW_COLUMNS}, shapes, decompressor, payload, max_bytes
    )
    if arrays["state_armies"].dtype != arrays["next_state_armies"].dtype:
        raise PackedBatchError("packed: state_armies and next_state_armies differ in dtype")
    if check_tiles:
        for name in ("state_tiles", "next_state_tiles"):
            if n and int(arrays[name].max()) >= _core.TILE_CODES:
                raise PackedBatchError(
                    f"packed: {name} holds tile code {int(arrays[name].max())}, codes are below "
                    f"{_core.TILE_CODES}"
                )
    return CompactBatch(
        **record_columns(arrays),
        state_tiles=arrays["state_tiles"],
        state_armies=arrays["state_armies"],
        next_state_tiles=arrays["next_state_tiles"],
        next_state_armies=arrays["next_state_armies"],
        action_mask=arrays["action_mask"],
    )
