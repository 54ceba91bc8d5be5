"""PPO in process on a VecEnv: batched rollouts, GAE, clipped objective, entropy bonus.

The agent plays seat ``i % 2`` of game ``i`` (so half the games each seat) against a
built-in bot, a passive opponent, or past checkpoints of itself (``opponent="pool"``).
Training runs in segments of ``checkpoint_every`` updates; each segment starts fresh
games from a seed derived from the run's seed and the segment, and ends with an atomic
checkpoint, so a run resumed from a checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..actions import from_gym_actions
from ..config import MapConfig
from ..vec_env import RewardConfig, VecEnv
from .checkpoint import load_checkpoint, save_checkpoint
from .features import FogMemory, enemy_tiles_taken
from .model import NetConfig, PolicyValueNet, entropy, full_mask, log_probs, sample
from .policy import (
    BOT_OPPONENTS,
    NetworkOpponent,
    NetworkPolicy,
    make_opponent,
    net_from_checkpoint,
)
from .schedule import check_time_budget, decayed_lr, run_progress

METRICS = (
    "update",
    "env_steps",
    "episodes",
    "wall_time",
    "cpu_time",
    "steps_per_second",
    "lr",
    "win_rate",
    "draw_rate",
    "loss_rate",
    "episode_return",
    "episode_length",
    "window_episodes",
    "min_side",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "opponent",
)


@dataclass(frozen=True)
class PPOConfig:
    height: int = 10
    width: int = 10
    max_ticks: int = 500
    opponent: str = "random"  # random | heuristic | passive | pool
    num_envs: int = 64
    rollout_steps: int = 64
    total_env_steps: int = 2_000_000  # agent moves over the whole run (sets the LR schedule)
    # Seconds of training wall time the run is given: the schedules (the learning rate's
    # decay, the enemy-land shaping's anneal) then span whichever ends first, the steps
    # or this time, and training stops at it; None: the steps alone.
    time_budget: float | None = None
    seed: int = 0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    lr: float = 1e-3
    lr_final_fraction: float = 0.1  # linear decay to this fraction of lr
    epochs: int = 3
    minibatches: int = 4
    max_grad_norm: float = 0.5
    channels: int = 32
    blocks: int = 2
    army_scaling: str = "log"  # observations: log1p(army) / log1p(army_scale), or linear
    army_scale: float = 1000.0
    memory: bool = True  # observations carry FogMemory's planes
    half_moves: bool = True  # the policy may split armies (NetConfig.half_moves)
    stack_preference: float = 0.0  # NetConfig.stack_preference
    heading_preference: float = 0.0  # NetConfig.heading_preference
    action_head: str = "joint"  # NetConfig.action_head
    move_view: int = 1  # NetConfig.move_view
    bfloat16_trunk: bool = False  # NetConfig.bfloat16_trunk
    reward: dict = field(default_factory=lambda: asdict(RewardConfig()))
    tick_reward: float = 0.0  # added to the agent's reward every tick (negative: hurry)
    draw_reward: float | None = (
        None  # a game cut by max_ticks ends with this; None bootstraps instead
    )
    # Shaping toward the enemy: a reward per enemy tile the agent takes, annealed linearly
    # to 0 over the run (total_env_steps or time_budget).
    enemy_land_reward: float = 0.0
    # map generation (MapConfig); sides are capped to the board
    min_side: int = 18  # board sides drawn from [min_side, max_side], capped to height x width;
    max_side: int = 23  # smaller boards are padded with mountains (a curriculum of sizes)
    # Curriculum: min_side rises by one (up to max_side) each time the win rate over a full
    # window of games on the current sides reaches this; None keeps the sides fixed.
    curriculum_win_rate: float | None = None
    mountain_fraction: float = 0.2
    cities: int = -1
    min_general_distance: int = -1
    checkpoint_every: int = 20  # updates per segment
    pool_size: int = 8  # past checkpoints the pool samples from
    pool_latest: float = 0.5  # chance the pool opponent is the latest checkpoint
    torch_threads: int = 1
    env_threads: int = 1
    window: int = 256  # episodes in the rolling win rate

    def __post_init__(self) -> None:
        if self.opponent not in (*BOT_OPPONENTS, "pool"):
            raise ValueError(
                f"opponent: expected random, heuristic, passive or pool, got {self.opponent!r}"
            )
        for name in (
            "num_envs",
            "rollout_steps",
            "epochs",
            "minibatches",
            "checkpoint_every",
            "torch_threads",
            "env_threads",
            "window",
            "pool_size",
            "max_ticks",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.num_envs * self.rollout_steps % self.minibatches:
            raise ValueError("minibatches: must divide num_envs * rollout_steps")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError("gamma must be in (0, 1] and gae_lambda in [0, 1]")
        if self.curriculum_win_rate is not None and not 0 < self.curriculum_win_rate <= 1:
            raise ValueError(
                f"curriculum_win_rate: must be in (0, 1], got {self.curriculum_win_rate}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr: must be positive, got {self.lr}")
        check_time_budget(self.time_budget)
        RewardConfig(**self.reward)  # unknown reward fields raise TypeError
        self.map_config().to_core(
            2, self.height, self.width
        )  # invalid map options raise ValueError
        self.net_config()

    def net_config(self) -> NetConfig:
        return NetConfig.of(self)

    def map_config(self, min_side: int | None = None) -> MapConfig:
        return MapConfig(
            min_side=self.min_side if min_side is None else min_side,
            max_side=self.max_side,
            mountain_fraction=self.mountain_fraction,
            cities=self.cities,
            min_general_distance=self.min_general_distance,
        )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def total_updates(self) -> int:
        return max(1, math.ceil(self.total_env_steps / self.batch_size))

    @classmethod
    def from_dict(cls, values: dict) -> PPOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PPO options: {', '.join(unknown)}")
        reward = values.get("reward")
        if reward is not None:
            unknown = sorted(set(reward) - {f.name for f in fields(RewardConfig)})
            if unknown:
                raise ValueError(f"unknown reward fields: {', '.join(unknown)}")
            values = {**values, "reward": {**asdict(RewardConfig()), **reward}}
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def compute_gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Advantages and returns over ``T`` steps of ``N`` games (arrays ``(T, N)``).

    ``dones[t]`` ends the episode after step ``t`` (no bootstrap across it);
    ``last_value`` ``(N,)`` is the value of the state after the last step.
    """
    rewards, values, dones = (np.asarray(a, dtype=np.float32) for a in (rewards, values, dones))
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1:], dtype=np.float32)
    next_value = np.asarray(last_value, dtype=np.float32)
    for t in range(steps - 1, -1, -1):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * live - values[t]
        running = delta + gamma * lam * live * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


class PPOTrainer:
    """Trains a :class:`PolicyValueNet` with PPO; ``run_dir`` holds ``config.json``,
    ``metrics.csv`` and ``checkpoints/`` (``latest.pt`` and one file per segment)."""

    def __init__(self, config: PPOConfig, run_dir: str | Path, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        torch.set_num_threads(config.torch_threads)
        self.update = 0
        self.env_steps = 0
        self.episodes = 0
        self.wall_time = 0.0
        self.cpu_time = 0.0  # CPU seconds of this process's threads while training
        self.min_side = config.min_side  # the curriculum's current smallest side
        self.outcomes: deque = deque(maxlen=config.window)  # (result, return, length)
        payload = None
        if resume:
            latest = self.checkpoint_dir / "latest.pt"
            if not latest.exists():
                raise FileNotFoundError(f"{latest}: no checkpoint to resume from")
            payload = load_checkpoint(latest)
            config = PPOConfig.from_dict(payload["config"])
        self.config = config
        torch.manual_seed(config.seed)  # the initial weights follow from the seed
        self.net = PolicyValueNet(config.net_config())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        self.generator = torch.Generator().manual_seed(config.seed)
        if payload is not None:
            self._restore(payload)
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if (self.checkpoint_dir / "latest.pt").exists():
                raise FileExistsError(
                    f"{self.run_dir}: holds a run already (resume it, or pick another directory)"
                )
        (self.run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self._trim_metrics()
        self._tensorboard = None
        self.env: VecEnv | None = None

    # ---- checkpoints -------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "kind": "ppo",
            "config": self.config.to_dict(),
            "net_config": self.net.config.to_dict(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {
                "update": self.update,
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "wall_time": self.wall_time,
                "cpu_time": self.cpu_time,
                "min_side": self.min_side,
            },
            "rng": {"sample": self.generator.get_state(), "torch": torch.get_rng_state()},
            "outcomes": [list(o) for o in self.outcomes],
        }

    def _restore(self, payload: dict) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        counters = payload["counters"]
        self.update, self.env_steps = counters["update"], counters["env_steps"]
        self.episodes, self.wall_time = counters["episodes"], counters["wall_time"]
        self.cpu_time = counters.get("cpu_time", 0.0)
        self.min_side = counters.get("min_side", self.config.min_side)
        self.generator.set_state(payload["rng"]["sample"])
        torch.set_rng_state(payload["rng"]["torch"])
        self.outcomes.extend(tuple(o) for o in payload["outcomes"])

    def save(self) -> Path:
        state = self.state()
        path = save_checkpoint(self.checkpoint_dir / f"ckpt_{self.update:07d}.pt", state)
        save_checkpoint(self.checkpoint_dir / "latest.pt", state)
        return path

    def _trim_metrics(self) -> None:
        """Drops metric rows written after the checkpoint the run resumes from."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["update"]) <= self.update]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS)
            writer.writeheader()
            writer.writerows(rows)

    def _log_metrics(self, row: dict) -> None:
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tensorboard = False
        if self._tensorboard:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "update" and not math.isnan(value):
                    self._tensorboard.add_scalar(key, value, row["env_steps"])

    # ---- segments ----------------------------------------------------------------------

    def _start_segment(self) -> None:
        c = self.config
        self._advance_curriculum()
        segment = self.update // c.checkpoint_every
        seed = (c.seed * 1_000_003 + segment) % 2**63
        self.env = VecEnv(
            c.num_envs,
            2,
            c.height,
            c.width,
            seed=seed,
            max_ticks=c.max_ticks,
            num_threads=c.env_threads,
            map_config=c.map_config(self.min_side),
            reward_config=RewardConfig(**c.reward),
            army_scaling=c.army_scaling,
            army_scale=c.army_scale,
        )
        self.seats = (np.arange(c.num_envs) % 2).astype(np.int64)
        self.memory = FogMemory(c.num_envs, c.height, c.width) if c.memory else None
        if c.opponent == "pool":
            self.opponent = self._pool_opponent(segment, seed)
        else:
            self.opponent = make_opponent(c.opponent, seed=seed)
        self.env.reset()

    def _advance_curriculum(self) -> None:
        """Raises min_side once a full window of games on the current sides is won
        often enough; the window then starts afresh on the new sides."""
        c = self.config
        if c.curriculum_win_rate is None or self.min_side >= min(c.max_side, c.height, c.width):
            return
        window = list(self.outcomes)
        if len(window) == c.window and sum(o[0] == 1 for o in window) >= (
            c.curriculum_win_rate * c.window
        ):
            self.min_side += 1
            self.outcomes.clear()

    def _pool_opponent(self, segment: int, seed: int) -> NetworkOpponent:
        """League-style: the latest checkpoint with probability ``pool_latest``, else one
        of the ``pool_size`` before it; the current weights when there is none yet."""
        c = self.config
        past = sorted(self.checkpoint_dir.glob("ckpt_*.pt"))
        past = [p for p in past if int(p.stem.split("_")[1]) <= self.update][-c.pool_size - 1 :]
        rng = np.random.default_rng([c.seed, segment])
        if not past:
            net = PolicyValueNet(self.net.config)
            net.load_state_dict(self.net.state_dict())
            name = "self"
        else:
            pick = (
                len(past) - 1
                if len(past) == 1 or rng.random() < c.pool_latest
                else rng.integers(len(past) - 1)
            )
            net = net_from_checkpoint(past[pick])
            name = past[pick].stem
        net.eval()
        return NetworkOpponent(NetworkPolicy(net, seed=seed), name=f"pool:{name}")

    # ---- training ----------------------------------------------------------------------

    def progress(self) -> float:
        """How far the run is through its schedules, 0 to 1: its updates out of
        ``total_updates``, or its training wall time out of ``time_budget`` if further."""
        c = self.config
        return run_progress(self.update, c.total_updates, self.wall_time, c.time_budget)

    def train(
        self,
        updates: int | None = None,
        time_limit: float | None = None,
        log: Callable[[dict], None] | None = None,
    ) -> dict:
        """Runs until ``total_updates``, the config's ``time_budget``, ``updates`` more
        updates, or ``time_limit`` seconds (the times checked at segment ends),
        checkpointing at every segment end."""
        c = self.config
        stop_at = (
            c.total_updates if updates is None else min(c.total_updates, self.update + updates)
        )
        started = time.perf_counter()
        row: dict = {}
        while self.update < stop_at:
            if self.update % c.checkpoint_every == 0 or self.env is None:
                self._start_segment()
            tick, cpu = time.perf_counter(), time.process_time()
            batch, finished = self._rollout()
            stats = self._learn(batch)
            self.update += 1
            self.env_steps += c.batch_size
            elapsed = time.perf_counter() - tick
            self.wall_time += elapsed
            self.cpu_time += time.process_time() - cpu
            row = self._metrics(stats, finished, elapsed)
            self._log_metrics(row)
            if log:
                log(row)
            segment_end = self.update % c.checkpoint_every == 0 or self.update >= stop_at
            if segment_end:
                self.save()
                self.env = None
                if time_limit is not None and time.perf_counter() - started >= time_limit:
                    break
                if c.time_budget is not None and self.wall_time >= c.time_budget:
                    break
        return row

    def _observe(self) -> np.ndarray:
        """The agent's observations (with memory planes when configured), a copy."""
        env = self.env
        raw = env.observations[np.arange(env.num_envs), self.seats]
        return self.memory.update(raw, env.ticks) if self.memory else raw

    def _rollout(self):
        c, env, net = self.config, self.env, self.net
        t_steps, n, h, w = c.rollout_steps, c.num_envs, c.height, c.width
        channels = net.config.input_channels
        index = np.arange(n)
        anneal = 1.0 - self.progress()
        obs_buf = np.empty((t_steps, n, channels, h, w), dtype=np.float32)
        mask_buf = np.empty((t_steps, n, h * w * 4), dtype=bool)
        actions_buf = np.empty((t_steps, n), dtype=np.int64)
        logp_buf = np.empty((t_steps, n), dtype=np.float32)
        value_buf = np.empty((t_steps, n), dtype=np.float32)
        reward_buf = np.empty((t_steps, n), dtype=np.float32)
        done_buf = np.empty((t_steps, n), dtype=np.float32)
        actions = np.full((n, 2), -1, dtype=np.int32)
        finished = []
        net.eval()
        for t in range(t_steps):
            obs_buf[t] = self._observe()
            mask_buf[t] = env.action_masks[index, self.seats]
            with torch.inference_mode():
                logits, value = net(
                    torch.from_numpy(obs_buf[t]),
                    full_mask(torch.from_numpy(mask_buf[t]), c.half_moves),
                )
                chosen, logp = sample(logits, self.generator)
            actions_buf[t] = chosen.numpy()
            logp_buf[t] = logp.numpy()
            value_buf[t] = value.numpy()
            self.opponent.act(env, self.seats, actions)
            actions[index, self.seats] = from_gym_actions(actions_buf[t], h, w)
            _, rewards, _, truncated, info = env.step(actions)
            reward_buf[t] = rewards[index, self.seats] + c.tick_reward
            done = info["episode_done"]
            done_buf[t] = done
            if c.enemy_land_reward:  # tiles enemy before the step and ours after it
                taken = enemy_tiles_taken(obs_buf[t], env.observations[index, self.seats])
                reward_buf[t] += anneal * c.enemy_land_reward * np.where(done, 0, taken)
            if done.any():
                ended = np.flatnonzero(done)
                cut = ended[truncated[ended]]
                if len(cut) and c.draw_reward is not None:  # a draw: an outcome like any other
                    reward_buf[t, cut] += c.draw_reward
                elif len(cut):  # a tick limit is not an outcome: bootstrap from the value of
                    # the state before it (the final state's would need the memory forked)
                    reward_buf[t, cut] += c.gamma * value_buf[t, cut]
                for i in ended:
                    winner = int(info["episode_winner"][i])
                    result = 0 if winner < 0 else (1 if winner == self.seats[i] else -1)
                    finished.append(
                        (
                            result,
                            float(info["episode_return"][i, self.seats[i]]),
                            int(info["episode_length"][i]),
                        )
                    )
        with torch.inference_mode():
            _, last_value = net(torch.from_numpy(self._observe()))
        advantages, returns = compute_gae(
            reward_buf, value_buf, done_buf, last_value.numpy(), c.gamma, c.gae_lambda
        )
        batch = {
            "obs": torch.from_numpy(obs_buf.reshape(-1, channels, h, w)),
            "mask": torch.from_numpy(mask_buf.reshape(-1, h * w * 4)),
            "actions": torch.from_numpy(actions_buf.reshape(-1)),
            "logp": torch.from_numpy(logp_buf.reshape(-1)),
            "advantages": torch.from_numpy(advantages.reshape(-1)),
            "returns": torch.from_numpy(returns.reshape(-1)),
        }
        return batch, finished

    def _learn(self, batch: dict) -> dict:
        c, net = self.config, self.net
        lr = decayed_lr(c.lr, c.lr_final_fraction, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        net.train()
        size = c.batch_size
        minibatch = size // c.minibatches
        totals = {
            "policy_loss": 0.0,
            "value_loss": 0.0,
            "entropy": 0.0,
            "approx_kl": 0.0,
            "clip_fraction": 0.0,
        }
        count = 0
        for _ in range(c.epochs):
            order = torch.randperm(size, generator=self.generator)
            for start in range(0, size, minibatch):
                mb = order[start : start + minibatch]
                logits, value = net(batch["obs"][mb], full_mask(batch["mask"][mb], c.half_moves))
                logp = log_probs(logits).gather(1, batch["actions"][mb, None]).squeeze(1)
                adv = batch["advantages"][mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                log_ratio = logp - batch["logp"][mb]
                ratio = log_ratio.exp()
                policy_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)
                ).mean()
                value_loss = 0.5 * (value - batch["returns"][mb]).pow(2).mean()
                ent = entropy(logits).mean()
                loss = policy_loss + c.value_coef * value_loss - c.entropy_coef * ent
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), c.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    totals["policy_loss"] += policy_loss.item()
                    totals["value_loss"] += value_loss.item()
                    totals["entropy"] += ent.item()
                    totals["approx_kl"] += ((ratio - 1) - log_ratio).mean().item()
                    totals["clip_fraction"] += ((ratio - 1).abs() > c.clip).float().mean().item()
                count += 1
        return {k: v / count for k, v in totals.items()} | {"lr": lr}

    def _metrics(self, stats: dict, finished: list, elapsed: float) -> dict:
        self.episodes += len(finished)
        self.outcomes.extend(finished)
        window = list(self.outcomes)
        k = len(window)
        rate = (
            (lambda r: sum(1 for o in window if o[0] == r) / k) if k else (lambda r: float("nan"))
        )
        return {
            "update": self.update,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "wall_time": round(self.wall_time, 3),
            "cpu_time": round(self.cpu_time, 3),
            "steps_per_second": round(self.config.batch_size / elapsed, 1),
            "lr": stats["lr"],
            "win_rate": rate(1),
            "draw_rate": rate(0),
            "loss_rate": rate(-1),
            "episode_return": sum(o[1] for o in window) / k if k else float("nan"),
            "episode_length": sum(o[2] for o in window) / k if k else float("nan"),
            "window_episodes": k,
            "min_side": self.min_side,
            **{
                key: stats[key]
                for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
            },
            "opponent": self.opponent.name,
        }
