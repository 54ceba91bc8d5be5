"""A PettingZoo ``ParallelEnv``: every player of one game is an agent, on the C++ VecEnv.

Agents are ``"player_0"`` ... ``"player_{P-1}"``. Observation and action spaces are
those of :mod:`generals_rl.envs.gymnasium_env`: a dict of the 9-channel tensor and the
int8 action mask, and ``Discrete(height * width * 8 + 1)`` whose last action passes.
An agent leaves ``agents`` on the step it is eliminated (terminated) and every agent
leaves when the game is won (terminated) or reaches ``max_ticks`` (truncated). An agent
missing from the actions passes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

try:
    from pettingzoo import ParallelEnv
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "generals_rl.envs.pettingzoo_env needs pettingzoo: pip install 'generals-rl[pettingzoo]'"
    ) from error

from ..config import MapConfig
from ..defaults import MAX_TICKS
from ..vec_env import OBSERVATION_CHANNELS, RewardConfig, VecEnv
from .gymnasium_env import (
    action_space,
    engine_action,
    game_info,
    observation_space,
    player_observation,
    render_board,
)

_SEED_BOUND = 2**63


class GeneralsParallelEnv(ParallelEnv):
    """One generals.io game with ``players`` agents acting simultaneously each tick.

    Parameters are those of :class:`generals_rl.vec_env.VecEnv` for a single game
    (``teams`` included).
    ``infos[agent]`` holds ``tick``, ``army`` and ``land`` (per player), ``illegal`` (its
    move was an illegal no-op) and, on the last step of the game, ``winner`` (-1 when
    truncated) and ``episode_return`` (per player).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "generals_rl_v0",
        "render_modes": ["ansi"],
        "is_parallelizable": True,
    }

    def __init__(
        self,
        players: int = 2,
        height: int = 20,
        width: int = 20,
        max_ticks: int = MAX_TICKS,
        map_config: MapConfig | None = None,
        reward_config: RewardConfig | None = None,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
        render_mode: str | None = None,
        teams: list[int] | None = None,
        obstacles: bool = False,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode: expected None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.height, self.width = height, width
        self.possible_agents = [f"player_{p}" for p in range(players)]
        self.agents: list[str] = []
        self._index = {agent: p for p, agent in enumerate(self.possible_agents)}
        self._vec_args = {
            "players": players,
            "height": height,
            "width": width,
            "max_ticks": max_ticks,
            "num_threads": 1,
            "map_config": map_config,
            "reward_config": reward_config,
            "army_scaling": army_scaling,
            "army_scale": army_scale,
            "teams": teams,
            "obstacles": obstacles,
        }
        self._observation_space = observation_space(
            height, width, len(OBSERVATION_CHANNELS) + obstacles
        )
        self._action_space = action_space(height, width)
        self._actions = np.full((1, players), -1, dtype=np.int32)
        self._rng = np.random.default_rng()
        # Checks the configuration now rather than on the first reset.
        VecEnv(1, seed=0, **self._vec_args)
        self._vec: VecEnv | None = None

    def observation_space(self, agent: str):
        # The same object on every call, as PettingZoo asks, so that seeding it sticks.
        return self._observation_space

    def action_space(self, agent: str):
        return self._action_space

    @property
    def vec_env(self) -> VecEnv | None:
        """The one-game VecEnv underneath (None before the first reset)."""
        return self._vec

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None or self._vec is None:
            if seed is not None:
                self._rng = np.random.default_rng(seed)
            self._vec = VecEnv(1, seed=int(self._rng.integers(_SEED_BOUND)), **self._vec_args)
        _, info = self._vec.reset()
        self.agents = self.possible_agents[:]
        observations = {
            agent: player_observation(self._vec.observations[0, p], info["action_masks"][0, p])
            for agent, p in self._index.items()
        }
        shared = game_info(info, final=False)
        infos = {agent: {**shared, "illegal": False} for agent in self.agents}
        return observations, infos

    def step(self, actions: dict[str, Any]):
        if self._vec is None:
            raise RuntimeError("call reset() before step()")
        self._actions.fill(-1)
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"actions: unknown agent {agent!r}")
            if agent in self.agents:
                self._actions[0, self._index[agent]] = engine_action(
                    action, self.height, self.width
                )
        _, rewards, terminated, truncated, info = self._vec.step(self._actions)
        done = bool(info["episode_done"][0])
        shared = game_info(info, final=done)
        observations, reward, terminations, truncations, infos = {}, {}, {}, {}, {}
        for agent in self.agents:
            p = self._index[agent]
            if done:
                observations[agent] = player_observation(info["final_observations"][0, p], None)
            else:
                observations[agent] = player_observation(
                    self._vec.observations[0, p], info["action_masks"][0, p]
                )
            reward[agent] = float(rewards[0, p])
            terminations[agent] = bool(terminated[0, p])
            truncations[agent] = bool(truncated[0]) and not terminations[agent]
            infos[agent] = {**shared, "illegal": bool(info["illegal"][0, p])}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, reward, terminations, truncations, infos

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._vec is None:
            return None
        return render_board(self._vec.game_state(0))

    def close(self) -> None:
        self._vec = None


def parallel_env(**kwargs) -> GeneralsParallelEnv:
    """PettingZoo's conventional constructor."""
    return GeneralsParallelEnv(**kwargs)
