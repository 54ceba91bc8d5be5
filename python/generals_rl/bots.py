"""Built-in policies computed in C++ for every game of a VecEnv in one call."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .vec_env import VecEnv


class _Bot:
    def _buffers(self, env: VecEnv, players: Iterable[int] | None, out: np.ndarray | None):
        act_for = np.zeros(env.players, dtype=np.uint8)
        if players is None:
            act_for[:] = 1
        else:
            for p in players:
                if not 0 <= p < env.players:
                    raise ValueError(f"players: {p} is not a player of a {env.players}-player env")
                act_for[p] = 1
        if out is None:
            out = np.full((env.num_envs, env.players), -1, dtype=np.int32)
        return act_for, out


class RandomBot(_Bot):
    """A uniformly random legal full move for each player (a pass when none is legal)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._calls = 0

    def act(
        self, env: VecEnv, players: Iterable[int] | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Actions ``(num_envs, players)`` int32 for ``players`` (default: all); other
        entries of ``out`` are left as they are."""
        act_for, out = self._buffers(env, players, out)
        env.random_actions(self.seed, self._calls, act_for, out)
        self._calls += 1
        return out


class HeuristicBot(_Bot):
    """Takes a visible enemy general whenever one move does; otherwise expands
    greedily, gathers its largest army and attacks toward the enemy (its general
    when seen, else its nearest seen tile). Deterministic. In team games it sees
    what its alive teammates see and never attacks them."""

    def act(
        self, env: VecEnv, players: Iterable[int] | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        act_for, out = self._buffers(env, players, out)
        env.heuristic_actions(act_for, out)
        return out


POLICIES = {"random": RandomBot, "heuristic": HeuristicBot}
