"""Real generals.io replays reproduce the reference simulator's traces exactly, and
damaged or unsupported replay files are clear errors, never crashes or hangs."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPLAY_DIR
from generals_rl import _core, replay
from generals_rl.replay import ReplayError

REPLAYS = (
    sorted(
        p
        for p in REPLAY_DIR.iterdir()
        if p.suffix in (".gioreplay", ".gior", ".json") and not p.name.endswith(".expected.json")
    )
    if REPLAY_DIR.is_dir()
    else []
)
NO_REPLAYS = f"no shared replays in {REPLAY_DIR} (expected ../shared/replays beside the project)"


def replay_params():
    if not REPLAYS:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_REPLAYS))]
    return [pytest.param(path, id=path.name) for path in REPLAYS]


def expected_trace(path: Path, game: str | None = None) -> dict:
    return json.loads(REPLAY_DIR.joinpath((game or path.stem) + ".expected.json").read_text())


def first_difference(actual, expected, where: str = "trace") -> str | None:
    """Where two JSON-like values first differ, with both sides; None when equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(actual) != list(expected) and set(actual) != set(expected):
            missing, extra = set(expected) - set(actual), set(actual) - set(expected)
            return f"{where}: keys differ (missing {sorted(missing)}, unexpected {sorted(extra)})"
        for key in expected:
            found = first_difference(actual[key], expected[key], f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
            found = first_difference(a, e, f"{where}[{i}]")
            if found:
                return found
        if len(actual) != len(expected):
            return f"{where}: {len(actual)} entries, expected {len(expected)}"
        return None
    if type(actual) is not type(expected) or actual != expected:
        return f"{where}: got {actual!r:.200}, expected {expected!r:.200}"
    return None


def assert_same_trace(actual: dict, expected: dict) -> None:
    # The summary first, then tick by tick, so a failure names the first tick that differs.
    for key in ("replay_id", "players", "width", "height", "moves", "afks"):
        assert actual[key] == expected[key], f"{key}: {actual[key]!r} != {expected[key]!r}"
    for i, (got, want) in enumerate(zip(actual["ticks"], expected["ticks"], strict=False)):
        assert got == want, f"first differing tick entry #{i}: got {got}, expected {want}"
    assert len(actual["ticks"]) == len(expected["ticks"]), "number of ticks differs"
    assert sorted(actual["snapshots"], key=int) == sorted(expected["snapshots"], key=int)
    for tick, want in expected["snapshots"].items():
        found = first_difference(actual["snapshots"][tick], want, f"snapshots[{tick!r}]")
        assert found is None, found
    for key in ("death_order", "end_tick", "alive", "over", "version"):
        assert actual[key] == expected[key], f"{key}: {actual[key]!r} != {expected[key]!r}"
    found = first_difference(actual, expected)
    assert found is None, found


# ---------------------------------------------------------------------------
# the shared replays


@pytest.mark.parametrize("path", replay_params())
def test_replay_reproduces_the_reference_trace(path):
    expected = expected_trace(path)
    assert expected["ticks"] and expected["snapshots"], "the expected trace is empty"
    assert_same_trace(replay.load(path).trace(), expected)


@pytest.mark.parametrize("path", replay_params())
def test_replay_file_describes_its_game(path):
    loaded = replay.load(path)
    expected = expected_trace(path)
    assert loaded.id == expected["replay_id"] == path.stem
    assert loaded.num_players == expected["players"]
    assert (loaded.width, loaded.height) == (expected["width"], expected["height"])
    assert loaded.moves.shape == (expected["moves"], 5)
    assert loaded.afks.shape == (expected["afks"], 2)


def test_both_file_forms_of_one_game_give_the_same_trace():
    by_game: dict[str, list[Path]] = {}
    for path in REPLAYS:
        by_game.setdefault(path.stem, []).append(path)
    pairs = {game: paths for game, paths in by_game.items() if len(paths) > 1}
    if not pairs:
        pytest.skip(NO_REPLAYS if not REPLAYS else "no game is stored in both forms")
    for paths in pairs.values():
        first, *others = (replay.load(p) for p in paths)
        assert first.moves.tolist() == others[0].moves.tolist()
        trace = first.trace()
        for other in others:
            assert first_difference(other.trace(), trace) is None


# Names that hide each file's form: another form's suffix, none, or an unrelated one.
MISLEADING_NAMES = {".gior": "game.gioreplay", ".gioreplay": "game.gior", ".json": "game"}


@pytest.mark.parametrize("path", replay_params())
def test_replay_form_is_recognised_by_content(path, tmp_path):
    renamed = tmp_path / MISLEADING_NAMES[path.suffix]
    shutil.copyfile(path, renamed)
    assert_same_trace(replay.load(renamed).trace(), expected_trace(path))


def test_cli_recognises_a_renamed_gior(tmp_path):
    paths = [p for p in REPLAYS if p.suffix == ".gior"]
    if not paths:
        pytest.skip(NO_REPLAYS)
    renamed = tmp_path / "renamed.txt"
    shutil.copyfile(paths[0], renamed)
    out = tmp_path / "trace.json"
    result = run_cli("replay", str(renamed), "--trace", str(out))
    assert result.returncode == 0, result.stderr
    assert_same_trace(json.loads(out.read_text()), expected_trace(paths[0]))


@pytest.mark.parametrize("path", replay_params())
def test_json_object_with_array_moves_is_the_same_replay(path, tmp_path):
    """Every game rewritten in the third form (an object whose moves and AFKs are arrays)."""
    loaded = replay.load(path)
    fields = replay.decode(path.read_bytes())
    fields["moves"] = loaded.moves.tolist()
    fields["afks"] = loaded.afks.tolist()
    rewritten = write_json(tmp_path, fields, "rewritten.bin")
    assert_same_trace(replay.load(rewritten).trace(), expected_trace(path))


def test_first_difference_names_the_first_mismatch():
    expected = {"ticks": [{"tick": 1, "army": [1, 2]}, {"tick": 2, "army": [3, 4]}]}
    actual = {"ticks": [{"tick": 1, "army": [1, 2]}, {"tick": 2, "army": [3, 5]}]}
    assert first_difference(actual, expected) == "trace['ticks'][1]['army'][1]: got 5, expected 4"
    assert first_difference(expected, expected) is None
    assert "entries" in first_difference({"ticks": []}, expected)


# ---------------------------------------------------------------------------
# the command line


def run_cli(*args: str, executable: list[str] | None = None) -> subprocess.CompletedProcess:
    command = executable or [sys.executable, "-m", "generals_rl.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )


def console_script() -> list[str] | None:
    found = shutil.which("generals-rl", path=str(Path(sys.executable).parent)) or shutil.which(
        "generals-rl"
    )
    return [found] if found else None


@pytest.mark.parametrize("path", replay_params())
def test_cli_writes_the_reference_trace(path, tmp_path):
    out = tmp_path / "trace.json"
    result = run_cli("replay", str(path), "--trace", str(out))
    assert result.returncode == 0, result.stderr
    assert path.stem in result.stdout
    assert_same_trace(json.loads(out.read_text()), expected_trace(path))


def test_console_script_writes_the_reference_trace(tmp_path):
    if not REPLAYS:
        pytest.skip(NO_REPLAYS)
    script = console_script()
    if script is None:
        pytest.skip("the generals-rl console script is not installed")
    path = REPLAYS[0]
    out = tmp_path / "trace.json"
    result = run_cli("replay", str(path), "--trace", str(out), executable=script)
    assert result.returncode == 0, result.stderr
    assert_same_trace(json.loads(out.read_text()), expected_trace(path))


# ---------------------------------------------------------------------------
# damaged and unsupported files


def valid_fields() -> dict:
    """A small valid replay in the JSON form: 2 players on a 4x3 map."""
    return {
        "version": 7,
        "id": "tiny",
        "mapWidth": 4,
        "mapHeight": 3,
        "usernames": ["a", "b"],
        "stars": [0, 0],
        "cities": [5],
        "cityArmies": [40],
        "generals": [0, 11],
        "mountains": [6],
        "moves": [
            {"index": 0, "start": 0, "end": 1, "is50": 0, "turn": 2},
            {"index": 1, "start": 11, "end": 10, "is50": 1, "turn": 4},
        ],
        "afks": [],
        "teams": None,
    }


def write_json(tmp_path: Path, fields, name: str = "damaged.gioreplay") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(fields))
    return path


def changed(**changes) -> dict:
    fields = valid_fields()
    for key, value in changes.items():
        if value is KeyError:
            del fields[key]
        else:
            fields[key] = value
    return fields


def test_small_valid_replay_loads_and_runs(tmp_path):
    loaded = replay.load(write_json(tmp_path, valid_fields()))
    trace = loaded.trace()
    # no one wins, so the replay stops one tick after its last event (turn 4)
    assert trace["end_tick"] == 5 and not trace["over"]
    assert [t["tick"] for t in trace["ticks"]] == [1, 2, 3, 4, 5]
    assert trace["ticks"][-1]["land"] == [2, 2]


def test_all_players_dying_at_once_is_not_a_win(tmp_path):
    # Both players AFK twice at tick 3: everyone is dead, no one won, and the
    # trace runs on to one tick after the last recorded event (the move at turn 4).
    fields = changed(afks=[[0, 3], [1, 3], [0, 3], [1, 3]])
    trace = replay.load(write_json(tmp_path, fields)).trace()
    assert trace["alive"] == 0 and not trace["over"]
    assert trace["end_tick"] == 5 and trace["death_order"] == [0, 1]
    assert trace["ticks"][-1]["land"] == [0, 0]


def test_last_player_standing_ends_the_game(tmp_path):
    trace = replay.load(write_json(tmp_path, changed(afks=[[1, 1]]))).trace()
    assert trace["over"] and trace["alive"] == 1
    assert trace["end_tick"] == 2 and trace["death_order"] == [1]


IGNORED_COSMETIC_FIELDS = {
    "map_title": "a map",
    "chat": [["gg", "", 0, 10]],
    "playerColors": [0, 1],
    "settings": [1, 0.5, 0.5, 0],
    "player_transforms": {"0": 1, "1": 2},
    "pings": [[1, 2]],
}


def test_cosmetic_fields_are_ignored(tmp_path):
    plain = replay.load(write_json(tmp_path, valid_fields(), "plain.gioreplay")).trace()
    dressed = replay.load(write_json(tmp_path, changed(**IGNORED_COSMETIC_FIELDS))).trace()
    assert first_difference(dressed, plain) is None


def test_empty_feature_fields_of_newer_versions_are_accepted(tmp_path):
    empty = {name: [] for name in ("swamps", "lights", "modifiers", "observatories", "deserts")}
    trace = replay.load(
        write_json(tmp_path, changed(version=18, stronghold_density=0, **empty))
    ).trace()
    assert trace["version"] == 18 and trace["end_tick"] == 5


DAMAGED_JSON = [
    pytest.param(changed(version=4), "replay version 4 is not supported", id="version-4"),
    pytest.param(changed(version=19), "replay version 19 is not supported", id="version-19"),
    pytest.param(changed(version=99), "replay version 99 is not supported", id="version-99"),
    pytest.param(changed(version="7"), "replay version '7' is not supported", id="version-text"),
    pytest.param(changed(version=KeyError), "replay version None", id="no-version"),
    *[
        pytest.param(changed(**{name: KeyError}), f"replay field {name!r}", id=f"no-{name}")
        for name in (
            "mapWidth",
            "mapHeight",
            "cities",
            "cityArmies",
            "generals",
            "mountains",
            "moves",
            "afks",
        )
    ],
    pytest.param(changed(mapWidth="4"), "'mapWidth': expected int", id="width-text"),
    pytest.param(changed(mapHeight=0), "map size 4x0 is out of range", id="height-0"),
    pytest.param(changed(cities=[12]), "'cities': tiles [12] are off the 4x3 map", id="city-off"),
    pytest.param(changed(generals=[0, -1]), "'generals': tiles [-1] are off", id="general-off"),
    pytest.param(changed(mountains=[99]), "'mountains': tiles [99] are off", id="mountain-off"),
    pytest.param(
        changed(neutrals=[40], neutralArmies=[3]),
        "'neutrals': tiles [40] are off",
        id="neutral-off",
    ),
    pytest.param(changed(cities=[None]), "'cities': expected integers", id="city-null"),
    pytest.param(changed(mountains="1,2"), "'mountains': expected list", id="mountains-text"),
    pytest.param(changed(cityArmies=[40, 41]), "differ in length", id="city-armies-length"),
    pytest.param(changed(cityArmies=[-3]), "'cityArmies': armies [-3]", id="city-army-negative"),
    pytest.param(changed(generals=[3, 3]), "share a general tile", id="general-shared"),
    pytest.param(changed(generals=[]), "replay has 0 players", id="no-players"),
    pytest.param(changed(generals=list(range(17)), mapWidth=6), "17 players", id="17-players"),
    pytest.param(
        changed(teams=[1, 1, 2]), "'teams': expected one team number per player", id="teams-length"
    ),
    *[
        pytest.param(
            changed(**{name: value}),
            f"replay field {name!r} uses a game feature the engine does not implement",
            id=name,
        )
        for name, value in (
            ("swamps", [3]),
            ("lights", [2]),
            ("modifiers", [1]),
            ("deserts", [4]),
            ("strongholds", [4]),
            ("a_future_rule", 3),
        )
    ],
    pytest.param(
        [*valid_fields().values(), *[None] * 24, ["x"]],
        "replay field '#37' uses a game feature",
        id="unknown-array-field",
    ),
    pytest.param(changed(moves=[{"index": 0, "start": 0}]), "'moves': malformed", id="move-short"),
    pytest.param(
        changed(moves=[{"index": 0, "start": "x", "end": 1, "is50": 0, "turn": 1}]),
        "'moves': malformed",
        id="move-text",
    ),
    pytest.param(
        changed(moves=[{"index": 0, "start": 2**40, "end": 1, "is50": 0, "turn": 1}]),
        "'moves': values must fit in 32 bits",
        id="move-overflow",
    ),
    pytest.param(
        changed(afks=[{"index": 0, "turn": 2**31 - 1}]), "'afks': turn 2147483647", id="afk-far"
    ),
    pytest.param([7, "tiny", 4], "'mapHeight': expected int", id="array-form-too-short"),
    pytest.param("a string", "must be an object or an array", id="json-string"),
    pytest.param(None, "must be an object or an array", id="json-null"),
]


@pytest.mark.parametrize("fields, message", DAMAGED_JSON)
def test_damaged_json_replay_is_a_replay_error(tmp_path, fields, message):
    path = write_json(tmp_path, fields)
    with pytest.raises(ReplayError) as error:
        replay.load(path).trace()
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert isinstance(error.value, ValueError)


def gior_bytes() -> bytes:
    paths = [p for p in REPLAYS if p.suffix == ".gior"]
    if not paths:
        pytest.skip(NO_REPLAYS if not REPLAYS else "no .gior replay to damage")
    return paths[0].read_bytes()


@pytest.mark.parametrize(
    "cut, message",
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:10], "truncated"),
        (lambda data: data[:-1], "odd number of bytes"),
        (lambda data: b"", "empty"),
        (lambda data: b"\xff\xff" + data, "bad header"),
    ],
    ids=["half", "first-10-bytes", "odd-length", "empty", "bad-header"],
)
def test_damaged_gior_is_a_replay_error(tmp_path, cut, message):
    path = tmp_path / "damaged.gior"
    path.write_bytes(cut(gior_bytes()))
    with pytest.raises(ReplayError) as error:
        replay.load(path)
    assert message in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".gior", ".gioreplay"])
@pytest.mark.parametrize("seed", range(12))
def test_random_bytes_are_a_replay_error(tmp_path, suffix, seed):
    rng = random.Random(seed)
    path = tmp_path / f"random{suffix}"
    path.write_bytes(rng.randbytes(rng.choice([1, 2, 7, 64, 1000, 20000])))
    with pytest.raises(ReplayError):
        replay.load(path).trace()


def test_corrupted_replays_load_or_fail_cleanly(tmp_path):
    """Bytes changed anywhere in a real replay: a clean error or a replay that runs."""
    if not REPLAYS:
        pytest.skip(NO_REPLAYS)
    outcomes = {"error": 0, "ran": 0}
    for source in REPLAYS:
        data = source.read_bytes()
        for seed in range(25):
            rng = random.Random(seed)
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            path = tmp_path / f"corrupt{source.suffix}"
            path.write_bytes(bytes(damaged))
            try:
                replay.load(path).trace()
            except ReplayError:
                outcomes["error"] += 1
            else:
                outcomes["ran"] += 1
    assert outcomes["error"] > 0


def lzstring_bits(values: list[tuple[int, int]]) -> bytes:
    """Packs (value, width) pairs the way LZString writes them: each value least
    significant bit first, into 16-bit units filled from their top bit."""
    bits = [value >> i & 1 for value, width in values for i in range(width)]
    bits += [0] * (-len(bits) % 16)
    units = [int("".join(map(str, bits[i : i + 16])), 2) for i in range(0, len(bits), 16)]
    return b"".join(unit.to_bytes(2, "big") for unit in units)


def self_repeating_stream(codes: int) -> bytes:
    """A literal, then `codes` references to the entry being defined (w + w[0]):
    output lengths 1, 2, 3, ... so the text grows with the square of the input."""
    values, size, enlarge_in, num_bits = [(0, 2), (ord("a"), 8)], 4, 4, 3
    for _ in range(codes):
        values.append((size, num_bits))
        size, enlarge_in = size + 1, enlarge_in - 1
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1
    return lzstring_bits([*values, (2, num_bits)])


def test_lzstring_output_is_bounded():
    from generals_rl import _core

    small = self_repeating_stream(100)
    assert _core.lzstring_decompress(small) == b"a" * (1 + sum(range(2, 102)))
    with pytest.raises(ValueError, match="more than 1000 characters"):
        _core.lzstring_decompress(small, max_output=1000)
    # About 30 KB that would decompress to over 10^8 characters: stopped at the limit.
    crafted = self_repeating_stream(15_000)
    assert len(crafted) < 40_000
    with pytest.raises(ValueError, match=f"more than {_core.LZSTRING_MAX_OUTPUT} characters"):
        _core.lzstring_decompress(crafted)


def test_oversized_gior_is_a_replay_error(tmp_path):
    from generals_rl import _core

    path = tmp_path / "bomb.gior"
    path.write_bytes(self_repeating_stream(15_000))
    with pytest.raises(ReplayError, match=f"more than {_core.LZSTRING_MAX_OUTPUT}"):
        replay.load(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        replay.load(tmp_path / "missing.gior")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("v4.gioreplay", json.dumps(changed(version=4)), "replay version 4 is not supported"),
        ("v19.gior", json.dumps(changed(version=19)), "replay version 19 is not supported"),
        (
            "swamps.gioreplay",
            json.dumps(changed(version=15, swamps=[3])),
            "replay field 'swamps' uses a game feature",
        ),
        ("off.gioreplay", json.dumps(changed(cities=[12])), "tiles [12] are off the 4x3 map"),
        ("no-moves.gioreplay", json.dumps(changed(moves=KeyError)), "replay field 'moves'"),
        ("text.gioreplay", "this is not json", "neither JSON (Expecting value"),
        ("bad.gioreplay", '{"version": 5,', "not valid replay JSON"),
        ("far.gioreplay", json.dumps(changed(afks=[{"index": 0, "turn": 2**31 - 1}])), "turn"),
        ("random.gior", random.Random(1).randbytes(3001), "odd number of bytes"),
    ],
)
def test_cli_reports_a_damaged_file_and_exits_2(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    out = tmp_path / "trace.json"
    result = run_cli("replay", str(path), "--trace", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("generals-rl replay: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


# ---------------------------------------------------------------------------
# the cost of a trace is bounded by its input


def idle_replay(side: int, turns: list[int], afk: bool = False) -> dict:
    """A ``side`` x ``side`` map where nothing happens: events at ``turns`` are
    moves from a tile nobody owns, or player 0 going AFK."""
    fields = changed(
        mapWidth=side,
        mapHeight=side,
        cities=[],
        cityArmies=[],
        mountains=[],
        generals=[0, side * side - 1],
    )
    fields["moves"] = (
        []
        if afk
        else [{"index": 0, "start": 1, "end": 2, "is50": 0, "turn": turn} for turn in turns]
    )
    fields["afks"] = [{"index": 0, "turn": turn} for turn in turns] if afk else []
    return fields


def test_a_tiny_replay_idle_for_a_million_ticks_is_refused_before_it_runs(tmp_path):
    # 247 bytes that used to hold a 1024x1024 snapshot every 100 ticks for a
    # million ticks, until std::bad_alloc.
    path = write_json(tmp_path, idle_replay(_core.MAX_BOARD_SIDE, [1_000_000], afk=True))
    assert path.stat().st_size < 300
    started = time.monotonic()
    with pytest.raises(
        ReplayError, match=r"no recorded event between ticks 0 and 1000000 \(at most 10000 idle"
    ):
        replay.load(path).trace()
    assert time.monotonic() - started < 10


def test_idle_ticks_up_to_the_limit_are_replayed():
    idle = _core.MAX_IDLE_TICKS
    trace = replay.from_fields(idle_replay(3, [idle, 2 * idle])).trace(snapshot_every=0)
    assert trace["end_tick"] == 2 * idle + 1 and len(trace["ticks"]) == 2 * idle + 1
    with pytest.raises(ReplayError, match=f"between ticks {idle} and {2 * idle + 1}"):
        replay.from_fields(idle_replay(3, [idle, 2 * idle + 1])).trace()


def test_snapshots_beyond_the_cell_limit_are_refused_naming_snapshot_every():
    fields = idle_replay(_core.MAX_BOARD_SIDE, [5000, 9000])
    with pytest.raises(
        ReplayError, match=r"91 snapshots of 1048576 tiles, more than 4194304 cells \(use a larger"
    ):
        replay.from_fields(fields).trace()
    trace = replay.from_fields(fields).trace(snapshot_every=5000)  # 2 snapshots fit
    assert list(trace["snapshots"]) == ["5000", "9001"]


def test_cli_refuses_a_replay_beyond_the_trace_limits_and_exits_2(tmp_path):
    path = write_json(tmp_path, idle_replay(_core.MAX_BOARD_SIDE, [1_000_000], afk=True))
    out = tmp_path / "trace.json"
    result = run_cli("replay", str(path), "--trace", str(out))
    assert result.returncode == 2 and not out.exists()
    assert "idle ticks" in result.stderr and "Traceback" not in result.stderr


def test_cli_reports_a_missing_file_and_exits_2(tmp_path):
    result = run_cli("replay", str(tmp_path / "missing.gior"))
    assert result.returncode == 2
    assert "No such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_truncated_gior_exits_2(tmp_path):
    path = tmp_path / "cut.gior"
    path.write_bytes(gior_bytes()[:2000])
    result = run_cli("replay", str(path))
    assert result.returncode == 2
    assert "truncated" in result.stderr and "Traceback" not in result.stderr
