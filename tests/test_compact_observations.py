"""Compact observations: expanded by numpy and by torch, they equal the float
observations and masks bit for bit (against an independent numpy reference and the
float VecEnv), on random boards with fog, cities, generals, teams and wide armies."""

from __future__ import annotations

import numpy as np
import pytest
from generals_rl import _core, observations
from generals_rl.observations import CompactObservations, encode_compact, expand, expand_masks
from generals_rl.vec_env import VecEnv

SCALINGS = [
    ("linear", 1000.0),
    ("log", 1000.0),
    ("linear", 7.0),
    ("log", 50_000.0),
    ("linear", 1e6),
]


def random_board(rng: np.random.Generator, players: int):
    h, w = rng.integers(2, 13, size=2)
    kind = rng.choice(4, size=(h, w), p=[0.6, 0.2, 0.15, 0.05]).astype(np.uint8)
    owner = rng.integers(-1, players, size=(h, w)).astype(np.int16)
    owner[(kind == 1) | (rng.random((h, w)) < 0.4)] = -1  # mountains are never owned; some fog
    army = rng.integers(0, 300, size=(h, w)).astype(np.int32)
    wide = rng.random((h, w)) < 0.05
    army[wide] = rng.integers(60_000, 2**31 - 1, size=int(wide.sum()))
    army[rng.random((h, w)) < 0.1] = 1
    return kind, owner, army


def reference(kind, owner, army, player, teams, army_scaling, army_scale, obstacles):
    """The float observation and bool mask as documented, computed with numpy."""
    players = max(int(owner.max()) + 1, player + 1, len(teams or ()))
    team_of = list(teams) if teams else list(range(players))
    friends = [q for q in range(len(team_of)) if team_of[q] == team_of[player]]
    sight = np.pad(np.isin(owner, friends), 1)
    h, w = kind.shape
    visible = np.zeros((h, w), dtype=bool)
    for dy in range(3):
        for dx in range(3):
            visible |= sight[dy : dy + h, dx : dx + w]
    mine = owner == player
    enemy = visible & (owner >= 0) & ~np.isin(owner, friends)
    if army_scaling == "linear":
        inv = np.float32(1) / np.float32(army_scale)
        values = np.minimum(army.astype(np.float32) * inv, np.float32(1))
    else:  # the C++ scaling: numpy's log1p may round differently from the C library's
        values = _core.army_values(army, army_scaling, army_scale)
    channels = [
        np.where(mine, values, 0),
        np.where(enemy, values, 0),
        mine,
        enemy,
        visible & (owner == -1) & (kind != 1),
        visible & ((kind == 2) | (kind == 3)),
        visible & (kind == 1),
        visible,
        ~visible,
    ]
    if obstacles:
        channels.append(~visible & ((kind == 1) | (kind == 2)))
    obs = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
    mask = np.zeros((h, w, 4), dtype=bool)
    movable = mine & (army >= 2)
    for d, (dy, dx) in enumerate(((-1, 0), (1, 0), (0, -1), (0, 1))):
        for y, x in zip(*np.nonzero(movable), strict=True):
            ny, nx = y + dy, x + dx
            mask[y, x, d] = 0 <= ny < h and 0 <= nx < w and kind[ny, nx] != 1
    return obs, mask.reshape(-1)


def test_linear_army_values_match_numpy():
    army = np.array([0, 1, 2, 999, 1000, 1001, 65535, 65536, 2**31 - 1])
    inv = np.float32(1) / np.float32(1000.0)
    expected = np.minimum(army.astype(np.float32) * inv, np.float32(1))
    assert _core.army_values(army, "linear", 1000.0).tobytes() == expected.tobytes()


@pytest.mark.parametrize("army_scaling,army_scale", SCALINGS)
def test_expand_equals_reference_on_random_boards(army_scaling, army_scale):
    rng = np.random.default_rng(hash((army_scaling, army_scale)) % 2**32)
    wide = army_scale > observations.NARROW_ARMY_SCALE_MAX
    checked = 0
    for _ in range(400):
        players = int(rng.integers(2, 9))
        kind, owner, army = random_board(rng, players)
        teams = None
        if rng.random() < 0.5:
            teams = [int(t) for t in rng.integers(0, 3, size=players)]
        obstacles = bool(rng.random() < 0.5)
        player = int(rng.integers(players))
        view, packed = encode_compact(
            kind, owner, army, player, obstacles=obstacles, wide=wide, teams=teams
        )
        assert view.armies.dtype == observations.army_dtype(army_scale)
        want_obs, want_mask = reference(
            kind, owner, army, player, teams, army_scaling, army_scale, obstacles
        )
        got = view.expand(army_scaling=army_scaling, army_scale=army_scale, obstacles=obstacles)
        assert got.tobytes() == want_obs.tobytes()
        h, w = kind.shape
        assert np.array_equal(expand_masks(packed, h, w), want_mask)
        assert np.array_equal(np.unpackbits(packed, bitorder="little")[: h * w * 4], want_mask)
        if teams is None:  # the float path of one board (it takes no teams)
            float_obs, float_mask = _core.encode_observation(
                kind, owner, army, player, army_scaling, army_scale, obstacles
            )
            assert float_obs.tobytes() == want_obs.tobytes()
            assert np.array_equal(float_mask, want_mask)
        checked += 1
    assert checked == 400


def test_narrow_armies_saturate_and_stay_exact():
    kind = np.zeros((2, 2), dtype=np.uint8)
    owner = np.zeros((2, 2), dtype=np.int16)
    army = np.array([[5, 65535], [65536, 2**31 - 1]], dtype=np.int32)
    view, _ = encode_compact(kind, owner, army, 0)
    assert view.armies.dtype == np.uint16
    assert view.armies.tolist() == [[5, 65535], [65535, 65535]]
    for scaling in ("linear", "log"):
        want, _ = _core.encode_observation(kind, owner, army, 0, scaling, 32768.0)
        assert view.expand(army_scaling=scaling, army_scale=32768.0).tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="army_scale"):
        view.expand(army_scale=40_000.0)
    wide, _ = encode_compact(kind, owner, army, 0, wide=True)
    assert wide.armies.dtype == np.int32 and wide.armies.tolist() == army.tolist()


def test_batched_expand_uses_threads_and_matches_rows():
    rng = np.random.default_rng(5)
    boards = [random_board(rng, 4) for _ in range(64)]
    views = []
    for kind, owner, army in boards:
        k, o, a = (np.zeros((12, 12), dtype=x.dtype) for x in (kind, owner, army))
        h, w = kind.shape
        k[:h, :w], o[:h, :w], a[:h, :w] = kind, owner, army
        views.append(encode_compact(k, o, a, 1)[0])
    tiles = np.stack([v.tiles for v in views] * 20)  # 1280 rows: large enough for the pool
    armies = np.stack([v.armies for v in views] * 20)
    batch = expand(tiles, armies, army_scaling="log", num_threads=2)
    one = expand(tiles, armies, army_scaling="log", num_threads=1)
    assert batch.shape == (1280, 9, 12, 12) and batch.tobytes() == one.tobytes()
    for i in (0, 77, 1279):
        assert batch[i].tobytes() == expand(tiles[i], armies[i], army_scaling="log").tobytes()


def test_expand_rejects_bad_input():
    tiles = np.zeros((3, 3), dtype=np.uint8)
    armies = np.zeros((3, 3), dtype=np.uint16)
    with pytest.raises(ValueError, match="tiles: code 18"):
        expand(np.full((3, 3), 18, dtype=np.uint8), armies)
    with pytest.raises(ValueError, match="tiles: expected uint8"):
        expand(tiles.astype(np.int32), armies)
    with pytest.raises(ValueError, match="armies: expected the shape"):
        expand(tiles, armies[:2])
    with pytest.raises(ValueError, match="armies: must be >= 0"):
        expand(tiles, np.full((3, 3), -1, dtype=np.int32))
    with pytest.raises(ValueError, match="army_scaling"):
        expand(tiles, armies, army_scaling="sqrt")
    with pytest.raises(ValueError, match="action_masks: expected a last dimension of 5"):
        expand_masks(np.zeros((2, 4), dtype=np.uint8), 3, 3)
    with pytest.raises(ValueError, match="num_threads"):
        expand(tiles, armies, num_threads=0)
    with pytest.raises(ValueError, match="kind: 4"):
        encode_compact(np.full((2, 2), 4, dtype=np.uint8), np.zeros((2, 2)), np.zeros((2, 2)), 0)


def paired_envs(**options):
    common = dict(num_envs=8, players=4, height=9, width=11, seed=3, max_ticks=60, **options)
    return VecEnv(**common), VecEnv(**common, observation_format="compact")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"army_scaling": "log", "army_scale": 200.0, "obstacles": True},
        {"teams": [0, 0, 1, 1], "army_scale": 40.0},
        {"army_scale": 1e5},  # wide armies
    ],
)
def test_compact_vec_env_expands_to_the_float_env(options):
    float_env, compact_env = paired_envs(**options)
    obs_f, info_f = float_env.reset()
    obs_c, info_c = compact_env.reset()
    assert isinstance(obs_c, CompactObservations)
    assert obs_c.tiles.shape == (8, 4, 9, 11) and obs_c.tiles.dtype == np.uint8
    wide = options.get("army_scale", 1000.0) > observations.NARROW_ARMY_SCALE_MAX
    assert obs_c.armies.dtype == (np.int32 if wide else np.uint16)
    assert info_c["action_masks"].shape == (8, 4, observations.packed_mask_bytes(9, 11))
    rng = np.random.default_rng(0)
    finals = 0
    for _ in range(80):
        assert compact_env.expand(obs_c).tobytes() == obs_f.tobytes()
        assert np.array_equal(
            compact_env.expand_masks(info_c["action_masks"]), info_f["action_masks"]
        )
        masks = info_f["action_masks"].reshape(8, 4, -1)
        actions = np.full((8, 4), -1, dtype=np.int32)
        for i in range(8):
            for p in range(4):
                legal = np.flatnonzero(masks[i, p])
                if len(legal):
                    actions[i, p] = rng.choice(legal)
        obs_f, *_, info_f = float_env.step(actions)
        obs_c, *_, info_c = compact_env.step(actions)
        done = info_f["episode_done"]
        if done.any():
            finals += int(done.sum())
            want = info_f["final_observations"][done]
            got = compact_env.expand(info_c["final_observations"])[done]
            assert got.tobytes() == want.tobytes()
    assert finals > 0


def test_vec_env_rejects_unknown_format():
    with pytest.raises(ValueError, match="observation_format"):
        VecEnv(2, observation_format="sparse")


def test_random_policy_draws_the_same_moves_from_either_mask_or_none():
    from generals_rl.bots import RandomBot

    common = dict(num_envs=6, players=3, height=10, width=10, seed=8, max_ticks=40)
    envs = [
        VecEnv(**common),
        VecEnv(**common, observation_format="compact"),
        VecEnv(**common, observations=False, action_masks=False),
    ]
    bots = [RandomBot(seed=5) for _ in envs]
    moved = 0
    for _ in range(60):
        actions = [bot.act(env) for bot, env in zip(bots, envs, strict=True)]
        assert np.array_equal(actions[0], actions[1]) and np.array_equal(actions[0], actions[2])
        moved += int((actions[0] >= 0).sum())
        for env, a in zip(envs, actions, strict=True):
            env.step(a)
    assert moved > 100


def test_expand_writes_into_out():
    rng = np.random.default_rng(2)
    kind, owner, army = random_board(rng, 3)
    view, _ = encode_compact(kind, owner, army, 1)
    out = np.full((9, *kind.shape), np.nan, dtype=np.float32)
    assert expand(view.tiles, view.armies, out=out) is out
    assert out.tobytes() == view.expand().tobytes()
    with pytest.raises(
        ValueError, match="out: expected a writeable, aligned, C-contiguous float32"
    ):
        expand(view.tiles, view.armies, out=np.zeros((10, *kind.shape), dtype=np.float32))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda k, o, a: _core.encode_compact(k, np.full_like(o, 200), a, 0),
            ValueError,
            r"owner: 200 at flat index 0 is not -1 \(neutral\) or a player 0\.\.15",
        ),
        (
            lambda k, o, a: _core.encode_compact(k, o, np.full_like(a, -3), 0),
            ValueError,
            r"army: -3 at flat index 0 is negative",
        ),
        (
            lambda k, o, a: _core.expand_observations(
                k[None], a[None].astype(np.uint16), num_threads=-5
            ),
            ValueError,
            r"num_threads: must be 0 \(every core\) or more, got -5",
        ),
        (
            lambda k, o, a: _core.RewardConfig(win="x"),
            TypeError,
            r"reward: term 'win' expects a number, got 'x'",
        ),
    ],
)
def test_hostile_arguments_are_refused_naming_the_field(call, error, match):
    kind = np.zeros((4, 4), np.uint8)
    owner = np.full((4, 4), -1, np.int16)
    army = np.zeros((4, 4), np.int32)
    with pytest.raises(error, match=match):
        call(kind, owner, army)


@pytest.mark.parametrize("flat_index", [0, 777, 3 * 20 * 20 - 1])
def test_compact_rows_name_a_bad_tile_kind_and_where_it_is(flat_index):
    kind = np.zeros((3, 20, 20), dtype=np.uint8)
    kind.reshape(-1)[flat_index] = 4
    owner = np.full(kind.shape, -1, dtype=np.int16)
    army = np.zeros(kind.shape, dtype=np.int32)
    rows = np.zeros(2, dtype=np.int32)
    with pytest.raises(
        ValueError, match=f"state_kind: 4 at flat index {flat_index} is not a tile kind"
    ):
        _core.compact_rows(kind, owner, army, rows, rows, False, False, True, 1)
    kind.reshape(-1)[flat_index] = 3  # every kind up to a general passes
    tiles, _, _ = _core.compact_rows(kind, owner, army, rows, rows, False, False, True, 1)
    assert tiles.shape == (2, 20, 20)


@pytest.mark.parametrize("flat_index", [0, 555, 3 * 20 * 20 - 1])
@pytest.mark.parametrize(
    "call",
    [
        lambda k, o, a, rows: _core.compact_rows(k, o, a, rows, rows),
        lambda k, o, a, rows: _core.compact_experiences(k, o, a, rows, rows, rows),
        lambda k, o, a, rows: _core.compact_views(k, o, a, rows, rows, 2),
    ],
    ids=["rows", "experiences", "views"],
)
def test_views_of_state_tables_refuse_a_negative_army_naming_it(call, flat_index):
    kind = np.zeros((3, 20, 20), dtype=np.uint8)
    owner = np.zeros(kind.shape, dtype=np.int16)
    army = np.full(kind.shape, 7, dtype=np.int32)
    army.reshape(-1)[flat_index] = -3
    rows = np.zeros(2, dtype=np.int32)
    with pytest.raises(
        ValueError, match=f"state_army: -3 at flat index {flat_index} is below the minimum army 0"
    ):
        call(kind, owner, army, rows)
    army.reshape(-1)[flat_index] = 0  # the minimum passes
    assert len(call(kind, owner, army, rows)) > 0
