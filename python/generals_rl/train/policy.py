"""Playing with a network: batched inference for every game of a VecEnv, and opponents."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..actions import from_gym_actions
from ..bots import HeuristicBot, RandomBot
from ..vec_env import VecEnv
from .checkpoint import load_checkpoint
from .features import FogMemory
from .model import MASKED_LOGIT, NetConfig, PolicyValueNet, full_mask, sample


def net_from_checkpoint(path_or_payload) -> PolicyValueNet:
    payload = (
        path_or_payload if isinstance(path_or_payload, dict) else load_checkpoint(path_or_payload)
    )
    net = PolicyValueNet(NetConfig(**payload["net_config"]))
    net.load_state_dict(payload["model"])
    net.eval()
    return net


def acts_greedily(payload: dict, temperature: float | None = None) -> bool:
    """Whether a checkpoint's network plays its argmax: a Q-network (the DQN learner's)
    does unless a ``temperature`` is given, since the softmax of values a few hundredths
    apart is near uniform; with one it samples ``softmax(Q / temperature)`` (Boltzmann)."""
    return payload.get("kind") == "dqn" and temperature is None


class NetworkPolicy:
    """A network choosing one action per game, in one batched forward pass.

    ``greedy`` takes the most probable legal action; otherwise actions are sampled
    (from ``seed``'s generator) from the policy sharpened by ``temperature`` (below 1:
    closer to greedy; an evaluation setting, training samples at 1). ``epsilon``
    replaces that share of actions by a uniformly random legal one (exploration for
    actors). A network with memory keeps
    one :class:`FogMemory` per ``stream`` (one per seat played in the same games).
    """

    def __init__(
        self,
        net: PolicyValueNet,
        greedy: bool = False,
        seed: int = 0,
        epsilon: float = 0.0,
        temperature: float | None = None,
    ) -> None:
        temperature = 1.0 if temperature is None else temperature  # None: unsharpened
        if not 0 < temperature < math.inf:
            raise ValueError(f"temperature: must be positive and finite, got {temperature}")
        self.net = net
        self.greedy = greedy
        self.epsilon = epsilon
        self.temperature = temperature
        self.generator = torch.Generator().manual_seed(seed)
        self._memories: dict[int, FogMemory] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> NetworkPolicy:
        """A policy playing a checkpoint; a Q-network's (``greedy`` not given) plays
        greedily unless a ``temperature`` is given (see :func:`acts_greedily`)."""
        payload = load_checkpoint(path)
        temperature = kwargs.pop("temperature", None)
        if kwargs.get("greedy") is None:
            kwargs["greedy"] = acts_greedily(payload, temperature)
        return cls(net_from_checkpoint(payload), temperature=temperature, **kwargs)

    def actions(
        self,
        observations: np.ndarray,
        masks: np.ndarray,
        ticks: np.ndarray | None = None,
        stream: int = 0,
    ) -> np.ndarray:
        """VecEnv actions (int32, -1 passes) for observations ``(B, 9, H, W)`` and
        full-move masks ``(B, H*W*4)``; a network with memory or a clock needs the games'
        ``ticks`` ``(B,)`` at every call (with memory, in the same games each time)."""
        h, w = observations.shape[-2:]
        if self.net.config.memory:
            if ticks is None:
                raise ValueError("ticks: a network with memory needs the games' ticks")
            memory = self._memories.get(stream)
            if memory is None or not memory.holds(len(observations), h, w):
                memory = self._memories[stream] = FogMemory(len(observations), h, w)
            observations = memory.update(observations, ticks)
        obs = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        mask = full_mask(
            torch.from_numpy(np.ascontiguousarray(masks, dtype=bool)), self.net.config.half_moves
        )
        # The network checks the ticks: one with a clock refuses to go without them.
        clock = None if ticks is None else torch.from_numpy(np.asarray(ticks, dtype=np.int64))
        with torch.inference_mode():
            logits, _ = self.net(obs, mask, ticks=clock)
            if self.temperature != 1.0:
                # Masked again: a high temperature would lift the masked logits to the
                # legal ones'.
                logits = (logits / self.temperature).masked_fill(~mask, MASKED_LOGIT)
            chosen, _ = sample(logits, self.generator, greedy=self.greedy)
            if self.epsilon > 0:
                explore = torch.rand(len(chosen), generator=self.generator) < self.epsilon
                if explore.any():
                    uniform = torch.multinomial(
                        mask[explore].float(), 1, generator=self.generator
                    ).squeeze(1)
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
        out[np.arange(env.num_envs), seats] = self.policy.actions(obs, masks, env.ticks)


BOT_OPPONENTS = ("random", "heuristic", "passive")


def make_opponent(spec: str, seed: int = 0) -> Opponent:
    """``random``, ``heuristic``, ``passive`` or ``checkpoint:PATH`` (seeded; sampling,
    or greedy for a Q-network)."""
    if spec in ("random", "heuristic"):
        return BotOpponent(spec, seed)
    if spec == "passive":
        return PassiveOpponent()
    if spec.startswith("checkpoint:"):
        path = spec.split(":", 1)[1]
        return NetworkOpponent(NetworkPolicy.from_checkpoint(path, seed=seed), name=spec)
    raise ValueError(
        f"opponent: expected random, heuristic, passive or checkpoint:PATH, got {spec!r}"
    )


# The options of a checkpoint policy spec (``PATH@NAME=VALUE:...``).
SPEC_OPTIONS = ("epsilon", "temperature")


class CheckpointBot:
    """A network playing like a built-in bot (``act(env, players, out)``), for actors.

    ``path`` is a checkpoint file or a directory of published weights (its
    ``latest.pt``); every ``check_every`` seconds the file is looked at again and
    reloaded when it changed (files are replaced atomically, so a reload never sees half
    a file). ``epsilon`` is the share of uniformly random legal actions (exploration);
    ``temperature`` samples from the network sharpened by it (a Q-network: Boltzmann
    exploration); ``greedy`` None plays a Q-network greedily unless a temperature is
    given, and samples any other network. ``version`` is the weight version in use.
    """

    def __init__(
        self,
        path: str | Path,
        seed: int = 0,
        epsilon: float = 0.0,
        greedy: bool | None = None,
        check_every: float = 1.0,
        temperature: float | None = None,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in [0, 1], got {epsilon}")
        path = Path(path)
        self.path = path / "latest.pt" if path.is_dir() else path
        self.seed, self.epsilon, self.greedy, self.check_every = seed, epsilon, greedy, check_every
        self.temperature = temperature
        self.policy: NetworkPolicy | None = None
        self.version = -1
        self.reloads = 0
        self._stamp = None
        self._checked = 0.0
        self.reload(force=True)

    @classmethod
    def from_spec(cls, spec: str, seed: int = 0) -> CheckpointBot:
        """``PATH``, ``PATH@EPSILON`` or ``PATH@NAME=VALUE[:NAME=VALUE]`` with the names
        ``epsilon`` and ``temperature`` (a colon: policies are listed with commas)."""
        path, sep, options = spec.rpartition("@") if "@" in spec else (spec, "", "")
        usage = f"checkpoint policy {spec!r}: expected PATH, PATH@EPSILON or PATH@" + ":".join(
            f"{name}=VALUE" for name in SPEC_OPTIONS
        )
        values: dict[str, float] = {}
        for item in options.split(":") if sep else ():
            name, _, value = item.rpartition("=") if "=" in item else ("epsilon", "", item)
            if name not in SPEC_OPTIONS or name in values:
                raise ValueError(usage)
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"{usage}; {name} {value!r} is not a number") from None
        if not Path(path).exists():
            raise ValueError(f"checkpoint policy: {path} does not exist")
        return cls(path, seed=seed, **values)

    def reload(self, force: bool = False) -> bool:
        """Loads the weights again when the file changed; True when it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.policy is None:
                raise
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if not force and stamp == self._stamp:
            return False
        payload = load_checkpoint(self.path)
        net = net_from_checkpoint(payload)
        greedy = acts_greedily(payload, self.temperature) if self.greedy is None else self.greedy
        if self.policy is None:
            self.policy = NetworkPolicy(
                net,
                greedy=greedy,
                seed=self.seed,
                epsilon=self.epsilon,
                temperature=self.temperature,
            )
        else:
            self.policy.net, self.policy.greedy = net, greedy
        counters = payload.get("counters", {})
        self.version = int(payload.get("version", counters.get("update", 0)))
        self._stamp = stamp
        self.reloads += 1
        return True

    @property
    def army_scaling(self) -> tuple[str, float]:
        config = self.policy.net.config
        return config.army_scaling, config.army_scale

    def act(
        self, env: VecEnv, players: Iterable[int] | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            self._checked = now
            self.reload()
        if out is None:
            out = np.full((env.num_envs, env.players), -1, dtype=np.int32)
        if env.observations is None or env.action_masks is None:
            raise ValueError("a network policy needs a VecEnv with observations and action masks")
        for p in range(env.players) if players is None else players:
            out[:, p] = self.policy.actions(
                env.observations[:, p], env.action_masks[:, p], env.ticks, stream=p
            )
        return out
