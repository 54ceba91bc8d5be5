"""The flat action index, in bulk.

A full move from tile ``(x, y)`` in direction ``d`` (0 up, 1 down, 2 left, 3 right)
is ``((y * W) + x) * 4 + d``; ``H * W * 4 + i`` is the half move ("50%") of ``i``;
``-1`` is a pass.
"""

from __future__ import annotations

import numpy as np

PASS = -1
UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
# (dy, dx) of each direction, as the action index defines them.
OFFSETS = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


def encode_actions(x, y, direction, half, height: int, width: int) -> np.ndarray:
    """Flat action indices (int32) from arrays (or scalars) of x, y, direction, half."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    direction = np.asarray(direction, dtype=np.int64)
    half = np.asarray(half, dtype=bool)
    if np.any((x < 0) | (x >= width)):
        raise ValueError(f"x: expected 0..{width - 1}, got {x[(x < 0) | (x >= width)].ravel()[:5]}")
    if np.any((y < 0) | (y >= height)):
        raise ValueError(
            f"y: expected 0..{height - 1}, got {y[(y < 0) | (y >= height)].ravel()[:5]}"
        )
    if np.any((direction < 0) | (direction > 3)):
        wrong = direction[(direction < 0) | (direction > 3)].ravel()[:5]
        raise ValueError(f"direction: expected 0..3, got {wrong}")
    index = ((y * width) + x) * 4 + direction + half * (height * width * 4)
    return index.astype(np.int32)


def decode_actions(index, height: int, width: int):
    """``(x, y, direction, half)`` arrays from flat indices; a pass (-1) decodes to -1s."""
    index = np.asarray(index, dtype=np.int64)
    full = height * width * 4
    if np.any((index < PASS) | (index >= 2 * full)):
        bad = index[(index < PASS) | (index >= 2 * full)].ravel()[:5]
        raise ValueError(f"index: expected -1..{2 * full - 1}, got {bad}")
    passed = index == PASS
    half = index >= full
    base = np.where(half, index - full, index)
    tile = base // 4
    x = np.where(passed, -1, tile % width).astype(np.int32)
    y = np.where(passed, -1, tile // width).astype(np.int32)
    direction = np.where(passed, -1, base % 4).astype(np.int32)
    return x, y, direction, half & ~passed


def gym_pass_action(height: int, width: int) -> int:
    """The pass in the Gymnasium encoding (``Discrete(H*W*8 + 1)``): the last action."""
    return height * width * 8


def to_gym_actions(index, height: int, width: int) -> np.ndarray:
    """VecEnv flat indices (``-1`` passes) to Gymnasium actions (``H*W*8`` passes), in bulk."""
    index = np.asarray(index, dtype=np.int64)
    passing = gym_pass_action(height, width)
    if np.any((index < PASS) | (index >= passing)):
        bad = index[(index < PASS) | (index >= passing)].ravel()[:5]
        raise ValueError(f"index: expected -1..{passing - 1}, got {bad}")
    return np.where(index == PASS, passing, index).astype(np.int64)


def from_gym_actions(action, height: int, width: int) -> np.ndarray:
    """Gymnasium actions (``H*W*8`` passes) to VecEnv flat indices (int32, ``-1`` passes)."""
    action = np.asarray(action, dtype=np.int64)
    passing = gym_pass_action(height, width)
    if np.any((action < 0) | (action > passing)):
        bad = action[(action < 0) | (action > passing)].ravel()[:5]
        raise ValueError(f"action: expected 0..{passing} ({passing} passes), got {bad}")
    return np.where(action == passing, PASS, action).astype(np.int32)


def to_gym_masks(masks, dtype=np.int8) -> np.ndarray:
    """VecEnv action masks ``(..., H*W*4)`` (full moves) to Gymnasium masks
    ``(..., H*W*8 + 1)``: each half move as its full move, the pass always legal."""
    masks = np.asarray(masks, dtype=bool)
    out = np.empty((*masks.shape[:-1], 2 * masks.shape[-1] + 1), dtype=dtype)
    out[..., : masks.shape[-1]] = masks
    out[..., masks.shape[-1] : 2 * masks.shape[-1]] = masks
    out[..., -1] = 1
    return out


def from_gym_masks(masks) -> np.ndarray:
    """Gymnasium masks ``(..., H*W*8 + 1)`` to VecEnv masks ``(..., H*W*4)`` (bool, the full
    moves; the half moves and the pass follow from them)."""
    masks = np.asarray(masks)
    if masks.shape[-1] % 8 != 1:
        raise ValueError(f"masks: the last axis must be H*W*8 + 1 long, got {masks.shape[-1]}")
    return masks[..., : (masks.shape[-1] - 1) // 2].astype(bool)


def capturing_moves(owner, army, tile: int, player: int, height: int, width: int) -> list[int]:
    """``player``'s full moves that take ``tile`` (flat indices, the same in the Gymnasium
    encoding): from an own neighbour whose army, less the one it leaves behind, beats the
    tile's. ``owner`` and ``army`` are a board's flat ``H*W`` arrays."""
    owner = np.asarray(owner).reshape(height, width)
    army = np.asarray(army).reshape(height, width)
    if not 0 <= tile < height * width:
        raise ValueError(f"tile: expected 0..{height * width - 1}, got {tile}")
    ty, tx = divmod(int(tile), width)
    moves = []
    for direction, (dy, dx) in OFFSETS.items():
        y, x = ty - dy, tx - dx  # the source one step back from the tile
        on_board = 0 <= y < height and 0 <= x < width
        if on_board and owner[y, x] == player and army[y, x] - 1 > army[ty, tx]:
            moves.append(int(encode_actions(x, y, direction, False, height, width)))
    return moves
