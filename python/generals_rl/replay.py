"""Real generals.io replays (``.gioreplay`` JSON and compressed ``.gior``), replayed
in the C++ engine the way the game's reference simulator does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _core
from .game import TILE_CITY, TILE_GENERAL, TILE_MOUNTAIN, Game

SUPPORTED_VERSIONS = range(5, 8)
# Field order of the array form stored in .gior files (newer versions append more).
_ARRAY_FIELDS = (
    "version", "id", "mapWidth", "mapHeight", "usernames", "stars", "cities",
    "cityArmies", "generals", "mountains", "moves", "afks", "teams",
    "mapTitle", "neutrals", "neutralArmies", "swamps",
)
_MOVE_FIELDS = ("index", "start", "end", "is50", "turn")
_AFK_FIELDS = ("index", "turn")


class ReplayError(ValueError):
    """A replay file that is damaged, unsupported or inconsistent."""


def _lzstring_decompress(codes: list[int]) -> str:
    """LZString's ``decompress`` over 16-bit code units (15 bits of payload each)."""
    if not codes:
        raise ReplayError("compressed replay is empty")
    reset = 32768
    position, index, value = reset, 1, codes[0]

    def read(bits: int) -> int:
        nonlocal position, index, value
        out = 0
        for power in range(bits):
            if value & position:
                out |= 1 << power
            position >>= 1
            if position == 0:
                if index >= len(codes):
                    raise ReplayError("compressed replay is truncated")
                position, value = reset, codes[index]
                index += 1
        return out

    dictionary: list[str] = ["", "", ""]
    first = read(2)
    if first == 2:
        return ""
    if first not in (0, 1):
        raise ReplayError("compressed replay has a bad header")
    w = chr(read(8 if first == 0 else 16))
    dictionary.append(w)
    result = [w]
    enlarge_in, num_bits = 4, 3
    while True:
        code = read(num_bits)
        if code in (0, 1):
            dictionary.append(chr(read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            return "".join(result)
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1
        if code < len(dictionary) and code >= 3:
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            raise ReplayError("compressed replay is damaged (bad dictionary reference)")
        result.append(entry)
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1


def _decode_gior(data: bytes) -> dict:
    if len(data) % 2:
        raise ReplayError(".gior data has an odd number of bytes")
    codes = np.frombuffer(data, dtype=">u2").tolist()
    text = _lzstring_decompress(codes)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplayError(f".gior does not decompress to JSON: {exc}") from None
    if not isinstance(values, list):
        raise ReplayError(".gior does not hold the array form of a replay")
    fields = dict(zip(_ARRAY_FIELDS, values))
    fields["moves"] = [dict(zip(_MOVE_FIELDS, m)) for m in fields.get("moves") or []]
    fields["afks"] = [dict(zip(_AFK_FIELDS, a)) for a in fields.get("afks") or []]
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
    neutrals: list[int] = field(default_factory=list)
    neutral_armies: list[int] = field(default_factory=list)

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
        core = _core.Game(
            kind.reshape(shape), owner.reshape(shape), army.reshape(shape),
            np.asarray(self.generals, dtype=np.int32), 0, self.version < 6,
        )
        return Game(_core_game=core)

    def trace(self, snapshot_every: int = 100) -> dict:
        """Replays the game and returns the tick-by-tick trace (the schema of the
        shared ``*.expected.json`` files)."""
        game = self.initial_game()
        run = _core.run_replay(game._game, self.moves, self.afks, snapshot_every)
        ticks = [
            {"tick": int(t), "army": a.tolist(), "land": l.tolist(), "alive": int(n)}
            for t, a, l, n in zip(run["ticks"], run["army"], run["land"], run["alive"])
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


def _require(fields: dict, name: str, kind: type):
    value = fields.get(name)
    if not isinstance(value, kind):
        raise ReplayError(f"replay field {name!r}: expected {kind.__name__}, got {value!r:.60}")
    return value


def _events(rows: list, names: tuple, what: str) -> np.ndarray:
    try:
        table = [[int(row[name]) for name in names] for row in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplayError(f"replay field {what!r}: malformed entry ({exc})") from None
    return np.asarray(table, dtype=np.int32).reshape(len(table), len(names))


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
    if not (1 <= width <= 1024 and 1 <= height <= 1024):
        raise ReplayError(f"replay map size {width}x{height} is out of range")
    tile_lists = {}
    for name in ("cities", "cityArmies", "generals", "mountains"):
        tile_lists[name] = [int(v) for v in _require(fields, name, list)]
    neutrals = [int(v) for v in fields.get("neutrals") or []]
    neutral_armies = [int(v) for v in fields.get("neutralArmies") or []]
    if fields.get("swamps"):
        raise ReplayError("replays with swamps are not supported")
    teams = fields.get("teams")
    if teams and len(set(teams)) != len(teams):
        raise ReplayError("team replays are not supported")
    n = width * height
    for name in ("cities", "generals", "mountains"):
        bad = [t for t in tile_lists[name] if not 0 <= t < n]
        if bad:
            raise ReplayError(f"replay field {name!r}: tiles {bad[:5]} are off the {width}x{height} map")
    if len(tile_lists["cities"]) != len(tile_lists["cityArmies"]):
        raise ReplayError("replay fields 'cities' and 'cityArmies' differ in length")
    if len(neutrals) != len(neutral_armies):
        raise ReplayError("replay fields 'neutrals' and 'neutralArmies' differ in length")
    if not 1 <= len(tile_lists["generals"]) <= 16:
        raise ReplayError(f"replay has {len(tile_lists['generals'])} players, expected 1..16")
    return Replay(
        id=str(fields.get("id", "")),
        version=version,
        width=width,
        height=height,
        usernames=list(fields.get("usernames") or []),
        cities=tile_lists["cities"],
        city_armies=tile_lists["cityArmies"],
        generals=tile_lists["generals"],
        mountains=tile_lists["mountains"],
        moves=_events(_require(fields, "moves", list), _MOVE_FIELDS, "moves"),
        afks=_events(_require(fields, "afks", list), _AFK_FIELDS, "afks"),
        neutrals=neutrals,
        neutral_armies=neutral_armies,
    )


def load(path: str | Path) -> Replay:
    """Loads a ``.gioreplay`` (JSON) or ``.gior`` (LZString-compressed array form)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:1] in (b"{", b"[") or path.suffix == ".gioreplay":
        try:
            fields = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReplayError(f"{path}: not valid replay JSON: {exc}") from None
        if isinstance(fields, list):
            fields = dict(zip(_ARRAY_FIELDS, fields))
            fields["moves"] = [dict(zip(_MOVE_FIELDS, m)) for m in fields.get("moves") or []]
            fields["afks"] = [dict(zip(_AFK_FIELDS, a)) for a in fields.get("afks") or []]
        elif not isinstance(fields, dict):
            raise ReplayError(f"{path}: replay JSON must be an object or an array")
    else:
        try:
            fields = _decode_gior(data)
        except ReplayError as exc:
            raise ReplayError(f"{path}: {exc}") from None
    try:
        return from_fields(fields)
    except ReplayError as exc:
        raise ReplayError(f"{path}: {exc}") from None
