"""What the server knows about the experiences in its buffer: when each was
collected, and running aggregates for ``GetExperienceStats``.

A background thread drains one cursor of the buffer (from its oldest resident
experience on) and folds each batch into the aggregates with a few numpy
operations; the same thread samples the buffer head with the wall clock, which
dates every sequence number to within the sampling interval.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .._background import BackgroundLoop
from .._proto import experience_pb2 as pb
from ..experience import Cursor, ExperienceBuffer, RawBatch, format_game_id

DEFAULT_STATS_GAMES = 1000  # games itemized when a request does not say


class CollectionClock:
    """Maps sequence numbers to the wall-clock time they were appended.

    ``sample(head, now)`` records that by ``now`` the buffer held every sequence
    below ``head``; a sequence is dated by the first sample that covered it (an
    upper bound, within the sampling interval). Samples are bounded: those
    wholly below the oldest resident sequence are dropped, and when still too
    many, every other one (halving the resolution of old times).
    """

    def __init__(self, max_samples: int = 1 << 16) -> None:
        self._heads: list[int] = []
        self._times: list[float] = []
        self._max = max_samples
        self._lock = threading.Lock()

    def sample(self, head: int, now: float, oldest: int = 0) -> None:
        with self._lock:
            if self._heads and head <= self._heads[-1]:
                return
            self._heads.append(head)
            self._times.append(now)
            # A sample at or below `oldest` dates no resident sequence.
            drop = min(bisect.bisect_right(self._heads, oldest), len(self._heads) - 1)
            if drop > 0:
                del self._heads[:drop], self._times[:drop]
            if len(self._heads) > self._max:
                self._heads[:-1] = self._heads[:-1:2]
                self._times[:-1] = self._times[:-1:2]

    def time_of(self, sequence: int) -> float:
        """When ``sequence`` was appended (now, for one not sampled yet)."""
        with self._lock:
            at = bisect.bisect_right(self._heads, sequence)
            return self._times[at] if at < len(self._times) else time.time()

    def times_of(self, sequences: np.ndarray) -> np.ndarray:
        """``time_of`` for each of ``sequences`` (float64 seconds)."""
        with self._lock:
            heads = np.asarray(self._heads, dtype=np.uint64)
            times = np.append(np.asarray(self._times, dtype=np.float64), time.time())
        return times[np.searchsorted(heads, np.asarray(sequences, dtype=np.uint64), side="right")]


@dataclass
class StatsSnapshot:
    """The aggregates at one moment (see ``StatsCollector``)."""

    experiences_seen: int = 0
    done_experiences: int = 0
    missed: int = 0
    games_seen: int = 0
    per_player: np.ndarray = field(
        default_factory=lambda: np.zeros(_core.MAX_PLAYERS, dtype=np.int64)
    )
    per_game: dict[int, int] = field(default_factory=dict)  # resident games, most recent last
    reward_sum: float = 0.0
    reward_min: float = float("inf")
    reward_max: float = float("-inf")

    @property
    def reward_mean(self) -> float:
        return self.reward_sum / self.experiences_seen if self.experiences_seen else 0.0


class StatsCollector(BackgroundLoop):
    """Drains a cursor of ``buffer`` on a background thread into running
    aggregates and the ``clock``.

    Per-game counts are kept for games that still have resident experiences
    (a game whose experiences were all overwritten is forgotten), so memory
    follows the buffer, not the run. In block mode the collector's cursor holds
    producers back like any reader; it reads in large batches and keeps up.
    """

    def __init__(
        self,
        buffer: ExperienceBuffer,
        clock: CollectionClock,
        interval: float = 0.01,
        read_size: int = 16384,
    ) -> None:
        super().__init__("experience-stats")
        self.buffer = buffer
        self._clock = clock
        self._interval = interval
        self._read_size = read_size
        self._stats = StatsSnapshot()
        self._last_sequence: OrderedDict[int, int] = OrderedDict()  # game -> newest sequence
        self._lock = threading.Lock()
        # Opened by start(): an open cursor holds producers back in block mode.
        self._cursor: Cursor | None = None
        self._folded_through = buffer.oldest

    def start(self) -> StatsCollector:
        self._cursor = self.buffer.cursor(start="oldest")
        self._folded_through = self._cursor.position
        self._clock.sample(self.buffer.head, time.time(), self.buffer.oldest)
        return super().start()

    def stop(self) -> None:
        self._stop.set()
        if self._cursor is not None:
            self._cursor.close()  # ends a read waiting for experiences
        super().stop()

    def _run(self) -> None:
        assert self._cursor is not None  # opened by start
        while not self._stop.is_set():
            raw = self._cursor.read_records(self._read_size, self._interval)
            self._clock.sample(self.buffer.head, time.time(), self.buffer.oldest)
            self._fold(raw)

    def _fold(self, raw: RawBatch) -> None:
        n = len(raw)
        games, first_index, counts = np.unique(
            raw.game_id[::-1], return_index=True, return_counts=True
        )
        newest = raw.sequence[::-1][first_index]
        order = np.argsort(newest)  # oldest first, so the most recent end up last
        players = np.bincount(raw.player_id, minlength=_core.MAX_PLAYERS)[: _core.MAX_PLAYERS]
        done = int(np.count_nonzero(raw.terminated | raw.truncated))
        with self._lock:
            s = self._stats
            s.missed += raw.missed
            if n:
                rewards = raw.reward.astype(np.float64)
                s.experiences_seen += n
                s.done_experiences += done
                s.per_player += players
                s.reward_sum += float(rewards.sum())
                s.reward_min = min(s.reward_min, float(rewards.min()))
                s.reward_max = max(s.reward_max, float(rewards.max()))
                for game, count, seq in zip(
                    games[order].tolist(),
                    counts[order].tolist(),
                    newest[order].tolist(),
                    strict=False,
                ):
                    if game not in s.per_game:
                        s.games_seen += 1
                        s.per_game[game] = 0
                    s.per_game[game] += count
                    self._last_sequence[game] = seq
                    self._last_sequence.move_to_end(game)
            self._forget_overwritten_games()
            self._folded_through = raw.next_sequence

    def _forget_overwritten_games(self) -> None:
        oldest = self.buffer.oldest
        while self._last_sequence:
            game, seq = next(iter(self._last_sequence.items()))
            if seq >= oldest:
                break
            del self._last_sequence[game]
            del self._stats.per_game[game]

    def snapshot(self, max_games: int) -> tuple[StatsSnapshot, int, int]:
        """A copy of the aggregates with the ``max_games`` most recent games, how
        many games have resident experiences in all, and ``position``."""
        with self._lock:
            through = self._folded_through
            self._forget_overwritten_games()
            s = self._stats
            recent = list(self._last_sequence)[-max_games:] if max_games else []
            copy = StatsSnapshot(
                experiences_seen=s.experiences_seen,
                done_experiences=s.done_experiences,
                missed=s.missed,
                games_seen=s.games_seen,
                per_player=s.per_player.copy(),
                per_game={game: s.per_game[game] for game in recent},
                reward_sum=s.reward_sum,
                reward_min=s.reward_min,
                reward_max=s.reward_max,
            )
            return copy, len(self._last_sequence), through


def stats_response(
    collector: StatsCollector,
    clock: CollectionClock,
    request: pb.GetExperienceStatsRequest,
    buffer_id: str,
    active_streams: int,
) -> pb.GetExperienceStatsResponse:
    """The answer to ``GetExperienceStats``: the aggregates, the buffer's
    counters and the collection times of its oldest and newest experience."""
    snapshot, resident_games, through = collector.snapshot(request.max_games or DEFAULT_STATS_GAMES)
    buffer = collector.buffer
    head, oldest = buffer.head, buffer.oldest
    buffer_stats = buffer.stats()
    response = pb.GetExperienceStatsResponse(
        total_experiences=head,
        total_games=snapshot.games_seen,
        reward_mean=snapshot.reward_mean,
        reward_min=snapshot.reward_min if snapshot.experiences_seen else 0.0,
        reward_max=snapshot.reward_max if snapshot.experiences_seen else 0.0,
        resident_experiences=buffer_stats["resident"],
        capacity=buffer_stats["capacity"],
        overwritten_experiences=buffer_stats["total_overwritten"],
        oldest_sequence=oldest,
        head_sequence=head,
        policy=buffer.policy,
        active_streams=active_streams,
        buffer_id=buffer_id,
        done_experiences=snapshot.done_experiences,
        resident_games=resident_games,
        stats_missed=snapshot.missed,
        aggregated_through=through,
    )
    for game, count in snapshot.per_game.items():
        response.experiences_per_game[format_game_id(game)] = count
    for player, count in enumerate(snapshot.per_player.tolist()):
        if count:
            response.experiences_per_player[player] = count
    if head > oldest:
        response.oldest_collected_at.FromNanoseconds(int(clock.time_of(oldest) * 1e9))
        response.newest_collected_at.FromNanoseconds(int(clock.time_of(head - 1) * 1e9))
    return response
