"""Recorded games as experiences: every recorded move is the action of its player's
experience at its tick, states chain, and import-replays stores every game."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPLAY_DIR
from generals_rl import RewardConfig, replay
from generals_rl.game import TILE_MOUNTAIN
from generals_rl.replay_import import ReplayFilter, import_replays
from generals_rl.storage import open_dataset, open_writer

REPLAY_FORMS = (".gioreplay", ".json")
GAMES = (
    sorted(
        p
        for p in REPLAY_DIR.iterdir()
        if p.suffix in REPLAY_FORMS and not p.name.endswith(".expected.json")
    )
    if REPLAY_DIR.is_dir()
    else []
)
PADDED = (32, 32)  # larger than every shared map: action indices use the padded width


def games():
    if not GAMES:
        return [
            pytest.param(None, marks=pytest.mark.skip(reason=f"no shared replays in {REPLAY_DIR}"))
        ]
    return [pytest.param(path, id=path.stem) for path in GAMES]


def expected_action(start: int, end: int, half: int, width: int) -> int:
    """The VecEnv's flat index of a move between neighbouring tiles of a ``width``-wide map."""
    height_p, width_p = PADDED
    y, x = divmod(start, width)
    direction = {-width: 0, width: 1, -1: 2, 1: 3}[end - start]
    return ((y * width_p + x) * 4 + direction) + (height_p * width_p * 4 if half else 0)


def application_ticks(moves: np.ndarray) -> np.ndarray:
    """The tick each move is applied at: the first tick at or after its turn that the
    replay reaches it in file order."""
    return np.maximum.accumulate(np.maximum(moves[:, 4], 0)) if len(moves) else moves[:, 4]


@pytest.mark.parametrize("path", games())
def test_every_recorded_move_is_its_players_action(path):
    game = replay.load(path)
    trace = json.loads(REPLAY_DIR.joinpath(game.id + ".expected.json").read_text())
    batch = game.to_experiences(*PADDED)
    rows = {
        (int(p), int(t)): i
        for i, (p, t) in enumerate(zip(batch.player_id, batch.tick, strict=False))
    }
    assert len(rows) == len(batch), "one experience per player per tick"

    # One experience per alive player per tick, every tick of the game.
    alive_at_start = [game.num_players] + [t["alive"] for t in trace["ticks"]]
    per_tick = np.bincount(batch.tick, minlength=trace["end_tick"])
    assert per_tick.tolist() == alive_at_start[: trace["end_tick"]]

    last_tick = {p: max(t for q, t in rows if q == p) for p in range(game.num_players)}
    checked, first_of = 0, set()
    for (player, start, end, half, _), tick in zip(
        game.moves.tolist(), application_ticks(game.moves).tolist(), strict=False
    ):
        if (player, tick) in first_of:
            continue  # a second move of the same tick: the experience carries the first
        first_of.add((player, tick))
        row = rows.get((player, tick))
        if row is None:  # the player was dead by then, or the game over
            assert tick > last_tick[player]
            continue
        assert batch.action[row] == expected_action(start, end, half, game.width), (player, tick)
        checked += 1
    assert checked > 0.9 * len(game.moves)
    acted = {key for key in rows if batch.action[rows[key]] >= 0}
    assert acted <= first_of, "an action no recorded move explains"

    # next_state is the following experience's state; states are the game's boards.
    for (player, tick), row in rows.items():
        following = rows.get((player, tick + 1))
        if following is not None:
            assert batch.next_state_index[row] == batch.state_index[following]
            assert not batch.terminated[row] and not batch.truncated[row]
        else:
            assert batch.terminated[row] or batch.truncated[row]
    height, width = game.height, game.width
    for tick, snapshot in trace["snapshots"].items():
        state = batch.state_index[batch.tick == int(tick) - 1][0] if int(tick) > 0 else 0
        next_row = batch.next_state_index[batch.tick == int(tick) - 1][0]
        owner = batch.state_owner[next_row][:height, :width].ravel()
        kind = batch.state_kind[next_row][:height, :width].ravel()
        assert np.where(kind == TILE_MOUNTAIN, -2, owner).tolist() == snapshot["owner"]
        assert batch.state_army[next_row][:height, :width].ravel().tolist() == snapshot["army"]
        assert (batch.state_kind[state][height:] == TILE_MOUNTAIN).all()
        assert (batch.state_kind[state][:, width:] == TILE_MOUNTAIN).all()
    assert batch.truncated.any() == (not trace["over"] and trace["alive"] > 0)
    assert (batch.replay_id == game.id.encode()).all()
    assert batch.stars.tolist() == [game.stars[p] for p in batch.player_id]


def test_rewards_follow_the_reward_config():
    if not GAMES:
        pytest.skip("no shared replays")
    game = replay.load(GAMES[0])
    plain = game.to_experiences(
        reward_config=RewardConfig(win=0, loss=0, city_captured=0, city_lost=0, army_advantage=0)
    )
    assert not plain.reward.any()
    winners = game.to_experiences(
        reward_config=RewardConfig(win=5, loss=0, city_captured=0, city_lost=0, army_advantage=0)
    )
    last = winners.tick == winners.tick.max()
    trace = game.trace()
    if trace["over"]:
        assert winners.reward[last].max() == 5


def test_a_game_larger_than_the_boards_is_refused_by_id():
    if not GAMES:
        pytest.skip("no shared replays")
    game = replay.load(GAMES[0])
    with pytest.raises(
        replay.ReplayError, match=f"replay {game.id!r} is {game.height}x{game.width}"
    ):
        game.to_experiences(game.height - 1, game.width)


def test_a_replay_running_too_long_to_store_is_refused():
    if not GAMES:
        pytest.skip("no shared replays")
    game = replay.load(GAMES[0])
    game.afks = np.array([[0, replay.MAX_IMPORT_TICKS]], dtype=np.int32)
    with pytest.raises(replay.ReplayError, match=f"event at tick {replay.MAX_IMPORT_TICKS}"):
        game.to_experiences()


# ---------------------------------------------------------------------------
# import-replays


def stored(destination) -> int:
    return len(open_dataset(destination).read())


def test_import_stores_every_game_once(tmp_path):
    if not GAMES:
        pytest.skip("no shared replays")
    pytest.importorskip("pyarrow")
    out = tmp_path / "data"
    with open_writer("parquet", out) as writer:
        summary = import_replays([REPLAY_DIR], writer)
    expected = sum(len(replay.load(p).to_experiences()) for p in GAMES)
    assert summary.games == len(GAMES) and not summary.skipped
    assert summary.duplicates == len(list(REPLAY_DIR.glob("*.gior")))
    assert summary.experiences == expected == stored(out)
    back = open_dataset(out).read()
    by_game = {replay.load(p).id.encode(): replay.load(p) for p in GAMES}
    assert set(back.replay_id.tolist()) == set(by_game)
    for replay_id, game in by_game.items():
        rows = back.replay_id == replay_id
        assert back.stars[rows].tolist() == [game.stars[p] for p in back.player_id[rows]]
    assert summary.size == (
        max(replay.load(p).height for p in GAMES),
        max(replay.load(p).width for p in GAMES),
    )


def test_import_skips_damaged_files_and_filters(tmp_path):
    if not GAMES:
        pytest.skip("no shared replays")
    source = tmp_path / "in"
    (source / "deeper").mkdir(parents=True)
    for path in GAMES[:3]:
        (source / "deeper" / path.name).write_bytes(path.read_bytes())
    (source / "broken.gior").write_bytes(b"\x00\x01\x02")
    (source / "notes.txt").write_text("not searched for")
    skipped = []
    with open_writer("npz", tmp_path / "out") as writer:
        summary = import_replays([source], writer, on_skip=lambda path, why: skipped.append(path))
    assert skipped == [str(source / "broken.gior")] and summary.games == 3
    two_player = [p for p in GAMES[:3] if replay.load(p).num_players == 2]
    with open_writer("npz", tmp_path / "out2") as writer:
        summary = import_replays([source], writer, selection=ReplayFilter(players=2))
    assert summary.games == len(two_player) and summary.filtered == 3 - len(two_player)
    with open_writer("npz", tmp_path / "out3") as writer:
        summary = import_replays([source], writer, selection=ReplayFilter(min_stars=10**6))
    assert summary.games == 0 and summary.filtered == 3


def test_cli_imports_the_shared_replays(tmp_path):
    if not GAMES:
        pytest.skip("no shared replays")
    small = min(GAMES, key=lambda p: replay.load(p).width)
    game = replay.load(small)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "generals_rl.cli",
            "import-replays",
            str(REPLAY_DIR),
            "--output",
            str(tmp_path / "d"),
            "--format",
            "npz",
            "--size",
            f"{game.height}x{game.width}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "imported " in result.stdout and "stored as npz" in result.stdout
    # Larger games are refused by id and skipped; the rest are stored.
    assert "larger than the" in result.stderr
    assert stored(tmp_path / "d") > 0
