"""Batched self-play: N games stepped together in C++ on a thread pool."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from . import _core
from .config import MapConfig
from .defaults import MAX_TICKS, REWARD_WEIGHTS
from .observations import OBSERVATION_FORMATS, CompactObservations, expand_masks

# The observation channels, in order (cpp/core/schema.hpp).
OBSERVATION_CHANNELS = _core.OBSERVATION_CHANNELS
# The channel VecEnv(obstacles=True) adds after those: fogged mountains and cities.
OBSTACLES_CHANNEL = _core.OBSTACLES_CHANNEL


@dataclass(frozen=True)
class RewardConfig:
    """Per-player, per-tick reward weights.

    ``win``/``loss`` on the tick the game is won or the player is eliminated (in a
    team game every player of the winning team wins, and an eliminated player loses
    once no teammate is alive); ``city_captured``/``city_lost`` per city changing
    hands that tick (through an elimination too); ``army_advantage`` times
    ``(A_team - A_others) / (A_team + A_others)`` (in free-for-all a player is its team);
    ``land_gained`` per tile gained (negative when lost); ``general_captured`` per
    general captured. The defaults are the C++ engine's (``generals_rl.defaults``).
    """

    win: float = REWARD_WEIGHTS["win"]
    loss: float = REWARD_WEIGHTS["loss"]
    city_captured: float = REWARD_WEIGHTS["city_captured"]
    city_lost: float = REWARD_WEIGHTS["city_lost"]
    army_advantage: float = REWARD_WEIGHTS["army_advantage"]
    land_gained: float = REWARD_WEIGHTS["land_gained"]
    general_captured: float = REWARD_WEIGHTS["general_captured"]

    def to_core(self) -> _core.RewardConfig:
        return _core.RewardConfig(**asdict(self))


class VecEnv:
    """``num_envs`` independent games of ``players`` players on ``height x width`` boards.

    Generated boards (sides drawn from ``map_config``, capped at the env's size) are
    padded to ``(height, width)`` with mountains. ``step(actions)`` takes an int32
    ``(num_envs, players)`` array of flat action indices (-1 passes) and returns
    ``(observations, rewards, terminated, truncated, info)``. Finished games reset
    automatically with a fresh map; their final observation is in
    ``info["final_observations"]`` where ``info["episode_done"]`` is set.

    All returned arrays are read-only views of buffers owned by the env: they are
    written in place by the next ``step``/``reset``. Copy what you keep.

    observations: float32 ``(num_envs, players, 9, height, width)``, channels in
    ``OBSERVATION_CHANNELS`` order; with ``obstacles=True`` a 10th channel
    (``OBSTACLES_CHANNEL``) marks the tiles in fog holding a mountain or a city, as the
    real client shows them (``self.channels`` names them all); action masks: bool
    ``(num_envs, players, height*width*4)`` in ``info["action_masks"]`` (the half move of
    index ``i`` is legal exactly when ``i`` is).

    ``observation_format="compact"`` gives compact views instead
    (``generals_rl.observations``): observations (and final observations) are
    ``CompactObservations`` of tile codes uint8 ``(num_envs, players, height, width)``
    and visible armies of the same shape, and action masks are packed, uint8
    ``(num_envs, players, packed_mask_bytes)``; ``env.expand(observations)`` and
    ``env.expand_masks(masks)`` give the float form bit for bit.

    ``teams`` (one team number per player, at least two teams, e.g. ``[0, 0, 1, 1]``)
    plays team games: allies merge onto each other's tiles, share vision, and win
    together (``info["winner"]`` is then the winning team); ``None`` is free-for-all.

    Given an ``ExperienceBuffer`` (``buffer=``), every step records one experience
    per alive player into it inside the same C++ call. With the buffer's block
    policy a step waits up to ``buffer_timeout`` seconds for cursors to make room,
    then raises ``BufferFullError`` before changing anything.
    """

    def __init__(
        self,
        num_envs: int,
        players: int = 2,
        height: int = 20,
        width: int = 20,
        seed: int = 0,
        max_ticks: int = MAX_TICKS,
        num_threads: int | None = None,
        map_config: MapConfig | None = None,
        reward_config: RewardConfig | None = None,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
        observations: bool = True,
        action_masks: bool = True,
        buffer=None,
        buffer_timeout: float = 30.0,
        teams: list[int] | None = None,
        obstacles: bool = False,
        observation_format: str = "float",
    ) -> None:
        if observation_format not in OBSERVATION_FORMATS:
            raise ValueError(
                f"observation_format: expected one of {OBSERVATION_FORMATS}, "
                f"got {observation_format!r}"
            )
        if num_threads is None:
            num_threads = min(os.cpu_count() or 1, num_envs)
        map_config = map_config or MapConfig()
        for name, side in (("height", height), ("width", width)):
            if not 2 <= side <= _core.MAX_ENV_SIDE:
                raise ValueError(f"{name}: must be in 2..{_core.MAX_ENV_SIDE}, got {side}")
        map_config.to_core(
            players
        )  # validates the options as given, before they are capped to the board
        self.reward_config = reward_config or RewardConfig()
        config = _core.VecEnvConfig()
        config.num_envs, config.players, config.seed = num_envs, players, seed
        config.height, config.width = height, width
        config.max_ticks, config.num_threads = max_ticks, num_threads
        config.map = map_config.to_core(players, height, width)
        config.reward = self.reward_config.to_core()
        config.observation = _core.ObservationConfig(army_scaling, army_scale, obstacles)
        config.observations, config.action_masks = observations, action_masks
        config.teams = list(teams or ())
        config.observation_format = observation_format
        self._env = _core.VecEnv(config)
        self.observation_format = observation_format
        self.observation_options = {
            "army_scaling": army_scaling,
            "army_scale": army_scale,
            "obstacles": obstacles,
        }
        self.channels = (
            (*OBSERVATION_CHANNELS, OBSTACLES_CHANNEL) if obstacles else OBSERVATION_CHANNELS
        )
        self.teams = list(teams) if teams else None
        self.num_envs, self.players, self.height, self.width = num_envs, players, height, width
        self.num_actions = height * width * 8
        self.seed = seed
        self._out = self._env.outputs()
        self.buffer = buffer
        if buffer is not None:
            buffer.record_steps_of(self._env, buffer_timeout)

    num_threads = property(lambda self: self._env.num_threads, doc="Threads stepping the games.")
    alive = property(
        lambda self: self._out["alive"], doc="bool ``(num_envs, players)``: alive now (a view)."
    )
    ticks = property(
        lambda self: self._out["tick"], doc="int32 ``(num_envs,)``: each game's tick now (a view)."
    )

    def env_seed(self, index: int, episode: int) -> int:
        """The map seed of game ``index``'s ``episode``-th game (from 0)."""
        return self._env.env_seed(index, episode)

    def engine_reward_config(self) -> RewardConfig:
        """The reward weights the C++ env steps with."""
        return RewardConfig(**self._env.reward().to_dict())

    def set_counting(self, on: bool) -> None:
        """Counting for ``counters()`` is on by default; off only to measure its cost."""
        self._env.set_counting(on)

    def random_actions(self, seed: int, call: int, act_for: np.ndarray, out: np.ndarray) -> None:
        """Writes a uniformly random legal full move (a pass when none) into ``out``
        ``(num_envs, players)`` int32 for each player whose ``act_for`` flag is set,
        drawn from ``(seed, call)``; in C++, over the env's games at once."""
        _core.random_policy(self._env, seed, call, act_for, out)

    def heuristic_actions(self, act_for: np.ndarray, out: np.ndarray) -> None:
        """As ``random_actions``, with the built-in heuristic bot's moves."""
        _core.heuristic_policy(self._env, act_for, out)

    @property
    def observations(self) -> np.ndarray | CompactObservations | None:
        return self._views("observations", "armies")

    def _views(self, tiles: str, armies: str):
        if self.observation_format == "compact" and tiles in self._out:
            return CompactObservations(self._out[tiles], self._out[armies])
        return self._out.get(tiles)

    def expand(
        self, observations: CompactObservations, num_threads: int | None = None
    ) -> np.ndarray:
        """Float observations of compact ones, with this env's army scaling and obstacles."""
        return observations.expand(**self.observation_options, num_threads=num_threads)

    def expand_masks(self, action_masks, num_threads: int | None = None) -> np.ndarray:
        """Bool action masks of packed ones."""
        return expand_masks(action_masks, self.height, self.width, num_threads=num_threads)

    @property
    def action_masks(self) -> np.ndarray | None:
        return self._out.get("action_masks")

    def reset(self):
        """Starts every game afresh; returns ``(observations, info)``."""
        self._env.reset()
        return self.observations, self._info()

    def step(self, actions, truncate: bool = False):
        """Steps every game one tick. With ``truncate`` every game this tick does
        not end is ended as truncated, as the tick limit would (its last
        experiences marked ``truncated``, the game reset): for a run that stops."""
        actions = _as_action_array(actions)
        if actions.shape != (self.num_envs, self.players):
            raise ValueError(
                f"actions: expected shape ({self.num_envs}, {self.players}), got {actions.shape}"
            )
        self._env.step(actions, bool(truncate))
        out = self._out
        return self.observations, out["rewards"], out["terminated"], out["truncated"], self._info()

    def set_reward_config(self, reward_config: RewardConfig) -> None:
        """Uses ``reward_config`` from the next ``step`` on. Call it between steps,
        from the thread that steps (a step never sees half a change)."""
        if not isinstance(reward_config, RewardConfig):
            raise TypeError(
                f"reward_config: expected a RewardConfig, got {type(reward_config).__name__}"
            )
        self._env.set_reward(reward_config.to_core())
        self.reward_config = reward_config

    def counters(self) -> dict:
        """Totals since the env was made, counted in C++ inside ``step``:
        ``experiences``, ``illegal_moves`` and ``wins`` (uint64 per player),
        ``games_truncated``, ``games_no_winner``, ``reward_buckets`` (per bucket of
        ``generals_rl.defaults.REWARD_BUCKETS``, then above 1; not cumulative) and
        ``reward_sum``. Safe to call from another thread while a step runs."""
        return self._env.counters()

    def game_state(self, index: int) -> dict:
        """A copy of game ``index``'s board: kind, owner, army, tick, generals."""
        return self._env.game_state(index)

    def _info(self) -> dict:
        info = {
            k: v
            for k, v in self._out.items()
            if k
            not in ("observations", "armies", "final_armies", "rewards", "terminated", "truncated")
        }
        if "final_observations" in info:
            info["final_observations"] = self._views("final_observations", "final_armies")
        return info


def _as_action_array(actions) -> np.ndarray:
    """int32 actions; indices outside int32 become out-of-range (illegal) indices
    instead of wrapping around onto other moves."""
    actions = np.asarray(actions)
    if actions.dtype == np.int32:
        return np.ascontiguousarray(actions)
    if not (np.issubdtype(actions.dtype, np.integer) or actions.dtype == np.bool_):
        raise ValueError(f"actions: expected integer action indices, got dtype {actions.dtype}")
    limits = np.iinfo(np.int32)
    if np.issubdtype(actions.dtype, np.signedinteger):
        actions = np.clip(actions, limits.min, limits.max)
    elif np.issubdtype(actions.dtype, np.unsignedinteger):
        actions = np.minimum(actions, limits.max)
    return np.ascontiguousarray(actions.astype(np.int32))


def encode_observation(
    kind,
    owner,
    army,
    player: int,
    army_scaling: str = "linear",
    army_scale: float = 1000.0,
    obstacles: bool = False,
):
    """The 9-channel observation (10 with ``obstacles``) and the action mask of ``player``
    for one board."""
    return _core.encode_observation(kind, owner, army, player, army_scaling, army_scale, obstacles)
