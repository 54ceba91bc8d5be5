"""Real generals.io replays (JSON forms and compressed ``.gior``), replayed
in the C++ engine the way the game's reference simulator does.

Longer than 400 lines: the parsing and checking of every replay field, kept
beside the replay it builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np

from . import _core
from .experience.batch import REPLAY_ID_BYTES, SOURCE_COLUMNS, RawBatch
from .game import TILE_CITY, TILE_GENERAL, TILE_MOUNTAIN, Game
from .vec_env import RewardConfig

SUPPORTED_VERSIONS = range(5, 19)
# The latest tick an event may be recorded at (about six days of play); later
# turns can only come from a damaged file and would make the replay run forever.
MAX_TURN = 1_000_000
# The most ticks a replay turned into experiences may run (about 14 hours of play):
# each tick stores a board, so a longer one would take gigabytes.
MAX_IMPORT_TICKS = 100_000
_INT32_MAX = 2**31 - 1
# Field order of the array form (.gior): each version appends to the one before.
_ARRAY_FIELDS = (
    "version",
    "id",
    "mapWidth",
    "mapHeight",
    "usernames",
    "stars",
    "cities",
    "cityArmies",
    "generals",
    "mountains",
    "moves",
    "afks",
    "teams",
    "map_title",
    "neutrals",
    "neutralArmies",
    "swamps",
    "chat",
    "playerColors",
    "lights",
    "settings",
    "modifiers",
    "observatories",
    "lookouts",
    "deserts",
    "player_transforms",
    "pings",
    "generalTrades",
    "tunnels",
    "tunnelLimits",
    "chessClockTimingsByMove",
    "stronghold_density",
    "stronghold_strength_min",
    "stronghold_strength_max",
    "strongholds",
    "strongholdStrengths",
    "chessClockMoveExecutionTimestamps",
)
# Fields that change nothing in the game (presentation, timing, chat), and the
# settings of features that only act through a field refused below when used.
_IGNORED_FIELDS = frozenset(
    (
        "map_title",
        "chat",
        "playerColors",
        "settings",
        "player_transforms",
        "pings",
        "chessClockTimingsByMove",
        "chessClockMoveExecutionTimestamps",
        "tunnelLimits",
        "stronghold_density",
        "stronghold_strength_min",
        "stronghold_strength_max",
        "strongholdStrengths",
    )
)
# Fields the engine reads; any other field that holds something is a game
# feature the engine does not implement, and its replay is refused.
_RULE_FIELDS = frozenset((*_ARRAY_FIELDS[:13], "neutrals", "neutralArmies"))
_MOVE_FIELDS = ("index", "start", "end", "is50", "turn")
_AFK_FIELDS = ("index", "turn")


class ReplayError(ValueError):
    """A replay file that is damaged, unsupported or inconsistent."""


def _array_form(values: list) -> dict:
    """The fields of the array form by name; values past the known fields are kept
    under their position (``#37``, ...)."""
    fields = dict(zip(_ARRAY_FIELDS, values, strict=False))
    fields.update(
        (f"#{i}", value) for i, value in enumerate(values[len(_ARRAY_FIELDS) :], len(_ARRAY_FIELDS))
    )
    return fields


def _decode_gior(data: bytes) -> dict:
    try:
        text = _core.lzstring_decompress(data)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ReplayError(f".gior does not decompress to JSON: {exc}") from None
    if not isinstance(values, list):
        raise ReplayError(".gior does not hold the array form of a replay")
    return _array_form(values)


def decode(data: bytes) -> dict:
    """The fields of a replay in any of its forms, told apart by content: JSON
    (an object, with moves as objects or arrays, or the array form) or the
    LZString-compressed array form of .gior files."""
    try:
        fields = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        if data.lstrip()[:1] in (b"{", b"["):
            raise ReplayError(f"not valid replay JSON: {exc}") from None
        try:
            return _decode_gior(data)
        except ReplayError as gior_exc:
            raise ReplayError(f"neither JSON ({exc}) nor a .gior replay ({gior_exc})") from None
    if isinstance(fields, list):
        return _array_form(fields)
    if not isinstance(fields, dict):
        raise ReplayError("replay JSON must be an object or an array")
    return fields


@dataclass
class Replay:
    """A recorded game: its map, players, moves and AFK events."""

    id: str
    version: int
    width: int
    height: int
    usernames: list[str]
    cities: list[int]
    city_armies: list[int]
    generals: list[int]
    mountains: list[int]
    moves: np.ndarray  # (M, 5) int32: player, start, end, is50, turn
    afks: np.ndarray  # (K, 2) int32: player, turn
    stars: list[int] = field(default_factory=list)  # per player; 0 where the file has none
    neutrals: list[int] = field(default_factory=list)
    neutral_armies: list[int] = field(default_factory=list)
    teams: list[int] | None = None  # one team number per player; None: free-for-all

    @property
    def num_players(self) -> int:
        return len(self.generals)

    def initial_game(self) -> Game:
        """The game at tick 0, as the reference simulator sets it up."""
        n = self.width * self.height
        kind = np.zeros(n, dtype=np.uint8)
        owner = np.full(n, -1, dtype=np.int16)
        army = np.zeros(n, dtype=np.int32)
        kind[self.mountains] = TILE_MOUNTAIN
        kind[self.cities] = TILE_CITY
        army[self.cities] = self.city_armies
        army[self.neutrals] = self.neutral_armies
        for player, tile in enumerate(self.generals):
            kind[tile], owner[tile], army[tile] = TILE_GENERAL, player, 1
        shape = (self.height, self.width)
        try:
            return Game.from_map(
                kind.reshape(shape),
                owner.reshape(shape),
                army.reshape(shape),
                np.asarray(self.generals, dtype=np.int32),
                teams=self.teams,
                neutral_city_regrowth=self.version < 6,
            )
        except ValueError as exc:
            raise ReplayError(f"replay {self.id!r} has an inconsistent board: {exc}") from None

    def trace(self, snapshot_every: int = 100) -> dict:
        """Replays the game and returns the tick-by-tick trace (the schema of the
        shared ``*.expected.json`` files)."""
        game = self.initial_game()
        try:
            run = game.play_recorded(self.moves, self.afks, snapshot_every)
        except ValueError as exc:  # beyond the cost limits of a trace
            raise ReplayError(f"replay {self.id!r}: {exc}") from None
        ticks = [
            {"tick": int(t), "army": a.tolist(), "land": land.tolist(), "alive": int(n)}
            for t, a, land, n in zip(
                run["ticks"], run["army"], run["land"], run["alive"], strict=False
            )
        ]
        return {
            "replay_id": self.id,
            "version": self.version,
            "players": self.num_players,
            "width": self.width,
            "height": self.height,
            "moves": len(self.moves),
            "afks": len(self.afks),
            "end_tick": run["end_tick"],
            "alive": int(run["alive"][-1]) if len(run["alive"]) else self.num_players,
            "over": run["over"],
            "death_order": list(run["death_order"]),
            "ticks": ticks,
            "snapshots": {
                str(tick): {"owner": owner.tolist(), "army": army.tolist()}
                for tick, owner, army in run["snapshots"]
            },
        }

    def to_experiences(
        self,
        height: int | None = None,
        width: int | None = None,
        reward_config: RewardConfig | None = None,
        game_id: int | None = None,
        first_sequence: int = 0,
    ) -> RawBatch:
        """The game as experiences: one per alive player per tick, from that player's
        view, with the move it recorded for the tick as the action (the VecEnv's flat
        index on the board padded with mountains to ``height x width``, default the
        game's own size; a pass when it recorded none), ``legal`` as the engine judged
        it, rewards by ``reward_config``, ``terminated``/``truncated`` as in self-play
        (truncated when the replay ends without a winner). Sequence numbers start at
        ``first_sequence``; ``game_id`` defaults to a fresh id as self-play uses. Each
        experience carries the replay's id (``replay_id``) and the acting player's
        ``stars``."""
        height, width = height or self.height, width or self.width
        if self.height > height or self.width > width:
            raise ReplayError(
                f"replay {self.id!r} is {self.height}x{self.width}, "
                f"larger than the {height}x{width} boards asked for"
            )
        last_event = max(self.moves[:, 4].max(initial=0), self.afks[:, 1].max(initial=0))
        if last_event >= MAX_IMPORT_TICKS:
            raise ReplayError(
                f"replay {self.id!r} records an event at tick {last_event}, "
                f"beyond the {MAX_IMPORT_TICKS} ticks imported"
            )
        replay_id = self.id.encode("ascii", errors="replace")
        if len(replay_id) > REPLAY_ID_BYTES:
            raise ReplayError(
                f"replay id {self.id!r} is longer than the {REPLAY_ID_BYTES} bytes "
                "stored per experience"
            )
        batch = self.initial_game().recorded_experiences(
            self.moves,
            self.afks,
            height=height,
            width=width,
            game_id=_core.next_game_id() if game_id is None else game_id,
            first_sequence=first_sequence,
            reward_config=(reward_config or RewardConfig()).to_core(),
        )
        return RawBatch.from_core(
            batch,
            replay_id=np.full(len(batch), replay_id, dtype=SOURCE_COLUMNS["replay_id"]),
            stars=np.asarray(self.stars, dtype=SOURCE_COLUMNS["stars"])[batch.player_id],
        )


def to_experiences(path_or_replay: str | Path | Replay, **options) -> RawBatch:
    """``Replay.to_experiences`` of a replay or a replay file (see ``load``)."""
    loaded = path_or_replay if isinstance(path_or_replay, Replay) else load(path_or_replay)
    return loaded.to_experiences(**options)


def _require(fields: dict, name: str, kind: type):
    value = fields.get(name)
    if not isinstance(value, kind):
        raise ReplayError(f"replay field {name!r}: expected {kind.__name__}, got {value!r:.60}")
    return value


def _int_list(fields: dict, name: str, required: bool = True) -> list[int]:
    values = _require(fields, name, list) if required else fields.get(name)
    if values is None:
        return []
    if not isinstance(values, list):
        raise ReplayError(f"replay field {name!r}: expected list, got {values!r:.60}")
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ReplayError(f"replay field {name!r}: expected integers ({exc})") from None


def _stars(values, players: int) -> list[int]:
    """Each player's stars; missing or malformed ones (unrated games) count as 0."""
    values = values if isinstance(values, list) else []
    return [
        int(v) if isinstance(v, (int, float)) and 0 <= v <= _INT32_MAX else 0
        for v in (values + [0] * players)[:players]
    ]


def _events(rows: list, names: tuple, what: str) -> np.ndarray:
    """Events given as objects (``names`` their keys) or as arrays in that order."""
    by_name = itemgetter(*names)
    try:
        table = np.array(
            [row if isinstance(row, list) else by_name(row) for row in rows], dtype=np.int64
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ReplayError(f"replay field {what!r}: malformed entry ({exc})") from None
    if table.size == 0:
        return np.zeros((0, len(names)), dtype=np.int32)
    if table.ndim != 2 or table.shape[1] != len(names):
        raise ReplayError(
            f"replay field {what!r}: malformed entry "
            f"(expected {len(names)} values: {', '.join(names)})"
        )
    if not -_INT32_MAX - 1 <= table.min() <= table.max() <= _INT32_MAX:
        raise ReplayError(f"replay field {what!r}: values must fit in 32 bits")
    if table[:, -1].max() > MAX_TURN:
        raise ReplayError(f"replay field {what!r}: turn {table[:, -1].max()} is beyond {MAX_TURN}")
    return table.astype(np.int32)


def _refuse_unimplemented(fields: dict) -> None:
    for name, value in fields.items():
        if name in _RULE_FIELDS or name in _IGNORED_FIELDS:
            continue
        if value not in (None, 0, False, "") and value != [] and value != {}:
            raise ReplayError(
                f"replay field {name!r} uses a game feature the engine does not implement"
            )


def from_fields(fields: dict) -> Replay:
    """A Replay from the decoded fields of either file form."""
    version = fields.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ReplayError(
            f"replay version {version!r} is not supported (supported: "
            f"{SUPPORTED_VERSIONS.start}..{SUPPORTED_VERSIONS.stop - 1})"
        )
    width = _require(fields, "mapWidth", int)
    height = _require(fields, "mapHeight", int)
    if not (1 <= width <= _core.MAX_BOARD_SIDE and 1 <= height <= _core.MAX_BOARD_SIDE):
        raise ReplayError(f"replay map size {width}x{height} is out of range")
    tile_lists = {}
    for name in ("cities", "cityArmies", "generals", "mountains"):
        tile_lists[name] = _int_list(fields, name)
    tile_lists["neutrals"] = neutrals = _int_list(fields, "neutrals", required=False)
    neutral_armies = _int_list(fields, "neutralArmies", required=False)
    _refuse_unimplemented(fields)
    teams = fields.get("teams") or None  # null, or the empty list, is free-for-all
    if teams is not None and (
        not isinstance(teams, list)
        or len(teams) != len(tile_lists["generals"])
        or not all(isinstance(t, int) and 0 <= t <= _INT32_MAX for t in teams)
    ):
        raise ReplayError(
            f"replay field 'teams': expected one team number per player, got {teams!r:.60}"
        )
    n = width * height
    for name in ("cities", "generals", "mountains", "neutrals"):
        bad = [t for t in tile_lists[name] if not 0 <= t < n]
        if bad:
            raise ReplayError(
                f"replay field {name!r}: tiles {bad[:5]} are off the {width}x{height} map"
            )
    for name, armies in (
        ("cityArmies", tile_lists["cityArmies"]),
        ("neutralArmies", neutral_armies),
    ):
        bad = [a for a in armies if not 0 <= a <= _INT32_MAX]
        if bad:
            raise ReplayError(f"replay field {name!r}: armies {bad[:5]} are out of range")
    if len(set(tile_lists["generals"])) != len(tile_lists["generals"]):
        raise ReplayError("replay field 'generals': two players share a general tile")
    if len(tile_lists["cities"]) != len(tile_lists["cityArmies"]):
        raise ReplayError("replay fields 'cities' and 'cityArmies' differ in length")
    if len(neutrals) != len(neutral_armies):
        raise ReplayError("replay fields 'neutrals' and 'neutralArmies' differ in length")
    if not 1 <= len(tile_lists["generals"]) <= _core.MAX_PLAYERS:
        raise ReplayError(
            f"replay has {len(tile_lists['generals'])} players, expected 1..{_core.MAX_PLAYERS}"
        )
    usernames = fields.get("usernames")
    return Replay(
        id=str(fields.get("id", "")),
        version=version,
        width=width,
        height=height,
        usernames=list(usernames) if isinstance(usernames, list) else [],
        cities=tile_lists["cities"],
        city_armies=tile_lists["cityArmies"],
        generals=tile_lists["generals"],
        mountains=tile_lists["mountains"],
        stars=_stars(fields.get("stars"), len(tile_lists["generals"])),
        moves=_events(_require(fields, "moves", list), _MOVE_FIELDS, "moves"),
        afks=_events(_require(fields, "afks", list), _AFK_FIELDS, "afks"),
        neutrals=neutrals,
        neutral_armies=neutral_armies,
        teams=teams,
    )


def load(path: str | Path) -> Replay:
    """Loads a replay file of any form (see ``decode``), whatever its name."""
    path = Path(path)
    try:
        return from_fields(decode(path.read_bytes()))
    except ReplayError as exc:
        raise ReplayError(f"{path}: {exc}") from None
