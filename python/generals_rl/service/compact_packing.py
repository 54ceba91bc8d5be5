"""The compact layout of the packed wire form (``PACKED_LAYOUT_COMPACT``, layout
version ``COMPACT_LAYOUT_VERSION``): a ``CompactBatch`` in its indexed form as
columns of one payload: the row columns, each row's state and next state view
index, each distinct (state, player) view once, and each row's packed action mask.

Almost every next state is another row's state, so a row costs about one view: on
20x20 about 1.1 KB with uint8 armies (chosen when every army of the batch fits),
1.6 KB with uint16, against 2.6 KB for two views a row (bench/bench_service.py).
The consumer's arrays are views of the received payload (no copy when it is not
compressed), ready for ``generals_rl.torch.as_tensor``.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience.batch import RawBatch
from ..experience.compact import CompactBatch, IndexedViews, ViewPlan
from ..observations import packed_mask_bytes
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

# The version of the compact layout's columns this module reads and writes (0: two
# views a row, before the views were indexed).
COMPACT_LAYOUT_VERSION = 1
# The row columns of the raw layout but the state indices (rows index views).
COMPACT_ROW_COLUMNS = {
    name: dtypes
    for name, dtypes in ROW_COLUMNS.items()
    if name not in ("state_index", "next_state_index")
}
VIEW_INDEX_COLUMNS = {
    "state_view": ("<i4",),  # (n,)
    "next_state_view": ("<i4",),  # (n,)
}
VIEW_COLUMNS = {
    "view_tiles": ("|u1",),  # (views, H, W)
    "view_armies": ("|u1", "<u2", "<i4"),  # (views, H, W)
    "action_mask": ("|u1",),  # (n, packed_mask_bytes)
}


def _compact_packed(count: int, height: int, width: int, views: int, obstacles: bool):
    return pb.PackedBatch(
        count=count,
        height=height,
        width=width,
        layout=pb.PACKED_LAYOUT_COMPACT,
        obstacles=obstacles,
        layout_version=COMPACT_LAYOUT_VERSION,
        view_count=views,
    )


def _indexed(batch: CompactBatch) -> IndexedViews:
    """``batch``'s views; for a per-row batch its state views then its next state views."""
    if batch.views is not None:
        return batch.views
    n = len(batch)
    index = np.arange(n, dtype=np.int32)
    return IndexedViews(
        np.concatenate([batch.state_tiles, batch.next_state_tiles]),
        np.concatenate([batch.state_armies, batch.next_state_armies]),
        index,
        index + np.int32(n),
    )


def pack_compact(
    batch: CompactBatch, obstacles: bool, compressor=None
) -> tuple[pb.PackedBatch, list]:
    """The ``PackedBatch`` (compact layout) of ``batch`` without its payload, and
    the payload as buffers to join; ``obstacles``: the option its views were made with."""
    views = _indexed(batch)
    packed = _compact_packed(len(batch), batch.height, batch.width, len(views.tiles), obstacles)
    arrays = [
        *packed_rows(batch),
        ("state_view", views.state_view.astype(np.int32, copy=False)),
        ("next_state_view", views.next_state_view.astype(np.int32, copy=False)),
        ("view_tiles", views.tiles),
        ("view_armies", views.armies),
        ("action_mask", batch.action_mask),
    ]
    return packed, pack_columns(packed, arrays, compressor)


def pack_compact_rows(
    raw: RawBatch, obstacles: bool, plan: ViewPlan
) -> tuple[pb.PackedBatch, list[bytes]]:
    """The complete ``PackedBatch`` (compact layout, uncompressed) of ``raw``'s
    views as ``plan`` has them, without its payload, and the payload's row and view
    index columns as bytes: the views and masks that end the payload are left to
    ``_core.compact_message``, which writes them straight into the message
    (``pack_compact`` makes the same payload from a ``CompactBatch``)."""
    n, views = len(raw), len(plan.view_state)
    packed = _compact_packed(n, raw.height, raw.width, views, obstacles)
    rows = [
        *packed_rows(raw),
        ("state_view", np.arange(n, dtype=np.int32)),
        ("next_state_view", plan.next_state_view),
    ]
    rows = [(name, little_endian(array)) for name, array in rows]
    board = (views, raw.height, raw.width)
    # In the order _core.compact_message writes them.
    written = [
        ("view_tiles", np.dtype(np.uint8), board),
        ("view_armies", plan.army_dtype.newbyteorder("<"), board),
        ("action_mask", np.dtype(np.uint8), (n, packed_mask_bytes(raw.height, raw.width))),
    ]
    describe_columns(packed, [(name, array.dtype, array.shape) for name, array in rows] + written)
    return packed, [array.tobytes() for _, array in rows]


def unpack_compact(
    packed: pb.PackedBatch,
    decompressor=None,
    payload=None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    check_tiles: bool = True,
) -> CompactBatch:
    """The indexed ``CompactBatch`` a compact packed batch holds, its arrays over
    the payload (read-only). Checks the structure as ``packing.unpack`` does, the
    view indices and armies and, with ``check_tiles``, that every tile code is one
    ``observations.expand`` knows; raises ``PackedBatchError`` naming the first
    problem."""
    if packed.layout != pb.PACKED_LAYOUT_COMPACT:
        raise PackedBatchError("packed: layout is not PACKED_LAYOUT_COMPACT (compact views)")
    if packed.layout_version != COMPACT_LAYOUT_VERSION:
        raise PackedBatchError(
            f"packed: layout_version {packed.layout_version} of the compact layout, this "
            f"reader reads version {COMPACT_LAYOUT_VERSION} (the server and the consumer "
            "are of different releases)"
        )
    if packed.state_count:
        raise PackedBatchError(
            f"packed: state_count is {packed.state_count}, the compact layout has no state tables"
        )
    n, views = packed.count, packed.view_count
    if views > 2 * n:
        raise PackedBatchError(
            f"packed: view_count {views} is more than two views a row ({n} rows)"
        )
    shapes: dict[str, tuple[int, ...]] = {
        name: (n,) for name in {**COMPACT_ROW_COLUMNS, **VIEW_INDEX_COLUMNS}
    }
    shapes["view_tiles"] = shapes["view_armies"] = (views, packed.height, packed.width)
    shapes["action_mask"] = (n, packed_mask_bytes(packed.height, packed.width))
    arrays = unpack_columns(
        packed,
        {**COMPACT_ROW_COLUMNS, **VIEW_INDEX_COLUMNS, **VIEW_COLUMNS},
        shapes,
        decompressor,
        payload,
        max_bytes,
    )
    if n:
        for name in VIEW_INDEX_COLUMNS:
            index = arrays[name]
            low, high = int(index.min()), int(index.max())
            if low < 0 or high >= views:
                raise PackedBatchError(
                    f"packed: {name} holds view {low if low < 0 else high}, the batch has "
                    f"{views} views"
                )
    armies, tiles = arrays["view_armies"], arrays["view_tiles"]
    if armies.dtype == np.int32 and armies.size and int(armies.min()) < 0:
        raise PackedBatchError(
            f"packed: view_armies holds army {int(armies.min())}, armies are >= 0"
        )
    if check_tiles and tiles.size and int(tiles.max()) >= _core.TILE_CODES:
        raise PackedBatchError(
            f"packed: view_tiles holds tile code {int(tiles.max())}, codes are below "
            f"{_core.TILE_CODES}"
        )
    indexed = IndexedViews(tiles, armies, arrays["state_view"], arrays["next_state_view"])
    return CompactBatch.from_views(
        indexed, **record_columns(arrays), action_mask=arrays["action_mask"]
    )
