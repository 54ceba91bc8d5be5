"""Compact observations: what each tile is to the player, in one byte, and the army
the player sees there; action masks packed as bits.

A compact view of a ``height x width`` board is ``tiles`` (uint8 ``(H, W)``, one tile
code each) and ``armies`` (the visible army, 0 in fog): uint16, saturating at
``NARROW_ARMY_MAX``, or int32 (the wide form) when the army scale is above
``NARROW_ARMY_SCALE_MAX`` (below it every army from ``NARROW_ARMY_MAX`` up expands to
1.0, so uint16 armies expand exactly); uint8 armies (up to ``BYTE_ARMY_MAX``, exact)
expand too. Its action mask is ``(H*W*4 + 7) // 8`` bytes,
mask entry ``i`` at bit ``i % 8`` of byte ``i // 8`` (``np.unpackbits(...,
bitorder="little")`` order).

Tile codes: ``CODE_FOG`` (hidden), ``CODE_FOG_OBSTACLE`` (a hidden mountain or city,
only with ``obstacles=True``), and for visible tiles ``visible_code(relation, kind)``
with relation ``NEUTRAL``, ``OWN``, ``ENEMY``, ``TEAM`` and kind 0 plain, 1 mountain,
2 city, 3 general.

:func:`expand` turns compact views into the float observations a ``VecEnv`` with
``observation_format="float"`` gives, bit for bit, for any army scaling;
:func:`expand_masks` the packed masks into its bool masks; :func:`view_action_masks`
makes the packed masks from the views alone (what the compact stream's consumer
does: the stream does not send them). They run in C++ without the GIL, on every
core for large batches. ``generals_rl.torch`` does the same for
torch tensors on any device.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core

TILE_CODES = _core.TILE_CODES
CODE_FOG = _core.CODE_FOG
CODE_FOG_OBSTACLE = _core.CODE_FOG_OBSTACLE
NEUTRAL, OWN, ENEMY, TEAM = range(4)
# Per observation channel, the set of codes (bit ``code``) with a 1 in it; the first
# ARMY_CHANNELS channels hold the scaled army there instead.
CHANNEL_CODES = tuple(_core.CHANNEL_CODES)
ARMY_CHANNELS = _core.ARMY_CHANNELS
NARROW_ARMY_MAX = _core.NARROW_ARMY_MAX
NARROW_ARMY_SCALE_MAX = _core.NARROW_ARMY_SCALE_MAX
# The largest uint8 army: byte armies (the compact stream's, when every army of a
# batch fits) hold exact values.
BYTE_ARMY_MAX = _core.BYTE_ARMY_MAX
OBSERVATION_FORMATS = ("float", "compact")


def visible_code(relation: int, kind: int) -> int:
    """The code of a visible tile: ``relation`` (NEUTRAL, OWN, ENEMY, TEAM) to the player
    and its ``kind`` (0 plain, 1 mountain, 2 city, 3 general)."""
    return _core.FIRST_VISIBLE_CODE + 4 * relation + kind


def army_dtype(army_scale: float) -> np.dtype:
    """The dtype of compact armies for ``army_scale``: uint16, or int32 above
    ``NARROW_ARMY_SCALE_MAX``."""
    return np.dtype(np.int32 if army_scale > NARROW_ARMY_SCALE_MAX else np.uint16)


def packed_mask_bytes(height: int, width: int) -> int:
    """Bytes of one packed action mask."""
    return (height * width * 4 + 7) // 8


class CompactObservations(NamedTuple):
    """Compact views: ``tiles`` uint8 ``(..., H, W)`` and ``armies`` of the same shape."""

    tiles: np.ndarray
    armies: np.ndarray

    def expand(self, **options) -> np.ndarray:
        """:func:`expand` of these views (``options``: its keyword arguments)."""
        return expand(self.tiles, self.armies, **options)


def expand(
    tiles,
    armies,
    *,
    army_scaling: str = "linear",
    army_scale: float = 1000.0,
    obstacles: bool = False,
    num_threads: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Float32 observations ``(..., channels, H, W)`` of compact views ``tiles``/``armies``
    (``(..., H, W)``), as the float observation format computes them, written into
    ``out`` when given (reused across batches: no new pages to fault in). ``num_threads``:
    threads for large batches (``None``: every core; 1: the calling thread)."""
    return _core.expand_observations(
        tiles, armies, army_scaling, army_scale, obstacles, _threads(num_threads), out
    )


def expand_masks(
    action_masks, height: int, width: int, *, num_threads: int | None = None
) -> np.ndarray:
    """Bool action masks ``(..., H*W*4)`` of packed masks ``(..., packed_mask_bytes)``."""
    return _core.unpack_action_masks(action_masks, height, width, _threads(num_threads))


def view_action_masks(tiles, armies, views=None, *, num_threads: int | None = None) -> np.ndarray:
    """Packed action masks ``(rows, packed_mask_bytes)`` made from compact views alone
    (``tiles``/``armies`` of shape ``(views, H, W)``; row i from view ``views[i]``, every
    view when None): an own tile with 2 or more armies is open towards each neighbour
    on the board that is not a mountain. An own tile sees its neighbours, so these are
    the engine's masks of the view's state and player, bit for bit."""
    if views is None:
        views = np.arange(np.shape(tiles)[0], dtype=np.int32)
    return _core.view_action_masks(tiles, armies, views, _threads(num_threads))


def encode_compact(
    kind,
    owner,
    army,
    player: int,
    *,
    obstacles: bool = False,
    wide: bool = False,
    teams: list[int] | None = None,
):
    """The compact view of ``player`` of one board (``kind``, ``owner``, ``army`` of
    shape ``(H, W)``; ``teams``: one team per player, every player alive):
    ``(CompactObservations, packed action mask)``; int32 armies with ``wide``."""
    tiles, armies, mask = _core.encode_compact(
        kind, owner, army, player, obstacles, wide, list(teams or ())
    )
    return CompactObservations(tiles, armies), mask


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return 0
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads: expected a positive integer or None, got {num_threads!r}")
    return num_threads
