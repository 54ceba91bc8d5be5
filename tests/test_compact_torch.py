"""generals_rl.torch: compact views expanded by torch equal the numpy expansion (and so
the float observations) bit for bit, through the C++ kernels on the CPU and through
the tensor operations used on other devices (run here on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the train or test extra)")

import generals_rl.torch as gtorch
from generals_rl.observations import encode_compact, expand, expand_masks
from generals_rl.vec_env import VecEnv


def random_views(seed: int, rows: int, wide: bool):
    rng = np.random.default_rng(seed)
    tiles, armies, masks = [], [], []
    for _ in range(rows):
        kind = rng.choice(4, size=(7, 9), p=[0.6, 0.2, 0.15, 0.05]).astype(np.uint8)
        owner = rng.integers(-1, 4, size=(7, 9)).astype(np.int16)
        owner[kind == 1] = -1
        army = rng.integers(0, 500, size=(7, 9)).astype(np.int32)
        army[rng.random((7, 9)) < 0.05] = rng.integers(65_000, 2**31 - 1)
        view, mask = encode_compact(
            kind, owner, army, int(rng.integers(4)), obstacles=True, wide=wide, teams=[0, 1, 0, 2]
        )
        tiles.append(view.tiles)
        armies.append(view.armies)
        masks.append(mask)
    return np.stack(tiles), np.stack(armies), np.stack(masks)


@pytest.mark.parametrize(
    "army_scaling,army_scale,wide",
    [("linear", 1000.0, False), ("log", 1000.0, False), ("log", 1e5, True), ("linear", 3e6, True)],
)
@pytest.mark.parametrize("obstacles", [False, True])
def test_torch_expand_is_bit_identical(army_scaling, army_scale, wide, obstacles):
    tiles, armies, masks = random_views(7, 300, wide)
    options = dict(army_scaling=army_scaling, army_scale=army_scale, obstacles=obstacles)
    want = expand(tiles, armies, **options)
    t_tiles, t_armies = gtorch.as_tensor(tiles), gtorch.as_tensor(armies)
    assert t_tiles.data_ptr() == tiles.ctypes.data  # no copy
    on_cpu = gtorch.expand(t_tiles, t_armies, **options)
    ops = gtorch._expand_tensor_ops(t_tiles, t_armies, army_scaling, army_scale, obstacles)
    assert on_cpu.dtype == ops.dtype == torch.float32
    assert on_cpu.numpy().tobytes() == want.tobytes()
    assert ops.numpy().tobytes() == want.tobytes()
    want_masks = expand_masks(masks, 7, 9)
    assert np.array_equal(gtorch.expand_masks(torch.from_numpy(masks), 7, 9).numpy(), want_masks)
    assert np.array_equal(
        gtorch._expand_masks_tensor_ops(torch.from_numpy(masks), 7, 9).numpy(), want_masks
    )


@pytest.mark.parametrize("army_scaling,army_scale", [("linear", 100.0), ("log", 1e6)])
def test_byte_armies_expand_as_the_same_armies_in_uint16(army_scaling, army_scale):
    tiles, armies, _ = random_views(3, 200, False)
    armies = np.minimum(armies, 255)
    options = dict(army_scaling=army_scaling, army_scale=army_scale, obstacles=True)
    want = expand(tiles, armies.astype(np.int32), **options)
    byte_tiles, byte_armies = gtorch.as_tensor(tiles), gtorch.as_tensor(armies.astype(np.uint8))
    assert expand(tiles, armies.astype(np.uint8), **options).tobytes() == want.tobytes()
    assert gtorch.expand(byte_tiles, byte_armies, **options).numpy().tobytes() == want.tobytes()
    ops = gtorch._expand_tensor_ops(byte_tiles, byte_armies, army_scaling, army_scale, True)
    assert ops.numpy().tobytes() == want.tobytes()


def test_torch_expand_of_vec_env_output_equals_float_env():
    common = dict(num_envs=4, players=2, height=10, width=10, seed=9, army_scaling="log")
    float_env = VecEnv(**common)
    compact_env = VecEnv(**common, observation_format="compact")
    obs_f, info_f = float_env.reset()
    obs_c, info_c = compact_env.reset()
    tiles, armies = gtorch.as_tensor(obs_c.tiles), gtorch.as_tensor(obs_c.armies)
    got = gtorch._expand_tensor_ops(tiles, armies, "log", 1000.0, False)
    assert got.numpy().tobytes() == obs_f.tobytes()
    masks = gtorch.expand_masks(gtorch.as_tensor(info_c["action_masks"]), 10, 10)
    assert np.array_equal(masks.numpy(), info_f["action_masks"])


def test_torch_expand_rejects_bad_input():
    tiles = torch.zeros((3, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="armies: expected uint8, uint16 or int32"):
        gtorch.expand(tiles, torch.zeros((3, 3), dtype=torch.int64))
    with pytest.raises(ValueError, match="armies: expected the shape"):
        gtorch.expand(tiles, torch.zeros((2, 3), dtype=torch.int32))
    with pytest.raises(ValueError, match="tiles: codes must be below"):
        gtorch._expand_tensor_ops(tiles + 30, tiles.to(torch.int32), "linear", 1000.0, False)
    with pytest.raises(ValueError, match="army_scale"):
        gtorch._expand_tensor_ops(
            tiles, torch.zeros((3, 3), dtype=torch.uint16), "linear", 1e5, False
        )
    with pytest.raises(TypeError, match="tiles: expected a tensor"):
        gtorch.expand(np.zeros((3, 3), dtype=np.uint8), tiles)
