"""A Gymnasium environment: one agent against a built-in opponent, on the C++ VecEnv.

Observations are dicts ``{"observation", "action_mask"}``:

* ``observation``: float32 ``(9, height, width)`` in ``[0, 1]``, the channels of
  :data:`generals_rl.vec_env.OBSERVATION_CHANNELS` (10 with ``obstacles=True``);
* ``action_mask``: int8 ``(height * width * 8 + 1,)``, 1 where the action is legal now.

Actions are ``Discrete(height * width * 8 + 1)``: index ``i < height * width * 8`` is the
flat action index of :mod:`generals_rl.actions` (full moves, then their half moves) and
the last index, ``height * width * 8``, passes. Illegal moves are counted no-ops.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("generals_rl.envs needs gymnasium: pip install 'generals-rl[gym]'") from error

from ..bots import HeuristicBot, RandomBot
from ..config import MapConfig
from ..defaults import MAX_TICKS
from ..vec_env import OBSERVATION_CHANNELS, RewardConfig, VecEnv

ENV_ID = "generals_rl/Generals-v0"
_SEED_BOUND = 2**63


def pass_action(height: int, width: int) -> int:
    """The Discrete action that passes: the last one, ``height * width * 8``."""
    return height * width * 8


def observation_space(
    height: int, width: int, channels: int = len(OBSERVATION_CHANNELS)
) -> spaces.Dict:
    """The observation space of one player."""
    return spaces.Dict(
        {
            "observation": spaces.Box(0.0, 1.0, shape=(channels, height, width), dtype=np.float32),
            "action_mask": spaces.MultiBinary(height * width * 8 + 1),
        }
    )


def action_space(height: int, width: int) -> spaces.Discrete:
    """The action space of one player: every flat action index, then the pass."""
    return spaces.Discrete(height * width * 8 + 1)


def engine_action(action, height: int, width: int) -> int:
    """The engine's flat action index (-1 for a pass) of a Discrete action."""
    index = int(action)
    passing = pass_action(height, width)
    if not 0 <= index <= passing:
        raise ValueError(f"action: expected 0..{passing} ({passing} passes), got {index}")
    return -1 if index == passing else index


def player_observation(observation: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
    """A player's observation dict (copies): the tensor and the mask over every Discrete
    action. The half move of a move is legal exactly when the move is; the pass always is.
    Without a mask (a finished game) only the pass is legal."""
    tiles4 = observation.shape[1] * observation.shape[2] * 4
    action_mask = np.zeros(2 * tiles4 + 1, dtype=np.int8)
    if mask is not None:
        action_mask[:tiles4] = mask
        action_mask[tiles4 : 2 * tiles4] = mask
    action_mask[-1] = 1
    return {"observation": np.array(observation, dtype=np.float32), "action_mask": action_mask}


def game_info(info: dict, final: bool) -> dict[str, Any]:
    """The info of game 0 of a one-game VecEnv: tick, army and land per player and, for
    a finished game (already replaced by the next one), its winner and returns."""
    if not final:
        return {
            "tick": int(info["tick"][0]),
            "army": info["army"][0].copy(),
            "land": info["land"][0].copy(),
        }
    return {
        "tick": int(info["episode_length"][0]),
        "army": info["episode_army"][0].copy(),
        "land": info["episode_land"][0].copy(),
        "winner": int(info["episode_winner"][0]),
        "episode_return": info["episode_return"][0].copy(),
    }


def render_board(state: dict) -> str:
    """A text picture of a board: ``#`` mountain, ``G``/``C`` general/city, owner and army."""
    kind, owner, army = state["kind"], state["owner"], state["army"]
    rows = [f"tick {state['tick']}"]
    for y in range(kind.shape[0]):
        cells = []
        for x in range(kind.shape[1]):
            if kind[y, x] == 1:
                cells.append("   #  ")
                continue
            mark = {2: "C", 3: "G"}.get(int(kind[y, x]), ".")
            who = "-" if owner[y, x] < 0 else str(int(owner[y, x]))
            cells.append(
                f"{mark}{who}{int(army[y, x]):>4}"
                if army[y, x] or owner[y, x] >= 0
                else f"{mark}     "
            )
        rows.append(" ".join(cells))
    return "\n".join(rows)


class GeneralsEnv(gymnasium.Env):
    """generals.io against built-in opponents (``"heuristic"`` or ``"random"``): 1v1 by
    default; ``players`` and ``teams`` set up free-for-all or team games (the bot plays
    every other seat, the agent's teammates included).

    Parameters
    ----------
    opponent:
        ``"heuristic"`` (:class:`generals_rl.bots.HeuristicBot`) or ``"random"``
        (:class:`generals_rl.bots.RandomBot`).
    agent_player:
        The agent's seat, 0 to ``players - 1`` (moves resolve in alternating player order).
    players, teams, height, width, max_ticks, map_config, reward_config, army_scaling, army_scale:
        As for :class:`generals_rl.vec_env.VecEnv`. Rewards are the agent's, from
        ``reward_config``; an episode ends when a general falls (terminated) or at
        ``max_ticks`` (truncated).
    render_mode:
        ``None`` or ``"ansi"`` (``render()`` returns the board as text).

    ``info`` holds ``tick``, ``army`` and ``land`` (per player), ``illegal`` (the agent's
    move was an illegal no-op) and, on the last step, ``winner`` (-1 when truncated) and
    ``episode_return`` (per player).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        opponent: str = "heuristic",
        agent_player: int = 0,
        height: int = 20,
        width: int = 20,
        max_ticks: int = MAX_TICKS,
        map_config: MapConfig | None = None,
        reward_config: RewardConfig | None = None,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
        render_mode: str | None = None,
        players: int = 2,
        teams: list[int] | None = None,
        obstacles: bool = False,
    ) -> None:
        if opponent not in ("heuristic", "random"):
            raise ValueError(f"opponent: expected 'heuristic' or 'random', got {opponent!r}")
        if agent_player not in range(players):
            raise ValueError(f"agent_player: expected 0..{players - 1}, got {agent_player}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode: expected None or 'ansi', got {render_mode!r}")
        self.opponent = opponent
        self.agent_player = agent_player
        self.render_mode = render_mode
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
        self._opponents = [p for p in range(players) if p != agent_player]
        self.height, self.width = height, width
        self.observation_space = observation_space(
            height, width, len(OBSERVATION_CHANNELS) + obstacles
        )
        self.action_space = action_space(height, width)
        self._actions = np.full((1, players), -1, dtype=np.int32)
        self._vec: VecEnv | None = None
        self._bot = None
        # Checks the configuration now rather than on the first reset.
        VecEnv(1, seed=0, **self._vec_args)

    @property
    def vec_env(self) -> VecEnv | None:
        """The one-game VecEnv underneath (None before the first reset)."""
        return self._vec

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._vec is None:
            # A new stream of games, drawn from Gymnasium's seeded generator.
            game_seed, bot_seed = (int(s) for s in self.np_random.integers(_SEED_BOUND, size=2))
            self._vec = VecEnv(1, seed=game_seed, **self._vec_args)
            self._bot = RandomBot(seed=bot_seed) if self.opponent == "random" else HeuristicBot()
        _, info = self._vec.reset()
        return self._observation(info, final=False), self._info(info, final=False)

    def step(self, action):
        if self._vec is None:
            raise RuntimeError("call reset() before step()")
        me = self.agent_player
        self._bot.act(self._vec, players=self._opponents, out=self._actions)
        self._actions[0, me] = engine_action(action, self.height, self.width)
        _, rewards, terminated, truncated, info = self._vec.step(self._actions)
        done = bool(info["episode_done"][0])
        return (
            self._observation(info, final=done),
            float(rewards[0, me]),
            bool(terminated[0, me]),
            bool(truncated[0]),
            self._info(info, final=done),
        )

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._vec is None:
            return None
        return render_board(self._vec.game_state(0))

    def _observation(self, info: dict, final: bool) -> dict[str, np.ndarray]:
        # On the last step the VecEnv has already started the next game: the finished
        # game's observation is the final one, and no move is left to make.
        p = self.agent_player
        if final:
            return player_observation(info["final_observations"][0, p], None)
        return player_observation(self._vec.observations[0, p], info["action_masks"][0, p])

    def _info(self, info: dict, final: bool) -> dict[str, Any]:
        return {**game_info(info, final), "illegal": bool(info["illegal"][0, self.agent_player])}
