"""The compact stream's layout version 2: views coded as keyframes and deltas rebuild
the views of version 1 bit for bit, and action masks made from views alone equal the
engine's (random boards with fog, cities, generals, teams, obstacles and wide armies;
self-play states; the numpy and the torch paths)."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl import _core, observations
from generals_rl import torch as gtorch
from generals_rl.experience import CompactBatch
from generals_rl.observations import encode_compact, view_action_masks
from generals_rl.service.compact_packing import pack_compact, unpack_compact
from service_support import everything, fill, make_buffer
from test_compact_observations import paired_envs, random_board


def _torch_masks(tiles, armies) -> np.ndarray:
    tensors = gtorch.as_tensor(tiles), gtorch.as_tensor(armies)
    return gtorch._action_masks_tensor_ops(*tensors).numpy()


def test_masks_made_from_views_equal_the_engines_on_random_boards():
    rng = np.random.default_rng(15)
    for board in range(2_000):
        players = int(rng.integers(2, 9))
        kind, owner, army = random_board(rng, players)
        teams = [int(t) for t in rng.integers(0, 3, size=players)] if rng.random() < 0.5 else None
        player = int(rng.integers(players))
        view, engine_mask = encode_compact(
            kind,
            owner,
            army,
            player,
            obstacles=bool(rng.random() < 0.5),
            wide=bool(rng.random() < 0.5),
            teams=teams,
        )
        tiles, armies = view.tiles[None], view.armies[None]
        np.testing.assert_array_equal(view_action_masks(tiles, armies)[0], engine_mask)
        if board % 10 == 0:  # the tensor operations, on a tenth of them (slower per board)
            h, w = kind.shape
            want = observations.expand_masks(engine_mask, h, w)
            np.testing.assert_array_equal(_torch_masks(tiles, armies)[0], want)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"obstacles": True},
        {"teams": [0, 0, 1, 1], "army_scale": 40.0},
        {"army_scale": 1e5},  # wide armies
    ],
)
def test_masks_made_from_views_equal_the_vec_envs_over_whole_games(options):
    _, env = paired_envs(**options)
    obs, info = env.reset()
    rng = np.random.default_rng(1)
    for _ in range(60):
        tiles = obs.tiles.reshape(-1, *obs.tiles.shape[-2:])
        armies = obs.armies.reshape(tiles.shape)
        engine = info["action_masks"].reshape(len(tiles), -1)
        np.testing.assert_array_equal(view_action_masks(tiles, armies, num_threads=2), engine)
        if int(armies.max()) <= observations.BYTE_ARMY_MAX:  # as the stream's byte views
            np.testing.assert_array_equal(view_action_masks(tiles, armies.astype(np.uint8)), engine)
        bools = gtorch.action_masks(gtorch.as_tensor(tiles), gtorch.as_tensor(armies))
        np.testing.assert_array_equal(bools.numpy(), observations.expand_masks(engine, 9, 11))
        np.testing.assert_array_equal(_torch_masks(tiles, armies), bools.numpy())
        masks = observations.expand_masks(engine, 9, 11).reshape(8, 4, -1)
        actions = np.array(
            [[rng.choice(np.flatnonzero(m)) if m.any() else -1 for m in game] for game in masks],
            dtype=np.int32,
        )
        obs, *_, info = env.step(actions)


@pytest.fixture(scope="module")
def raw():
    buffer = make_buffer()
    fill(buffer, 1_500, max_ticks=80)
    return everything(buffer)


def _selection(raw, which: str):
    n = len(raw)
    rng = np.random.default_rng(5)
    return {
        "all": raw,
        "shuffled": raw.select(rng.permutation(n)),
        "subset": raw.select(np.sort(rng.choice(n, n // 4, replace=False))),
        "single": raw.select(np.array([n // 2])),
        "empty": raw.select(np.zeros(n, dtype=bool)),
    }[which]


@pytest.mark.parametrize("which", ["all", "shuffled", "subset", "single", "empty"])
@pytest.mark.parametrize("army_scale,huge", [(1000.0, False), (1000.0, True), (100_000.0, True)])
@pytest.mark.parametrize("obstacles", [False, True])
def test_coded_views_rebuild_the_whole_views_bit_for_bit(raw, which, army_scale, huge, obstacles):
    rows = _selection(raw, which)
    if huge:  # uint16 or int32 armies instead of bytes
        bigger = np.where(rows.state_army > 0, rows.state_army + 70_000, 0)
        rows.state_army = bigger.astype(np.int32)
    sent = CompactBatch.from_raw(rows, army_scale=army_scale, obstacles=obstacles, indexed=True)
    packed, parts = pack_compact(sent, obstacles)
    packed.payload = b"".join(bytes(part) for part in parts)
    got = unpack_compact(packed)
    assert got.views is not None and sent.views is not None
    for name in ("tiles", "armies", "state_view", "next_state_view"):
        want, have = getattr(sent.views, name), getattr(got.views, name)
        assert have.dtype == want.dtype, name
        np.testing.assert_array_equal(have, want, err_msg=name)
    # the masks the consumer makes equal the engine's the server would have sent
    np.testing.assert_array_equal(got.action_mask, sent.action_mask)
    views = len(sent.views.tiles)
    assert packed.view_count == views
    if which == "all" and views:  # a keyframe per (game, player) chain, deltas for the rest
        chains = len(np.unique(rows.game_id.astype(np.int64) * 16 + rows.player_id))
        assert packed.keyframe_count == chains
        assert packed.change_count < (views - chains) * rows.height * rows.width // 4


def test_a_batch_read_from_the_buffer_costs_a_fraction_of_its_whole_views(raw):
    sent = CompactBatch.from_raw(raw, indexed=True)
    _, parts = pack_compact(sent, False)
    whole = sent.views.tiles.nbytes + sent.views.armies.nbytes + sent.action_mask.nbytes
    coded = sum(memoryview(part).nbytes for part in parts)
    assert coded * 4 < whole


def test_view_coding_refuses_bad_input_naming_it(raw):
    sent = CompactBatch.from_raw(raw.select(np.arange(30)), indexed=True)
    views = sent.views
    with pytest.raises(ValueError, match="state_view: row 3 refers to view"):
        bad = views.state_view.copy()
        bad[3] = len(views.tiles)
        _core.view_deltas(views.tiles, views.armies, bad, views.next_state_view)
    with pytest.raises(ValueError, match="armies: expected the shape of tiles"):
        _core.view_deltas(views.tiles, views.armies[:-1], views.state_view, views.next_state_view)
    with pytest.raises(ValueError, match="armies: expected uint8, uint16 or int32, got float32"):
        _core.view_deltas(
            views.tiles, views.armies.astype(np.float32), views.state_view, views.next_state_view
        )
    index = (views.state_view, views.next_state_view)
    coded = list(_core.view_deltas(views.tiles, views.armies, *index))
    with pytest.raises(ValueError, match="change_army: expected the dtype of key_armies"):
        _core.undelta_views(*coded[:6], coded[6].astype(np.float32))
    with pytest.raises(ValueError, match="delta_end: expected 2 values"):
        _core.undelta_views(coded[0][:2], *coded[1:])
    longer = np.append(coded[5], np.uint8(2))
    with pytest.raises(ValueError, match=r"change_code: expected (\d+) values \(one a change\)"):
        _core.undelta_views(*coded[:5], longer, coded[6])
    with pytest.raises(ValueError, match="views: row 0 refers to view 99"):
        view_action_masks(views.tiles, views.armies, np.array([99], dtype=np.int32))
    tiles = views.tiles.copy()
    tiles[1, 2, 3] = _core.TILE_CODES
    with pytest.raises(ValueError, match="tiles: code 18 at flat index"):
        view_action_masks(tiles, views.armies)
    with pytest.raises(ValueError, match="tiles: codes must be below 18"):
        _torch_masks(tiles, views.armies)


def test_recycled_outputs_never_change_the_views_a_caller_holds(raw):
    sent = CompactBatch.from_raw(raw, indexed=True)
    packed, parts = pack_compact(sent, False)
    packed.payload = b"".join(bytes(part) for part in parts)
    held = unpack_compact(packed)
    want_tiles, want_masks = held.views.tiles.copy(), held.action_mask.copy()
    for _ in range(6):  # batches made and dropped: their memory is handed on
        other = unpack_compact(packed)
        assert not np.shares_memory(other.views.tiles, held.views.tiles)
        other.views.tiles[:] = 0  # the caller owns its arrays
        other.action_mask[:] = 0
        del other
    np.testing.assert_array_equal(held.views.tiles, want_tiles)
    np.testing.assert_array_equal(held.action_mask, want_masks)
    again = unpack_compact(packed)  # recycled memory, rewritten whole
    np.testing.assert_array_equal(again.views.tiles, want_tiles)
    np.testing.assert_array_equal(again.action_mask, want_masks)
