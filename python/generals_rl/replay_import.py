"""Recorded human games as training experiences: replay files of any form, replayed
in the C++ core, stored with the same writers as self-play."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .replay import Replay, ReplayError, load
from .storage import Writer
from .vec_env import RewardConfig

# Files a folder is searched for; a file named on its own is read whatever its name.
REPLAY_SUFFIXES = (".gioreplay", ".gior", ".json")
# The reference traces beside the shared replays: JSON, but not replays.
TRACE_SUFFIX = ".expected.json"


def replay_files(sources: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The files named, and the replay files under the folders named (recursively,
    in name order)."""
    for source in map(Path, sources):
        if not source.is_dir():
            yield source
            continue
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in REPLAY_SUFFIXES and not path.name.endswith(TRACE_SUFFIX):
                yield path


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` as ``(height, width)``."""
    try:
        height, width = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size: expected HxW such as 24x24, got {text!r}") from None
    if not (1 <= height <= 1024 and 1 <= width <= 1024):
        raise ValueError(f"size: sides must be in 1..1024, got {text!r}")
    return height, width


@dataclass
class ImportSummary:
    games: int = 0
    experiences: int = 0
    filtered: int = 0  # games left out by the players and stars filters
    duplicates: int = 0  # files holding a game already imported (another form of it)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    size: tuple[int, int] | None = None

    def format(self) -> str:
        height, width = self.size or (0, 0)
        return (
            f"imported {self.games} games as {self.experiences} experiences on {height}x{width} boards; "
            f"skipped {len(self.skipped)} files (damaged, unsupported or too large), "
            f"left out {self.filtered} games by the filters and {self.duplicates} copies of games already imported"
        )


@dataclass(frozen=True)
class ReplayFilter:
    """Which games to import: ``players`` exactly (None: any number), and every
    player rated at least ``min_stars`` (None: any rating)."""

    players: int | None = None
    min_stars: int | None = None

    def accepts(self, replay: Replay) -> bool:
        if self.players is not None and replay.num_players != self.players:
            return False
        return self.min_stars is None or min(replay.stars, default=0) >= self.min_stars


def import_replays(
    sources: Iterable[str | os.PathLike],
    writer: Writer,
    *,
    size: tuple[int, int] | None = None,
    selection: ReplayFilter = ReplayFilter(),
    reward_config: RewardConfig | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> ImportSummary:
    """Replays every game of ``sources`` into ``writer``, numbering on from its
    ``resume_sequence``. Boards are padded to ``size`` (default: the smallest that
    fits every game, found in a first pass); a damaged file, or a game larger than
    ``size``, is reported to ``on_skip(file, why)`` and skipped."""
    summary = ImportSummary()
    files = list(replay_files(sources))

    def skip(path: Path, why: str) -> None:
        summary.skipped.append((str(path), why))
        if on_skip:
            on_skip(str(path), why)

    def loaded() -> Iterator[tuple[Path, Replay]]:
        for path in files:
            try:
                yield path, load(path)
            except (OSError, ReplayError) as exc:
                skip(path, str(exc))

    if size is None:
        sides = [(r.height, r.width) for _, r in loaded() if selection.accepts(r)]
        size = (max((h for h, _ in sides), default=1), max((w for _, w in sides), default=1))
        files = [path for path in files if str(path) not in {name for name, _ in summary.skipped}]
    summary.size = size
    sequence = writer.resume_sequence
    imported: set[str] = set()
    for path, game in loaded():
        if not selection.accepts(game):
            summary.filtered += 1
            continue
        if game.id and game.id in imported:
            summary.duplicates += 1
            continue
        try:
            batch = game.to_experiences(size[0], size[1], reward_config, first_sequence=sequence)
        except ReplayError as exc:
            skip(path, str(exc))
            continue
        writer.write(batch)
        imported.add(game.id)
        sequence += len(batch)
        summary.games += 1
        summary.experiences += len(batch)
    return summary
