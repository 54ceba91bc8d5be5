"""The compact layout of the packed wire form (``PACKED_LAYOUT_COMPACT``, layout
version ``COMPACT_LAYOUT_VERSION``): a ``CompactBatch`` in its indexed form as
columns of one payload: the row columns, each row's state and next state view
index, and each distinct (state, player) view once, coded as keyframes and deltas.

Almost every next state is another row's state, so a row costs about one view, and
that view differs from the one before it (the same player a tick earlier) in a few
tiles: a view with an earlier view in the batch is sent as its changed tiles (tile
index, code, army), the others whole. The action masks are not sent: each row's is a
function of its state view, made by the consumer when asked for
(``CompactBatch.action_mask``, ``generals_rl.torch.action_masks``). The consumer
rebuilds the views in one C++ call (``_core.undelta_views``, every column checked),
ready for ``generals_rl.torch.as_tensor``.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .._proto import experience_pb2 as pb
from ..experience.batch import RawBatch
from ..experience.compact import CompactBatch, IndexedViews
from .packing import (
    MAX_PAYLOAD_BYTES,
    ROW_COLUMNS,
    PackedBatchError,
    pack_columns,
    packed_rows,
    record_columns,
    unpack_columns,
)

# The version of the compact layout's columns this module reads and writes (0: two
# views a row; 1: each distinct view whole, with packed masks).
COMPACT_LAYOUT_VERSION = 2
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
VIEW_COLUMNS = {  # the views as keyframes and deltas (view_deltas)
    "view_base": ("<i4",),  # (views,)
    "delta_end": ("<u4",),  # (views,)
    "key_tiles": ("|u1",),  # (keyframes, H, W)
    "key_armies": ("|u1", "<u2", "<i4"),  # (keyframes, H, W)
    "change_tile": ("<u2",),  # (changes,)
    "change_code": ("|u1",),  # (changes,)
    "change_army": ("|u1", "<u2", "<i4"),  # (changes,)
}


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
    return pack_views(batch, _indexed(batch), obstacles, compressor)


def pack_views(
    rows: RawBatch | CompactBatch, views: IndexedViews, obstacles: bool, compressor=None
) -> tuple[pb.PackedBatch, list]:
    """``pack_compact`` of the record columns of ``rows`` and their ``views``."""
    state_view = views.state_view.astype(np.int32, copy=False)
    next_state_view = views.next_state_view.astype(np.int32, copy=False)
    coded = _core.view_deltas(views.tiles, views.armies, state_view, next_state_view)
    height, width = views.tiles.shape[1:]
    packed = pb.PackedBatch(
        count=len(rows),
        height=height,
        width=width,
        layout=pb.PACKED_LAYOUT_COMPACT,
        obstacles=obstacles,
        layout_version=COMPACT_LAYOUT_VERSION,
        view_count=len(views.tiles),
        keyframe_count=len(coded[2]),
        change_count=len(coded[4]),
    )
    arrays = [
        *packed_rows(rows),
        ("state_view", state_view),
        ("next_state_view", next_state_view),
        *zip(VIEW_COLUMNS, coded, strict=True),
    ]
    return packed, pack_columns(packed, arrays, compressor)


def unpack_compact(
    packed: pb.PackedBatch,
    decompressor=None,
    payload=None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> CompactBatch:
    """The indexed ``CompactBatch`` a compact packed batch holds (arrays over the
    payload for the row columns, the views rebuilt in C++). Checks the structure as
    ``packing.unpack`` does, the view indices, and every column of the coded views
    (references, change ends, tiles, codes, armies); raises ``PackedBatchError``
    naming the first problem. The action masks are made from the views when read."""
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
    n, views, keyframes = packed.count, packed.view_count, packed.keyframe_count
    if views > 2 * n:
        raise PackedBatchError(
            f"packed: view_count {views} is more than two views a row ({n} rows)"
        )
    if keyframes > views:
        raise PackedBatchError(f"packed: keyframe_count {keyframes} is more than the {views} views")
    changes, most = packed.change_count, (views - keyframes) * packed.height * packed.width
    if changes > most:
        raise PackedBatchError(
            f"packed: change_count {changes} is more than every tile of the {views - keyframes} "
            "coded views"
        )
    board = (keyframes, packed.height, packed.width)
    shapes: dict[str, tuple[int, ...]] = {
        name: (n,) for name in {**COMPACT_ROW_COLUMNS, **VIEW_INDEX_COLUMNS}
    }
    shapes.update(view_base=(views,), delta_end=(views,), key_tiles=board, key_armies=board)
    shapes.update(dict.fromkeys(("change_tile", "change_code", "change_army"), (changes,)))
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
    try:
        tiles, armies = _core.undelta_views(*(arrays[name] for name in VIEW_COLUMNS))
    except ValueError as exc:
        raise PackedBatchError(f"packed: {exc}") from None
    indexed = IndexedViews(tiles, armies, arrays["state_view"], arrays["next_state_view"])
    return CompactBatch.from_views(indexed, **record_columns(arrays))
