"""Evaluation: a policy against an opponent over a fixed number of games."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import MapConfig
from ..vec_env import RewardConfig, VecEnv
from .policy import NetworkPolicy, Opponent, seat_views


def wilson_interval(
    successes: int, trials: int, z: float = 1.959963984540054
) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass
class EvaluationResult:
    wins: int = 0
    draws: int = 0
    losses: int = 0
    outcomes: list[int] = field(default_factory=list)  # per game: +1 win, 0 draw, -1 loss
    lengths: list[int] = field(default_factory=list)  # per game: the tick it ended at
    frames: list[dict] = field(default_factory=list)  # boards of one recorded game
    recorded_player: int = 0

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def win_rate(self) -> float:
        return self.wins / self.games if self.games else float("nan")

    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.games)

    def within(self, max_ticks: int) -> EvaluationResult:
        """The results the same games give with a tick limit of ``max_ticks`` (no more
        than the one played): a game decided after it is a draw."""
        drawn = [n for r, n in zip(self.outcomes, self.lengths, strict=True) if r == 0]
        if drawn and max_ticks > min(drawn):  # past the limit played, the outcome is unknown
            raise ValueError(f"max_ticks: the games were played to {min(drawn)} ticks")
        return tally(
            [r if n <= max_ticks else 0 for r, n in zip(self.outcomes, self.lengths, strict=True)],
            [min(n, max_ticks) for n in self.lengths],
        )

    def to_dict(self, per_game: bool = False) -> dict:
        """The counts, the win rate and its interval; with ``per_game``, every game's
        outcome and length too."""
        low, high = self.interval()
        games = {"outcomes": self.outcomes, "lengths": self.lengths} if per_game else {}
        return {
            "games": self.games,
            "wins": self.wins,
            "draws": self.draws,
            "losses": self.losses,
            "win_rate": self.win_rate,
            "win_rate_ci95": [low, high],
            "mean_length": float(np.mean(self.lengths)) if self.lengths else float("nan"),
            **games,
        }

    def format(self) -> str:
        low, high = self.interval()
        return (
            f"{self.games} games: {self.wins} wins, {self.draws} draws, {self.losses} losses; "
            f"win rate {100 * self.win_rate:.1f}% (95% CI {100 * low:.1f}%-{100 * high:.1f}%)"
        )


def tally(results, lengths=None) -> EvaluationResult:
    """Counts results given as +1 (win), 0 (draw: tick limit) and -1 (loss), each game
    with its length in ticks when ``lengths`` is given."""
    results = list(results)
    out = EvaluationResult(outcomes=results, lengths=[] if lengths is None else list(lengths))
    if lengths is not None and len(out.lengths) != len(results):
        raise ValueError(f"lengths: expected {len(results)}, got {len(out.lengths)}")
    for r in results:
        if r > 0:
            out.wins += 1
        elif r < 0:
            out.losses += 1
        else:
            out.draws += 1
    return out


def evaluate(
    policy: NetworkPolicy,
    opponent: Opponent,
    games: int,
    height: int = 10,
    width: int = 10,
    seed: int = 0,
    max_ticks: int = 500,
    num_envs: int = 64,
    num_threads: int = 1,
    record: bool = False,
    map_config: MapConfig | None = None,
) -> EvaluationResult:
    """Plays exactly ``games`` games: game ``i`` of the batch plays its first
    ``quota[i]`` games (so short games are not over-counted), the policy in seat
    ``i % 2``. A game reaching ``max_ticks`` is a draw. With ``record``, the boards of
    the first game of batch slot 0 are kept in ``frames``."""
    if games < 1:
        raise ValueError(f"games: must be at least 1, got {games}")
    num_envs = min(num_envs, games)
    quota = np.full(num_envs, games // num_envs)
    quota[: games % num_envs] += 1
    played = np.zeros(num_envs, dtype=np.int64)
    net_config = policy.net.config  # observations encoded as the network was trained
    env = VecEnv(
        num_envs,
        2,
        height,
        width,
        seed=seed,
        max_ticks=max_ticks,
        num_threads=num_threads,
        map_config=map_config,
        reward_config=RewardConfig(),
        army_scaling=net_config.army_scaling,
        army_scale=net_config.army_scale,
    )
    env.reset()
    seats = (np.arange(num_envs) % 2).astype(np.int64)
    index = np.arange(num_envs)
    actions = np.full((num_envs, 2), -1, dtype=np.int32)
    results, lengths, frames = [], [], []
    recording = record
    while (played < quota).any():
        if recording:
            frames.append(env.game_state(0))
        opponent.act(env, seats, actions)
        obs, masks = seat_views(env, seats)
        actions[index, seats] = policy.actions(obs, masks, env.ticks)
        _, _, _, _, info = env.step(actions)
        done = info["episode_done"]
        for i in np.flatnonzero(done):
            if i == 0:
                recording = False
            if played[i] >= quota[i]:
                continue
            played[i] += 1
            winner = int(info["episode_winner"][i])
            results.append(0 if winner < 0 else (1 if winner == seats[i] else -1))
            lengths.append(int(info["episode_length"][i]))
    out = tally(results, lengths)
    out.frames = frames
    out.recorded_player = int(seats[0])
    return out
