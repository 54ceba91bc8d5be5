"""Compact observations as torch tensors, expanded on the trainer's device.

:func:`as_tensor` hands a numpy array (a VecEnv output, a batch column) to torch
without copying; :func:`expand` and :func:`expand_masks` give the float observations
and bool masks of ``generals_rl.observations.expand`` bit for bit, and
:func:`action_masks` the masks of views that came without them, on any device: on
the CPU through the same C++ kernels (every core, no GIL), elsewhere with tensor
operations (an army table computed by the C++ scaling, so the values are the same).

Needs torch (``pip install 'generals-rl[train]'``).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from generals_rl import _core
from generals_rl.observations import CHANNEL_CODES, NARROW_ARMY_MAX, NARROW_ARMY_SCALE_MAX


def as_tensor(array: np.ndarray, *, pin_memory: bool = False) -> torch.Tensor:
    """A tensor over ``array``'s memory (no copy). The VecEnv's outputs are read-only
    views its next step overwrites: the tensor shares them, so copy what you keep and
    do not write into it. ``pin_memory`` copies into page-locked memory instead (for
    asynchronous transfers to an accelerator; needs one)."""
    with warnings.catch_warnings():
        # torch warns on read-only arrays; the tensor is documented as a read-only view
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.pin_memory() if pin_memory else tensor


def expand(
    tiles: torch.Tensor,
    armies: torch.Tensor,
    *,
    army_scaling: str = "linear",
    army_scale: float = 1000.0,
    obstacles: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float32 observations ``(..., channels, H, W)`` on the device of ``tiles``
    (uint8 ``(..., H, W)``) and ``armies`` (uint8, uint16 or int32, same shape); on the CPU
    written into ``out`` when given (reused across batches)."""
    _check_pair(tiles, armies)
    if tiles.device.type == "cpu":
        target = None if out is None else out.numpy()
        result = _core.expand_observations(
            _numpy(tiles), _numpy(armies), army_scaling, army_scale, obstacles, 0, target
        )
        return out if out is not None else torch.from_numpy(result)
    return _expand_tensor_ops(tiles, armies, army_scaling, army_scale, obstacles)


def expand_masks(action_masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bool masks ``(..., H*W*4)`` of packed ones (uint8 ``(..., (H*W*4 + 7) // 8)``)."""
    if not isinstance(action_masks, torch.Tensor):
        raise TypeError(f"action_masks: expected a tensor, got {type(action_masks).__name__}")
    if action_masks.device.type == "cpu":
        return torch.from_numpy(_core.unpack_action_masks(_numpy(action_masks), height, width, 0))
    return _expand_masks_tensor_ops(action_masks, height, width)


def action_masks(tiles: torch.Tensor, armies: torch.Tensor) -> torch.Tensor:
    """Bool action masks ``(..., H*W*4)`` made from compact views (``tiles`` uint8
    ``(..., H, W)``, ``armies`` of the same shape) on their device: the masks the
    engine gives for the views' states and players (as
    ``observations.view_action_masks``), for streams that do not send masks."""
    _check_pair(tiles, armies)
    if tiles.device.type == "cpu":
        height, width = tiles.shape[-2:]
        flat_tiles, flat_armies = _numpy(tiles), _numpy(armies)
        boards = flat_tiles.reshape(-1, height, width)
        packed = _core.view_action_masks(
            boards,
            flat_armies.reshape(boards.shape),
            np.arange(len(boards), dtype=np.int32),
            0,
        )
        masks = _core.unpack_action_masks(packed, height, width, 0)
        return torch.from_numpy(masks.reshape(*tiles.shape[:-2], -1))
    return _action_masks_tensor_ops(tiles, armies)


def _check_pair(tiles, armies) -> None:
    for name, value in (("tiles", tiles), ("armies", armies)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(value).__name__}")
    if tiles.dtype != torch.uint8:
        raise ValueError(f"tiles: expected uint8 tile codes, got {tiles.dtype}")
    if armies.dtype not in (torch.uint8, torch.uint16, torch.int32):
        raise ValueError(f"armies: expected uint8, uint16 or int32, got {armies.dtype}")
    if tiles.shape != armies.shape or tiles.dim() < 2:
        raise ValueError(
            f"armies: expected the shape of tiles {tuple(tiles.shape)} (..., height, width), "
            f"got {tuple(armies.shape)}"
        )
    if tiles.device != armies.device:
        raise ValueError(f"armies: on {armies.device}, tiles on {tiles.device}")


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


@functools.lru_cache(maxsize=16)
def _channel_table(obstacles: bool, device: torch.device) -> torch.Tensor:
    """(codes, channels) float: 1 where a tile of that code has a 1 in the channel."""
    channels = len(CHANNEL_CODES) if obstacles else len(CHANNEL_CODES) - 1
    table = [[float(CHANNEL_CODES[c] >> code & 1) for c in range(channels)] for code in range(32)]
    return torch.tensor(table, dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=16)
def _army_table(army_scaling: str, army_scale: float, device: torch.device) -> torch.Tensor:
    """The scaled value of every army 0..NARROW_ARMY_MAX, computed by the C++ scaling."""
    values = _core.army_values(np.arange(NARROW_ARMY_MAX + 1), army_scaling, army_scale)
    return torch.from_numpy(values).to(device)


def _expand_tensor_ops(tiles, armies, army_scaling, army_scale, obstacles) -> torch.Tensor:
    """expand with tensor operations only (any device)."""
    _check_pair(tiles, armies)
    if tiles.numel() and int(tiles.max()) >= _core.TILE_CODES:
        raise ValueError(f"tiles: codes must be below {_core.TILE_CODES}")
    wide = armies.dtype == torch.int32
    if armies.dtype == torch.uint16 and army_scale > NARROW_ARMY_SCALE_MAX:
        raise ValueError(
            f"armies: uint16 armies expand exactly only up to army_scale {NARROW_ARMY_SCALE_MAX}, "
            f"got army_scale {army_scale}: use int32 armies"
        )
    device = tiles.device
    if wide and armies.numel() and int(armies.min()) < 0:
        raise ValueError("armies: must be >= 0")
    # index_select with int32 indices: no int64 copy of the batch
    narrow = armies.to(torch.int32)
    if wide:
        narrow = narrow.clamp(max=NARROW_ARMY_MAX)
    narrow = narrow.flatten()
    values = _army_table(army_scaling, float(army_scale), device).index_select(0, narrow)
    values = values.view(armies.shape)
    if wide:
        beyond = armies > NARROW_ARMY_MAX
        if bool(beyond.any()):  # rare: computed by the C++ scaling on the host
            exact = _core.army_values(armies[beyond].cpu().numpy(), army_scaling, army_scale)
            values[beyond] = torch.from_numpy(exact).to(device)
    table = _channel_table(obstacles, device)
    out = table.index_select(0, tiles.to(torch.int32).flatten())  # (tiles, C)
    out = out.view(*tiles.shape, table.shape[1]).movedim(-1, -3).contiguous()
    army_channels = _core.ARMY_CHANNELS
    out[..., :army_channels, :, :] *= values.unsqueeze(-3)
    return out


def _expand_masks_tensor_ops(action_masks, height: int, width: int) -> torch.Tensor:
    """expand_masks with tensor operations only (any device)."""
    entries = height * width * 4
    if action_masks.dtype != torch.uint8 or action_masks.shape[-1] != (entries + 7) // 8:
        raise ValueError(
            f"action_masks: expected uint8 (..., {(entries + 7) // 8}), got {action_masks.dtype} "
            f"{tuple(action_masks.shape)}"
        )
    shifts = torch.arange(8, dtype=torch.uint8, device=action_masks.device)
    bits = (action_masks.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2)[..., :entries].bool()


@functools.lru_cache(maxsize=16)
def _code_table(codes: int, device: torch.device) -> torch.Tensor:
    """(32,) bool: whether each tile code is in the set ``codes`` (bit per code)."""
    return torch.tensor([bool(codes >> code & 1) for code in range(32)], device=device)


def _action_masks_tensor_ops(tiles, armies) -> torch.Tensor:
    """action_masks with tensor operations only (any device)."""
    _check_pair(tiles, armies)
    if tiles.numel() and int(tiles.max()) >= _core.TILE_CODES:
        raise ValueError(f"tiles: codes must be below {_core.TILE_CODES}")
    codes = tiles.to(torch.int32)
    own = _code_table(_core.OWN_TILE_CODES, tiles.device)[codes]
    movable = own & (armies.to(torch.int32) >= 2)
    passable = ~_code_table(_core.MOUNTAIN_CODES, tiles.device)[codes]
    # Off the board is closed: a border of impassable tiles.
    padded = torch.nn.functional.pad(passable.to(torch.uint8), (1, 1, 1, 1)).bool()
    up, down = padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]
    left, right = padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]
    open_towards = torch.stack([up, down, left, right], dim=-1) & movable.unsqueeze(-1)
    return open_towards.flatten(-3)
