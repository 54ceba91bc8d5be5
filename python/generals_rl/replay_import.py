"""Recorded human games as training experiences: replay files of any form, replayed
in the C++ core, stored with the same writers as self-play."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .experience.batch import RawBatch
from .replay import Replay, ReplayError, load
from .storage import Writer
from .vec_env import RewardConfig

# Files a folder is searched for; a file named on its own is read whatever its name.
REPLAY_SUFFIXES = (".gioreplay", ".gior", ".json")
# The reference traces beside the shared replays: JSON, but not replays.
TRACE_SUFFIX = ".expected.json"
# Games the size-finding first pass keeps loaded for the import (their moves and
# AFK events at most this many bytes), so that small imports read each file once.
FIRST_PASS_CACHE_BYTES = 256 << 20


def replay_files(sources: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The files named, and the replay files under the folders named (recursively,
    in name order)."""
    for source in map(Path, sources):
        if not source.is_dir():
            yield source
            continue
        for path in sorted(source.rglob("*")):
            if (
                path.is_file()
                and path.suffix in REPLAY_SUFFIXES
                and not path.name.endswith(TRACE_SUFFIX)
            ):
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
            f"imported {self.games} games as {self.experiences} experiences "
            f"on {height}x{width} boards; "
            f"skipped {len(self.skipped)} files (damaged, unsupported or too large), "
            f"left out {self.filtered} games by the filters and {self.duplicates} copies "
            "of games already imported"
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
    threads: int | None = None,
) -> ImportSummary:
    """Replays every game of ``sources`` into ``writer``, numbering on from its
    ``resume_sequence``. Boards are padded to ``size`` (default: the smallest that
    fits every game, found in a first pass); a damaged file, or a game larger than
    ``size``, is reported to ``on_skip(file, why)`` and skipped. Games are read and
    replayed on ``threads`` threads (default: one per core) while the writer stores
    the ones before, in file order."""
    summary = ImportSummary()
    files = list(replay_files(sources))

    def skip(path: Path, why: str) -> None:
        summary.skipped.append((str(path), why))
        if on_skip:
            on_skip(str(path), why)

    loaded: dict[Path, Replay] = {}
    if size is None:
        sides, cached_bytes = [], 0
        for path in files:
            try:
                game = load(path)
            except (OSError, ReplayError) as exc:
                skip(path, str(exc))
                continue
            if selection.accepts(game):
                sides.append((game.height, game.width))
            if cached_bytes + game.moves.nbytes + game.afks.nbytes <= FIRST_PASS_CACHE_BYTES:
                loaded[path] = game
                cached_bytes += game.moves.nbytes + game.afks.nbytes
        size = (max((h for h, _ in sides), default=1), max((w for _, w in sides), default=1))
        skipped = {name for name, _ in summary.skipped}
        files = [path for path in files if str(path) not in skipped]
    summary.size = size

    def prepare(path: Path) -> tuple[Path, Replay | None, RawBatch | str | None]:
        """The file's game and its experiences (numbered from 0), or why it is skipped;
        no experiences for a game the filters leave out."""
        try:
            game = loaded.pop(path, None) or load(path)
        except (OSError, ReplayError) as exc:
            return path, None, str(exc)
        if not selection.accepts(game):
            return path, game, None
        try:
            return path, game, game.to_experiences(size[0], size[1], reward_config)
        except ReplayError as exc:
            return path, game, str(exc)

    sequence = writer.resume_sequence
    imported: set[str] = set()
    threads = threads or os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        for path, game, result in _in_order(pool, prepare, files, window=2 * threads):
            if isinstance(result, str):
                skip(path, result)
            elif result is None:
                summary.filtered += 1
            elif game.id and game.id in imported:
                summary.duplicates += 1
            else:
                result.sequence += np.uint64(sequence)
                result.next_sequence += sequence
                writer.write(result)
                imported.add(game.id)
                sequence += len(result)
                summary.games += 1
                summary.experiences += len(result)
    return summary


def _in_order(pool: ThreadPoolExecutor, fn: Callable, items: list, window: int) -> Iterator:
    """``fn`` of each item computed on ``pool``, yielded in order, with at most
    ``window`` results waiting (so a slow consumer bounds the memory held)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
