"""Self-play with the built-in bots into an experience buffer, served over gRPC.

``SelfPlay`` plays: a ``VecEnv`` recording into an ``ExperienceBuffer``, one
built-in policy per player. ``run_selfplay`` is the ``generals-rl selfplay``
job around it: it serves the buffer (``ExperienceServer``), starts the sinks
(other destinations fed from the buffer, e.g. storage writers), plays, shows
progress, waits for connected consumers to drain, and stops everything in
order.

Longer than 400 lines: the self-play job's start and stop order (server,
sinks, play, drain) is read best as one sequence.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

import numpy as np

from . import _core
from .bots import POLICIES
from .defaults import DRAIN_TIMEOUT, MAX_STREAMS, MAX_TICKS
from .experience import BufferFullError, ExperienceBuffer
from .stop_signals import stop_on_signals
from .vec_env import VecEnv


class Sink(Protocol):
    """A destination fed from the buffer while self-play runs (for example a
    storage writer reading through its own cursor). ``start`` is called before
    the first step; ``stop`` after the last one, and returns once everything
    appended has been handled, or raises why it could not. A sink that sets an
    ``error`` attribute (not None) has failed for good: play stops."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


# "checkpoint:PATH[@OPTIONS]": a network (generals_rl.train, needs torch) from a checkpoint
# file or a directory of published weights, reloaded when they change; OPTIONS is an
# epsilon, or "epsilon=E:temperature=T" (CheckpointBot.from_spec).
CHECKPOINT_POLICY = "checkpoint:"
POLICY_CHOICES = f"{', '.join(sorted(POLICIES))} or {CHECKPOINT_POLICY}PATH[@OPTIONS]"


def is_policy_name(name: str) -> bool:
    """A built-in bot's name or ``checkpoint:PATH[@OPTIONS]``."""
    return name in POLICIES or (name.startswith(CHECKPOINT_POLICY) and name != CHECKPOINT_POLICY)


def make_policy(name: str, seed: int):
    if name.startswith(CHECKPOINT_POLICY):
        from .train.policy import CheckpointBot

        return CheckpointBot.from_spec(name[len(CHECKPOINT_POLICY) :], seed=seed)
    return POLICIES[name](seed=seed) if name == "random" else POLICIES[name]()


# Builds a sink for the run's buffer, before anything is recorded into it.
SinkFactory = Callable[[ExperienceBuffer], Sink]


@dataclass(frozen=True)
class SelfPlayConfig:
    """What to play. ``policies`` names the built-in policy of each player (so
    its length is the number of players); ``games=None`` plays until stopped."""

    policies: tuple[str, ...] = ("heuristic", "random")
    games: int | None = 128
    num_envs: int = 16
    height: int = 20
    width: int = 20
    num_threads: int | None = None
    seed: int = 0
    max_ticks: int = MAX_TICKS
    capacity: int = 200_000
    buffer_policy: str = "block"

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if not is_policy_name(p)]
        if unknown:
            raise ValueError(f"policies: unknown {unknown}; a policy is one of {POLICY_CHOICES}")
        if not 2 <= len(self.policies) <= _core.MAX_PLAYERS:
            raise ValueError(
                f"policies: one per player, 2..{_core.MAX_PLAYERS} players, "
                f"got {len(self.policies)}"
            )
        if self.games is not None and self.games < 1:
            raise ValueError(
                f"games: must be at least 1 (or None to play until stopped), got {self.games}"
            )
        if self.num_envs < 1:
            raise ValueError(f"num_envs: must be at least 1, got {self.num_envs}")
        if self.max_ticks < 1:
            raise ValueError(f"max_ticks: must be at least 1, got {self.max_ticks}")
        if self.buffer_policy not in ("block", "overwrite"):
            raise ValueError(
                f"buffer_policy: expected 'block' or 'overwrite', got {self.buffer_policy!r}"
            )

    @property
    def players(self) -> int:
        return len(self.policies)

    @property
    def network_policies(self) -> bool:
        return any(p.startswith(CHECKPOINT_POLICY) for p in self.policies)

    def make_buffer(self) -> ExperienceBuffer:
        return ExperienceBuffer(self.height, self.width, self.capacity, self.buffer_policy)

    def player_label(self, player: int) -> str:
        return f"player {player} ({self.policies[player]})"


@dataclass
class Progress:
    games: int
    experiences: int
    seconds: float
    experiences_per_second: float  # over the last progress interval
    waiting_for_consumers: bool


@dataclass
class SelfPlaySummary:
    games: int
    experiences: int
    seconds: float
    wins: dict[str, int] = field(default_factory=dict)  # player label (or "no winner") -> games won
    wins_by_policy: dict[str, int] = field(default_factory=dict)
    mean_game_length: float = 0.0
    stalled_steps: int = 0  # steps retried because consumers held the buffer full (block mode)

    @property
    def experiences_per_second(self) -> float:
        return self.experiences / self.seconds if self.seconds else 0.0

    @property
    def games_per_second(self) -> float:
        return self.games / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {
            "games": self.games,
            "experiences": self.experiences,
            "seconds": round(self.seconds, 3),
            "experiences_per_second": round(self.experiences_per_second, 1),
            "games_per_second": round(self.games_per_second, 3),
            "mean_game_length": round(self.mean_game_length, 1),
            "wins": self.wins,
            "wins_by_policy": self.wins_by_policy,
            "stalled_steps": self.stalled_steps,
        }

    def format(self) -> str:
        wins = ", ".join(f"{label} {count}" for label, count in self.wins.items())
        by_policy = ", ".join(f"{policy} {count}" for policy, count in self.wins_by_policy.items())
        return (
            f"games: {self.games} in {self.seconds:.1f} s ({self.games_per_second:.1f}/s), "
            f"mean length {self.mean_game_length:.0f} ticks\n"
            f"winners: {wins}\n"
            f"winners by policy: {by_policy}\n"
            f"experiences: {self.experiences} ({self.experiences_per_second:,.0f}/s)"
        )


NO_WINNER = "no winner"
# How long a stopping run waits for room in the buffer for its last, truncating step.
FINAL_STEP_TIMEOUT = 5.0


class SelfPlay:
    """Built-in bots playing ``config.num_envs`` games at once, every experience
    recorded into ``buffer``."""

    def __init__(self, config: SelfPlayConfig, buffer: ExperienceBuffer | None = None) -> None:
        self.config = config
        self.buffer = buffer or config.make_buffer()
        num_envs = min(config.num_envs, config.games) if config.games else config.num_envs
        self.bots = [
            make_policy(name, config.seed + player) for player, name in enumerate(config.policies)
        ]
        self.policy_names = list(config.policies)  # as hot reloads change them
        # Observations encoded as the (first) network was trained.
        scaling = next(
            (b.army_scaling for b in self.bots if hasattr(b, "army_scaling")), ("linear", 1000.0)
        )
        # A short wait per step so a stop request is noticed while consumers hold the buffer full.
        self.env = VecEnv(
            num_envs,
            config.players,
            config.height,
            config.width,
            seed=config.seed,
            max_ticks=config.max_ticks,
            num_threads=config.num_threads,
            # Network policies read observations and masks; the built-in bots need neither.
            observations=config.network_policies,
            action_masks=config.network_policies,
            buffer=self.buffer,
            buffer_timeout=0.25,
            army_scaling=scaling[0],
            army_scale=scaling[1],
        )

    def run(
        self,
        stop: threading.Event | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 0.5,
    ) -> SelfPlaySummary:
        """Plays until ``config.games`` games have finished (or ``stop`` is set)."""
        config = self.config
        stop = stop or threading.Event()
        actions = np.full((self.env.num_envs, config.players), -1, dtype=np.int32)
        wins = np.zeros(config.players + 1, dtype=np.int64)  # last: no winner
        games = total_length = stalled = 0
        self.env.reset()
        start = last_time = time.monotonic()
        first_sequence = last_experiences = self.buffer.head
        waiting = False
        while not stop.is_set() and (config.games is None or games < config.games):
            if not waiting:  # after a stall the same actions are tried again: nothing changed
                for player, bot in enumerate(self.bots):
                    bot.act(self.env, players=[player], out=actions)
            try:
                _, _, _, _, info = self.env.step(actions)
                waiting = False
            except BufferFullError:
                stalled += 1  # nothing changed; consumers are behind (block mode): try again
                waiting = True
                info = None
            if info is not None:
                games, total_length = self._count_games(
                    info, info["episode_done"], games, total_length, wins
                )
            now = time.monotonic()
            if on_progress is not None and now - last_time >= progress_interval:
                head = self.buffer.head
                on_progress(
                    Progress(
                        games,
                        head - first_sequence,
                        now - start,
                        (head - last_experiences) / (now - last_time),
                        waiting,
                    )
                )
                last_time, last_experiences = now, head
        info = self._truncate_unfinished(actions)
        if info is not None:  # games that ended on their own on that tick count
            ended = info["episode_done"] & (
                (info["episode_winner"] >= 0) | (info["episode_length"] >= config.max_ticks)
            )
            games, total_length = self._count_games(info, ended, games, total_length, wins)
        summary = SelfPlaySummary(
            games=games,
            experiences=self.buffer.head - first_sequence,
            seconds=time.monotonic() - start,
            mean_game_length=total_length / games if games else 0.0,
            stalled_steps=stalled,
        )
        for player in range(config.players):
            summary.wins[config.player_label(player)] = int(wins[player])
            policy = config.policies[player]
            summary.wins_by_policy[policy] = summary.wins_by_policy.get(policy, 0) + int(
                wins[player]
            )
        summary.wins[NO_WINNER] = int(wins[config.players])
        summary.wins_by_policy[NO_WINNER] = int(wins[config.players])
        return summary

    def _count_games(
        self, info: dict, done: np.ndarray, games: int, total_length: int, wins: np.ndarray
    ) -> tuple[int, int]:
        """Adds the games ``done`` marks to the counts (``wins`` in place)."""
        if done.any():
            winners = info["episode_winner"][done]
            games += int(done.sum())
            total_length += int(info["episode_length"][done].sum())
            wins += np.bincount(
                np.where(winners < 0, self.config.players, winners),
                minlength=self.config.players + 1,
            )
        return games, total_length

    def _truncate_unfinished(self, actions: np.ndarray) -> dict | None:
        """A last step that ends every unfinished game as truncated, so that each
        game's last experience says it ended (returns and advantages need it).
        Returns its info, or None if the buffer had no room in time (consumers
        or storage not reading: those experiences could not be delivered)."""
        for player, bot in enumerate(self.bots):
            bot.act(self.env, players=[player], out=actions)
        deadline = time.monotonic() + FINAL_STEP_TIMEOUT
        while True:
            try:
                return self.env.step(actions, truncate=True)[4]
            except BufferFullError:
                if time.monotonic() >= deadline:
                    return None


class _ProgressLine:
    """Progress on one terminal line (rewritten in place), or a line every few
    seconds when the stream is not a terminal."""

    def __init__(self, out: TextIO, target_games: int | None) -> None:
        self._out = out
        self._tty = out.isatty()
        self._target = target_games
        self._last_line = 0.0
        self._shown = False

    def __call__(self, progress: Progress, consumers: int) -> None:
        if not self._tty and progress.seconds - self._last_line < 2.0:
            return
        self._last_line = progress.seconds
        games = f"{progress.games}/{self._target}" if self._target else f"{progress.games}"
        text = (
            f"games {games} | experiences {progress.experiences:,} | "
            f"{progress.experiences_per_second:,.0f}/s | "
            f"consumers {consumers}"
            + (" | waiting for consumers" if progress.waiting_for_consumers else "")
        )
        if self._tty:
            self._out.write("\r\x1b[K" + text)
            self._shown = True
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def done(self) -> None:
        if self._shown:
            self._out.write("\n")
            self._out.flush()


def run_selfplay(
    config: SelfPlayConfig,
    address: str,
    *,
    sinks: Sequence[SinkFactory] = (),
    keep_running: bool = False,
    wait_for_consumers: int = 0,
    drain_timeout: float = DRAIN_TIMEOUT,
    token: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
    max_streams: int = MAX_STREAMS,
    log: TextIO = sys.stderr,
    stop: threading.Event | None = None,
    on_start: Callable[[SelfPlay, object], None] | None = None,
) -> SelfPlaySummary:
    """Self-play served on ``address`` until ``config.games`` have finished (or
    ``stop``); with ``keep_running`` it then serves until ``stop`` (or SIGINT).
    Play starts once ``wait_for_consumers`` streams are open. Waits up to
    ``drain_timeout`` seconds for connected consumers to read everything before
    it shuts the server down gracefully. ``on_start(selfplay, server)`` is called
    once the server and the sinks run, before play starts."""
    from .service import ExperienceServer

    if not drain_timeout >= 0:
        raise ValueError(f"drain_timeout: must be at least 0 seconds, got {drain_timeout}")
    if wait_for_consumers < 0:
        raise ValueError(f"wait_for_consumers: must be at least 0, got {wait_for_consumers}")
    stop = stop or threading.Event()
    buffer = config.make_buffer()
    # Sinks are built before the env records, so one may first continue the
    # buffer's sequence numbers from where its destination's data ends.
    built = [factory(buffer) for factory in sinks]
    selfplay = SelfPlay(config, buffer)
    server = ExperienceServer(
        selfplay.buffer, address, token=token, tls=tls, max_streams=max_streams
    ).start()
    print(f"generals-rl selfplay: serving experiences on {server.address}", file=log, flush=True)
    started: list[Sink] = []
    restore = stop_on_signals(stop)
    progress = _ProgressLine(log, config.games)
    watcher = threading.Thread(target=_stop_when_a_sink_fails, args=(started, stop), daemon=True)
    try:
        for sink in built:
            sink.start()
            started.append(sink)
        watcher.start()
        if on_start is not None:
            on_start(selfplay, server)
        if wait_for_consumers > server.active_streams:
            print(
                f"generals-rl selfplay: waiting for {wait_for_consumers} consumer(s) to connect",
                file=log,
                flush=True,
            )
            while server.active_streams < wait_for_consumers and not stop.wait(0.02):
                pass
        summary = selfplay.run(stop, lambda p: progress(p, server.active_streams))
        progress.done()
        _stop_sinks(started)
        if keep_running and not stop.is_set():
            print(
                "generals-rl selfplay: games done; still serving (Ctrl-C to stop)",
                file=log,
                flush=True,
            )
            stop.wait()
        elif server.active_streams:
            print(
                f"generals-rl selfplay: waiting up to {drain_timeout:g} s for "
                f"{server.active_streams} consumer(s) to drain",
                file=log,
                flush=True,
            )
            if not server.wait_drained(drain_timeout):
                print(
                    "generals-rl selfplay: consumers did not drain in time; stopping anyway",
                    file=log,
                    flush=True,
                )
    finally:
        try:
            _stop_sinks(started)
        finally:
            stop.set()  # ends the watcher
            server.stop(grace=min(5.0, max(drain_timeout, 0.5)))
            restore()
    return summary


def _stop_when_a_sink_fails(sinks: list[Sink], stop: threading.Event) -> None:
    """Sets ``stop`` once a sink has failed for good, so play does not run on
    producing experiences nothing stores."""
    while not stop.wait(0.05):
        if any(getattr(sink, "error", None) is not None for sink in sinks):
            stop.set()


def _stop_sinks(sinks: list[Sink]) -> None:
    """Stops every sink (last started first) and forgets them; raises the first
    failure once all are stopped."""
    failure = None
    while sinks:
        try:
            sinks.pop().stop()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def parse_policies(text: str) -> tuple[str, ...]:
    """``"heuristic,random"`` -> ``("heuristic", "random")``."""
    return tuple(p.strip() for p in text.split(",") if p.strip())
