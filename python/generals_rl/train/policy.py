"""Playing with a network: batched inference for every game of a VecEnv, and opponents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..actions import from_gym_actions
from ..bots import HeuristicBot, RandomBot
from ..vec_env import VecEnv
from .checkpoint import load_checkpoint
from .model import NetConfig, PolicyValueNet, full_mask, sample


def net_from_checkpoint(path_or_payload) -> PolicyValueNet:
    payload = path_or_payload if isinstance(path_or_payload, dict) else load_checkpoint(path_or_payload)
    net = PolicyValueNet(NetConfig(**payload["net_config"]))
    net.load_state_dict(payload["model"])
    net.eval()
    return net


class NetworkPolicy:
    """A network choosing one action per game, in one batched forward pass.

    ``greedy`` takes the most probable legal action; otherwise actions are sampled
    (from ``seed``'s generator). ``epsilon`` replaces that share of actions by a
    uniformly random legal one (exploration for actors).
    """

    def __init__(self, net: PolicyValueNet, greedy: bool = False, seed: int = 0, epsilon: float = 0.0) -> None:
        self.net = net
        self.greedy = greedy
        self.epsilon = epsilon
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> NetworkPolicy:
        return cls(net_from_checkpoint(path), **kwargs)

    def actions(self, observations: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """VecEnv actions (int32, -1 passes) for observations ``(B, 9, H, W)`` and
        full-move masks ``(B, H*W*4)``."""
        h, w = observations.shape[-2:]
        obs = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        mask = full_mask(torch.from_numpy(np.ascontiguousarray(masks, dtype=bool)))
        with torch.inference_mode():
            logits, _ = self.net(obs, mask)
            chosen, _ = sample(logits, self.generator, greedy=self.greedy)
            if self.epsilon > 0:
                explore = torch.rand(len(chosen), generator=self.generator) < self.epsilon
                if explore.any():
                    uniform = torch.multinomial(mask[explore].float(), 1, generator=self.generator).squeeze(1)
                    chosen[explore] = uniform
        return from_gym_actions(chosen.numpy(), h, w)


def seat_views(env: VecEnv, seats: np.ndarray):
    """The observations and masks of player ``seats[i]`` in game ``i`` (copies)."""
    index = np.arange(env.num_envs)
    return env.observations[index, seats], env.action_masks[index, seats]


class Opponent:
    """Fills the actions of the opponent seats (``1 - agent_seat`` in a 1v1 env)."""

    name = "opponent"

    def act(self, env: VecEnv, agent_seats: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError


class BotOpponent(Opponent):
    def __init__(self, name: str, seed: int = 0) -> None:
        self.name = name
        self.bot = RandomBot(seed=seed) if name == "random" else HeuristicBot()

    def act(self, env, agent_seats, out):
        # The bots act for every seat in C++; the agent's entries are overwritten after.
        self.bot.act(env, out=out)


class PassiveOpponent(Opponent):
    """Never moves (a wiring check: any working learner beats it)."""

    name = "passive"

    def act(self, env, agent_seats, out):
        out[:] = -1


class NetworkOpponent(Opponent):
    def __init__(self, policy: NetworkPolicy, name: str = "checkpoint") -> None:
        self.policy = policy
        self.name = name

    def act(self, env, agent_seats, out):
        seats = 1 - agent_seats
        obs, masks = seat_views(env, seats)
        out[np.arange(env.num_envs), seats] = self.policy.actions(obs, masks)


BOT_OPPONENTS = ("random", "heuristic", "passive")


def make_opponent(spec: str, seed: int = 0) -> Opponent:
    """``random``, ``heuristic``, ``passive`` or ``checkpoint:PATH`` (sampling, seeded)."""
    if spec in ("random", "heuristic"):
        return BotOpponent(spec, seed)
    if spec == "passive":
        return PassiveOpponent()
    if spec.startswith("checkpoint:"):
        path = spec.split(":", 1)[1]
        return NetworkOpponent(NetworkPolicy.from_checkpoint(path, seed=seed), name=spec)
    raise ValueError(f"opponent: expected random, heuristic, passive or checkpoint:PATH, got {spec!r}")
