"""The distributed learner: experiences from one or more farms over gRPC into a local
prioritized ExperienceBuffer, double DQN with n-step targets, weights published for the
actors (``generals-rl selfplay --policies checkpoint:DIR``). Optionally with
demonstrations (DQfD): a demonstrator farm's experiences in a buffer of their own, a share
of every minibatch, and a large-margin loss that ranks the demonstrated action first.

The Q-network is a :class:`PolicyValueNet` read as a dueling head: ``Q(s, a) = V(s) +
A(s, a) - mean_a A(s, a)`` with the policy logits as advantages, so the published
checkpoints play through the same :class:`CheckpointBot` as PPO's (the most probable
action is the greedy one).
"""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..actions import to_gym_actions
from ..defaults import MAX_TICKS
from ..experience import ExperienceBuffer
from .checkpoint import save_checkpoint
from .features import APPROACH_SOURCES, enemy_tiles_taken, general_distance, observed_compass
from .model import MASKED_LOGIT, NetConfig, PolicyValueNet, full_mask
from .replay_memory import ReplayMemory
from .schedule import check_time_budget, decayed_lr, run_progress

_log = logging.getLogger(__name__)

DQN_METRICS = (
    "step",
    "consumed",
    "resident",
    "replay_ratio",
    "demonstrations",
    "loss",
    "margin_loss",
    "mean_q",
    "mean_target",
    "demo_mean_q",
    "demo_mean_target",
    "mean_weight",
    "lr",
    "memory_partial",
    "memory_misses",
    "published_version",
    "consumer_lag",
    "wall_time",
    "samples_per_second",
)

IMPORTANCE_WEIGHTS = ("buffer", "batch")


@dataclass(frozen=True)
class DQNConfig:
    height: int = 10
    width: int = 10
    capacity: int = 200_000
    batch_size: int = 256
    lr: float = 5e-4
    # The learning rate decays linearly to this fraction of ``lr`` over the run: ``steps``,
    # or ``time_budget`` if that ends first (1: constant).
    lr_final_fraction: float = 1.0
    # Seconds of training (from the first gradient step) the run is given: the learning
    # rate's decay spans it if it ends before ``steps`` do, and training stops there.
    time_budget: float | None = None
    gamma: float = 0.99
    n_step: int = 3
    alpha: float = 0.6
    beta: float = 0.4
    beta_final: float = 1.0
    steps: int = 10_000  # gradient steps
    learning_starts: int = 2_000  # resident experiences before the first step
    target_every: int = 500
    publish_every: int = 100
    max_grad_norm: float = 10.0
    channels: int = 16
    blocks: int = 2
    army_scaling: str = "log"
    army_scale: float = 1000.0
    seed: int = 0
    torch_threads: int = 1
    player_ids: tuple[int, ...] | None = None  # learn from these players' experiences only
    # Whether the network may split armies; without half moves every move carries the
    # whole stack (half the actions to value, and armies kept together while exploring).
    half_moves: bool = True
    # The initial weight of a tile's army in its moves' advantages (NetConfig's): a new
    # network moves its largest stack, where a uniform one scatters its army.
    stack_preference: float = 0.0
    # The network's own compass from each observation (NetConfig's; for a network without
    # memory), and the initial weight of moves heading by it (the memory's compass with
    # memory).
    compass: bool = False
    heading_preference: float = 0.0
    # NetConfig's: "joint" (one advantage per move) or "factorised" (the source tile's,
    # plus its move's: a tile's moves share what is worth moving from there).
    action_head: str = "joint"
    # NetConfig's: the tiles around a move's source its value reads (3: also the tile
    # it enters).
    move_view: int = 1
    # Clock planes from each sample's tick (NetConfig's): the land bonus's phase and
    # the tick's parity, which the states alone do not show.
    clock: bool = False
    # FogMemory's planes after each sample's observation (NetConfig's), rebuilt by the
    # learner from the games' experiences in order (ReplayMemory); actors keep theirs.
    memory: bool = False
    bfloat16_trunk: bool = False
    # Samples trained per experience consumed, held by pausing the consumer while the
    # learner is behind (farms in block mode then wait for it); 0 consumes as fast as
    # the farms produce.
    replay_ratio: float = 0.0
    # Shaping added by the learner to the farms' rewards (the farms' RewardConfig is the
    # rest): per tick of the n steps (negative: hurry), and per enemy tile taken between
    # an experience's state and its n-step next state.
    tick_reward: float = 0.0
    enemy_land_reward: float = 0.0
    # Potential-based shaping toward the enemy general: the potential of a state is
    # ``-approach_reward`` times its :func:`general_distance` from ``approach_from`` (the
    # land's nearest tile or the largest army; to the general as remembered, 1 until
    # seen), so seeing the general and closing in on it pay, and any path's shaping
    # telescopes to the difference of its ends' potentials.
    approach_reward: float = 0.0
    approach_from: str = "land"
    # A game the farms cut at their tick limit ``max_ticks`` (a draw) ends with
    # ``draw_reward`` (its discounted share in the n-step return, no bootstrap); None
    # bootstraps from the cut state as from any other.
    draw_reward: float | None = None
    max_ticks: int = MAX_TICKS
    # Demonstrations, used when the learner is given demonstrator farms: their
    # experiences are read until ``demo_capacity`` are held (a fixed set, as DQfD's), make
    # up ``demo_fraction`` of each minibatch, and add ``margin_weight`` times the
    # large-margin loss ``max_a [Q(s, a) + margin * (a != a_demo)] - Q(s, a_demo)``.
    demo_capacity: int = 50_000
    demo_fraction: float = 0.25
    margin: float = 0.8
    margin_weight: float = 1.0
    # What the importance weights of prioritized samples are divided by: "buffer", the
    # weight of the buffer's rarest sample (Schaul et al.; with priorities spread over
    # decades a minibatch's weights average 0.04-0.08), or "batch", the minibatch's
    # largest weight (0.18-0.51: the TD loss then outweighs the margin loss).
    importance_weights: str = "buffer"
    # The published weights (what actors play and evaluation measures): an exponential
    # moving average of the online network's, moved this fraction of the way every
    # gradient step (Polyak averaging: successive versions differ less than the online
    # network's snapshots do); 0 publishes the online weights.
    publish_average: float = 0.0
    # The n-step targets' bootstrap: None, double DQN's (the target network's value of
    # the online network's best legal action); a temperature T, Expected SARSA's (the
    # target network's values averaged under the online network's softmax(Q / T) over
    # the legal actions: the policy Boltzmann actors play, with no max to overestimate).
    target_temperature: float | None = None

    def __post_init__(self) -> None:
        names = ("capacity", "batch_size", "n_step", "steps", "target_every", "publish_every")
        for name in (*names, "max_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma: must be in (0, 1], got {self.gamma}")
        if not self.replay_ratio >= 0:
            raise ValueError(f"replay_ratio: must be at least 0, got {self.replay_ratio}")
        if self.demo_capacity < 1:
            raise ValueError(f"demo_capacity: must be at least 1, got {self.demo_capacity}")
        if not 0 < self.demo_fraction < 1:
            raise ValueError(f"demo_fraction: must be in (0, 1), got {self.demo_fraction}")
        for name in ("margin", "margin_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be at least 0, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr: must be positive and finite, got {self.lr}")
        if not 0 < self.lr_final_fraction <= 1:
            raise ValueError(f"lr_final_fraction: must be in (0, 1], got {self.lr_final_fraction}")
        check_time_budget(self.time_budget)
        if not 0 <= self.publish_average < 1:
            raise ValueError(f"publish_average: must be in [0, 1), got {self.publish_average}")
        if self.importance_weights not in IMPORTANCE_WEIGHTS:
            raise ValueError(
                f"importance_weights: expected one of {IMPORTANCE_WEIGHTS}, "
                f"got {self.importance_weights!r}"
            )
        if self.target_temperature is not None and not 0 < self.target_temperature < math.inf:
            raise ValueError(
                f"target_temperature: must be positive and finite, got {self.target_temperature}"
            )
        if self.approach_from not in APPROACH_SOURCES:
            raise ValueError(
                f"approach_from: expected one of {APPROACH_SOURCES}, got {self.approach_from!r}"
            )
        if not 0 <= self.approach_reward < math.inf:
            raise ValueError(
                f"approach_reward: must be at least 0 and finite, got {self.approach_reward}"
            )
        for name in ("tick_reward", "enemy_land_reward", "draw_reward"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}: must be finite, got {value}")
        self.net_config()  # the network's own options are checked there

    def demo_batch_size(self) -> int:
        """The samples of each minibatch drawn from the demonstrations (at least one, and
        at least one from the learner's own experiences)."""
        return min(self.batch_size - 1, max(1, round(self.demo_fraction * self.batch_size)))

    def net_config(self) -> NetConfig:
        return NetConfig.of(self)


def q_values(
    net: PolicyValueNet,
    obs: torch.Tensor,
    compass: torch.Tensor | None = None,
    ticks: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dueling Q-values over every action (Gymnasium encoding); ``compass`` and
    ``ticks`` as the network's forward takes them. A factorised network's advantages are
    its log-probabilities over the legal actions ``mask`` (what its actors play by),
    centred on their mean; the illegal actions' are ``MASKED_LOGIT``."""
    if net.config.action_head != "factorised":
        advantages, value = net(obs, compass=compass, ticks=ticks)
        return value[:, None] + advantages - advantages.mean(dim=1, keepdim=True)
    if mask is None:
        raise ValueError("mask: a factorised network's Q-values need the legal actions")
    advantages, value = net(obs, mask, compass=compass, ticks=ticks)
    legal = mask.to(advantages.dtype)
    mean = (advantages * legal).sum(dim=1, keepdim=True) / legal.sum(dim=1, keepdim=True)
    return (value[:, None] + advantages - mean).masked_fill(~mask, MASKED_LOGIT)


def masks_from_observations(
    obs: torch.Tensor, army_scaling: str = "log", army_scale: float = 1000.0
) -> torch.Tensor:
    """The legal full moves ``(B, H*W*4)`` of observations ``(B, 9, H, W)``: from an own
    tile holding at least 2 armies onto an orthogonal neighbour on the board that is
    not a mountain (a player always sees its own tiles' neighbours)."""
    own_army, own_land, mountains = obs[:, 0], obs[:, 2] > 0.5, obs[:, 6] > 0.5
    two = np.log1p(2.0) / np.log1p(army_scale) if army_scaling == "log" else 2.0 / army_scale
    movable = own_land & (own_army >= two * (1 - 1e-4))
    b, h, w = movable.shape
    open_tile = F.pad(~mountains, (1, 1, 1, 1), value=False)  # off the board: closed
    targets = torch.stack(
        [
            open_tile[:, 0:h, 1 : w + 1],  # up
            open_tile[:, 2 : h + 2, 1 : w + 1],  # down
            open_tile[:, 1 : h + 1, 0:w],  # left
            open_tile[:, 1 : h + 1, 2 : w + 2],  # right
        ],
        dim=-1,
    )
    return (movable[..., None] & targets).reshape(b, h * w * 4)


def dqn_targets(
    online: PolicyValueNet,
    target: PolicyValueNet,
    next_obs: torch.Tensor,
    next_mask: torch.Tensor,
    nstep_reward: torch.Tensor,
    nstep_length: torch.Tensor,
    nstep_done: torch.Tensor,
    gamma: float,
    next_ticks: torch.Tensor | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """N-step targets, no bootstrap after a terminal experience. Double DQN's: the online
    network picks the best legal next action, the target network values it; with a
    ``temperature`` T, Expected SARSA's: the target network's values of the legal next
    actions, weighted by the online network's ``softmax(Q / T)``.
    ``next_ticks``: the next states' ticks, for networks with a clock."""
    with torch.no_grad():
        # Both networks have the same input planes: the compass is made once.
        compass = observed_compass(next_obs) if online.config.compass else None
        chosen = q_values(online, next_obs, compass, next_ticks, next_mask)
        chosen = chosen.masked_fill(~next_mask, MASKED_LOGIT)
        values = q_values(target, next_obs, compass, next_ticks, next_mask)
        if temperature is None:
            bootstrap = values.gather(1, chosen.argmax(dim=1)[:, None]).squeeze(1)
        else:
            # Shifted by the max first, so that a tiny temperature cannot overflow.
            shifted = chosen - chosen.max(dim=1, keepdim=True).values
            policy = torch.softmax(shifted / temperature, dim=1)
            bootstrap = (policy * values.masked_fill(~next_mask, 0.0)).sum(dim=1)
        discount = gamma ** nstep_length.to(torch.float32)
        return nstep_reward + (~nstep_done).to(torch.float32) * discount * bootstrap


def shaping(c: DQNConfig, obs, next_obs, length, done) -> torch.Tensor | float:
    """The learner's shaping of n-step rewards under config ``c``: ``tick_reward``
    discounted over the n ticks, ``enemy_land_reward`` per enemy tile taken (not at the
    game's end, where taking the general hands over all its land), and the change of the
    approach potential ``gamma^n * phi(next) - phi(state)`` (``phi`` 0 at the end)."""
    shaped: torch.Tensor | float = 0.0
    if c.tick_reward:
        ticks = length.to(torch.float32)
        discounted = (1 - c.gamma**ticks) / (1 - c.gamma) if c.gamma < 1 else ticks
        shaped = c.tick_reward * discounted
    if c.enemy_land_reward:
        taken = enemy_tiles_taken(obs, next_obs).to(torch.float32)
        shaped = shaped + c.enemy_land_reward * taken.masked_fill(done, 0.0)
    if c.approach_reward:
        discount = c.gamma ** length.to(torch.float32)
        before = general_distance(obs, c.approach_from)
        after = general_distance(next_obs, c.approach_from).masked_fill(done, 0.0)
        shaped = shaped + c.approach_reward * (before - discount * after)
    return shaped


def margin_loss(
    q: torch.Tensor, demonstrated: torch.Tensor, legal: torch.Tensor, margin: float
) -> torch.Tensor:
    """DQfD's large-margin loss per sample: ``max_a [Q(s, a) + margin * (a != a_demo)] -
    Q(s, a_demo)`` over the legal actions and the demonstrated one; zero once the
    demonstrated action leads every other by the margin."""
    chosen = F.one_hot(demonstrated, q.shape[1]).to(torch.bool)
    bonus = margin * (~chosen).to(q.dtype)
    best = (q + bonus).masked_fill(~(legal | chosen), MASKED_LOGIT).amax(dim=1)
    return best - q.gather(1, demonstrated[:, None]).squeeze(1)


class DQNLearner:
    """Consumes experiences from ``addresses`` on a background thread into a local
    prioritized buffer and trains on samples from it, publishing weights to
    ``run_dir/weights`` (``latest.pt`` and ``weights_NNNNNN.pt``, atomically, versioned).
    ``addresses`` is anything ``ExperienceConsumer`` takes: ``dns:///`` names and
    address sources (a Ray farm's ``farm_addresses()``) are followed as they change.
    ``demonstrations`` are farms whose experiences are demonstrations (a built-in bot's
    seat, say), read on a thread of their own into ``demo_buffer``."""

    def __init__(
        self,
        config: DQNConfig,
        addresses: Sequence[str] | Callable[[], object],
        run_dir: str | Path,
        consumer_options: dict | None = None,
        demonstrations: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.addresses = addresses if callable(addresses) else list(addresses)
        self.demonstrations = list(demonstrations)
        self.run_dir = Path(run_dir)
        self.publish_dir = self.run_dir / "weights"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)

        def local_buffer(capacity: int) -> ExperienceBuffer:
            return ExperienceBuffer(
                config.height,
                config.width,
                capacity,
                "overwrite",
                army_scaling=config.army_scaling,
                army_scale=config.army_scale,
            )

        self.buffer = local_buffer(config.capacity)
        self.demo_buffer = local_buffer(config.demo_capacity) if self.demonstrations else None
        # With memory, experiences go to a buffer through its ReplayMemory.
        self.memories: dict[int, ReplayMemory] = {}
        if config.memory:
            for buffer, capacity in (
                (self.buffer, config.capacity),
                (self.demo_buffer, config.demo_capacity),
            ):
                if buffer is not None:
                    self.memories[id(buffer)] = ReplayMemory(buffer, capacity)
        self.net = PolicyValueNet(config.net_config())
        self.target = PolicyValueNet(config.net_config())
        self.target.load_state_dict(self.net.state_dict())
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.averaged = (
            AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(1 - config.publish_average))
            if config.publish_average
            else None
        )
        self.step = 0
        self.wall_time = 0.0  # seconds since the first gradient step
        self.version = 0
        self.consumed = 0
        self.demonstrated = 0  # demonstrations read
        self.consumer_lag = 0
        self._consumer_options = consumer_options or {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._demo_thread: threading.Thread | None = None
        self._consumers: list = []  # the ExperienceConsumers while consuming
        self._error: BaseException | None = None

    # ---- the consumer thread --------------------------------------------------------------

    def start(self) -> DQNLearner:
        self._thread = self._start_feed(
            "dqn-consumer", self.addresses, self._take_experiences, self._experiences_ended
        )
        if self.demonstrations:
            self._demo_thread = self._start_feed(
                "dqn-demonstrations",
                self.demonstrations,
                self._take_demonstrations,
                self._demonstrations_ended,
            )
        return self

    def _start_feed(
        self, name: str, addresses, take: Callable, ended: Callable
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._consume, args=(addresses, take, ended), name=name, daemon=True
        )
        thread.start()
        return thread

    def _consume(self, addresses, take: Callable, ended: Callable) -> None:
        """Streams from ``addresses`` into ``take(batch, consumer)`` until it returns False
        or the learner stops; a stream that ends otherwise is told to ``ended(error)``
        (``None``: the farms ended it)."""
        from ..service import ExperienceConsumer

        error: Exception | None = None
        try:
            with ExperienceConsumer(addresses, **self._consumer_options) as consumer:
                self._consumers.append(consumer)
                for batch in consumer.stream_experiences(
                    batch_size=1024, follow=True, decode=False, player_ids=self.config.player_ids
                ):
                    if not take(batch, consumer) or self._stop.is_set():
                        return
        except Exception as exc:
            error = exc
        if not self._stop.is_set():  # not stopped by the learner
            ended(error)

    def _experiences_ended(self, error: Exception | None) -> None:
        if error is not None:
            self._error = error

    def _demonstrations_ended(self, error: Exception | None) -> None:
        """Learning goes on from the demonstrations held (or waits for enough of them)
        unless the stream failed before there were enough."""
        if error is None or self._enough_demonstrations():
            reason = error or "the farms ended their streams"
            _log.warning("demonstrations: reading stopped after %d: %s", self.demonstrated, reason)
        else:
            self._error = error

    def _take_experiences(self, batch, consumer) -> bool:
        if len(batch):
            self._append(self.buffer, batch)
            self.consumed += len(batch)
        self.consumer_lag = consumer.lag
        self._wait_for_learner()
        return True

    def _take_demonstrations(self, batch, consumer) -> bool:
        """Reads demonstrations until ``demo_capacity`` are held; the stream then ends (a
        demonstrator farm in block mode waits from there on)."""
        assert self.demo_buffer is not None
        if len(batch):
            self._append(self.demo_buffer, batch)
            self.demonstrated += len(batch)
        return self.demonstrated < self.config.demo_capacity

    def _append(self, buffer: ExperienceBuffer, batch) -> None:
        memory = self.memories.get(id(buffer))
        if memory is not None:
            memory.append(batch)
        else:
            buffer.append_raw(batch)

    def _wait_for_learner(self) -> None:
        """Holds the consumer (the stream unread) while the samples trained fall short of
        ``replay_ratio`` times the experiences consumed since learning started."""
        c = self.config
        if not c.replay_ratio:
            return
        while not self._stop.is_set() and self.step * c.batch_size < c.replay_ratio * (
            self.consumed - c.learning_starts
        ):
            self._stop.wait(0.005)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops consuming: cancels the streams and waits for the consumer thread, so
        that nothing is left reading into the buffer when the process exits."""
        self._stop.set()
        for consumer in list(self._consumers):
            consumer.close()
        for thread in (self._thread, self._demo_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def _check_consumer(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"consuming experiences failed: {self._error}") from self._error

    # ---- learning -------------------------------------------------------------------------

    def resident(self) -> int:
        return int(self.buffer.stats()["resident"])

    def _ready(self) -> bool:
        """Learning starts at ``learning_starts`` experiences, and as many demonstrations
        (or all of them) when there are demonstrators."""
        c = self.config
        if self.resident() < c.learning_starts:
            return False
        return self._enough_demonstrations()

    def _enough_demonstrations(self) -> bool:
        c = self.config
        if self.demo_buffer is None:
            return True
        held = int(self.demo_buffer.stats()["resident"])
        return held >= min(c.learning_starts, c.demo_capacity)

    def progress(self) -> float:
        """How far the run is through its learning-rate schedule, 0 to 1: its steps out of
        ``steps``, or its training time out of ``time_budget`` if further."""
        c = self.config
        return run_progress(self.step, c.steps, self.wall_time, c.time_budget)

    def train_step(self) -> dict:
        c = self.config
        frac = min(1.0, self.step / max(1, c.steps))
        lr = decayed_lr(c.lr, c.lr_final_fraction, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        options = dict(
            prioritized=True,
            alpha=c.alpha,
            beta=c.beta + (c.beta_final - c.beta) * frac,
            n_step=c.n_step,
            gamma=c.gamma,
            player_ids=c.player_ids,
        )
        seed = c.seed * 1_000_003 + self.step
        demo_size = c.demo_batch_size() if self.demo_buffer is not None else 0
        own = self.buffer.sample(c.batch_size - demo_size, seed=seed, **options)
        sampled = [(self.buffer, own)]
        if demo_size:
            assert self.demo_buffer is not None
            demos = self.demo_buffer.sample(demo_size, seed=seed + 500_009, **options)
            sampled.append((self.demo_buffer, demos))
        parts = [part for _, part in sampled]
        h, w = c.height, c.width

        def column(name: str, dtype=None) -> torch.Tensor:
            """The parts' column as one tensor (copied only to join two parts)."""
            values = [np.asarray(getattr(p, name), dtype=dtype) for p in parts]
            joined = values[0] if len(values) == 1 else np.concatenate(values)
            return torch.from_numpy(np.ascontiguousarray(joined))

        obs, next_obs = column("state"), column("nstep_next_state")
        if self.memories:
            obs, next_obs = self._with_memory(sampled, obs, next_obs)
        actions = torch.from_numpy(to_gym_actions(column("action").numpy(), h, w))
        next_mask = full_mask(
            masks_from_observations(next_obs, c.army_scaling, c.army_scale), c.half_moves
        )
        length = column("nstep_length")
        done = column("nstep_done", bool)
        reward = column("nstep_reward", np.float32)
        reward = reward + shaping(c, obs, next_obs, length, done)
        sample_ticks = column("tick", np.int64) if c.clock or c.draw_reward is not None else None
        if c.draw_reward is not None:
            reward, done = self._end_draws(reward, done, sample_ticks, length)
        # A player's n-step next state is n of its ticks later (one experience a tick).
        ticks = sample_ticks if c.clock else None
        next_ticks = ticks + length.to(torch.int64) if ticks is not None else None
        targets = dqn_targets(
            self.net,
            self.target,
            next_obs,
            next_mask,
            reward,
            length,
            done,
            c.gamma,
            next_ticks,
            c.target_temperature,
        )
        legal = full_mask(masks_from_observations(obs, c.army_scaling, c.army_scale), c.half_moves)
        # The action taken is valued even where the learner's mask would not play it.
        taken = legal | F.one_hot(actions, legal.shape[1]).to(torch.bool)
        q_all = q_values(self.net, obs, ticks=ticks, mask=taken)
        q = q_all.gather(1, actions[:, None]).squeeze(1)
        td = targets - q
        weights = column("weight", np.float32)
        if c.importance_weights == "batch":
            weights = weights / weights.max()
        loss = (weights * F.smooth_l1_loss(q, targets, reduction="none")).mean()
        demo_loss = torch.zeros(())
        # The demonstrations' values apart (nan without): the margin loss acts on those.
        demo_q = demo_target = float("nan")
        if demo_size:
            demo = slice(len(own), None)
            demo_loss = margin_loss(q_all[demo], actions[demo], legal[demo], c.margin).mean()
            loss = loss + c.margin_weight * demo_loss
            demo_q, demo_target = q[demo].mean().item(), targets[demo].mean().item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.net)
        priorities = td.detach().abs().numpy().astype(np.float64) + 1e-6
        start = 0
        for buffer, part in sampled:
            buffer.update_priorities(part.sequence, priorities[start : start + len(part)])
            start += len(part)
        self.step += 1
        if self.step % c.target_every == 0:
            self.target.load_state_dict(self.net.state_dict())
        if self.step % c.publish_every == 0:
            self.publish()
        return {
            "loss": loss.item(),
            "margin_loss": demo_loss.item(),
            "mean_q": q.mean().item(),
            "mean_target": targets.mean().item(),
            "demo_mean_q": demo_q,
            "demo_mean_target": demo_target,
            "mean_weight": float(weights.mean()),
            "lr": lr,
        }

    def _with_memory(self, sampled, obs, next_obs) -> tuple[torch.Tensor, torch.Tensor]:
        """The states and n-step next states with their players' memory planes."""
        states, next_states = [], []
        start = 0
        for buffer, part in sampled:
            rows = slice(start, start + len(part))
            memory = self.memories[id(buffer)]
            states.append(memory.planes(part))
            next_states.append(memory.planes(part, next_obs[rows].numpy()))
            start += len(part)

        def joined(observations: torch.Tensor, planes: list[np.ndarray]) -> torch.Tensor:
            return torch.cat([observations, torch.from_numpy(np.concatenate(planes))], dim=1)

        return joined(obs, states), joined(next_obs, next_states)

    def memory_counts(self) -> dict:
        """Experiences whose game was followed from a tick after 0 (the learner joined it
        late), and samples whose memory was not held (their state alone then)."""
        memories = self.memories.values()
        return {
            "memory_partial": sum(m.partial for m in memories),
            "memory_misses": sum(m.misses for m in memories),
        }

    def _end_draws(self, reward, done, ticks, length) -> tuple[torch.Tensor, torch.Tensor]:
        """The n-step rewards and ends with the draws ended: a chain not terminated whose
        next state is at the farms' tick limit gets ``draw_reward`` at its last step."""
        c = self.config
        drawn = ~done & (ticks + length >= c.max_ticks)
        last = c.gamma ** (length.to(torch.float32) - 1)
        return reward + drawn.to(torch.float32) * c.draw_reward * last, done | drawn

    def publish(self) -> Path:
        """Writes the current weights as the next version (atomically), then ``latest.pt``."""
        self.version += 1
        payload = self._weights_payload()
        path = save_checkpoint(self.publish_dir / f"weights_{self.version:06d}.pt", payload)
        save_checkpoint(self.publish_dir / "latest.pt", payload)
        return path

    def published_net(self) -> PolicyValueNet:
        """The network published: the online one, or its moving average."""
        if self.averaged is None:
            return self.net
        return self.averaged.module

    def _weights_payload(self) -> dict:
        return {
            "kind": "dqn",
            "version": self.version,
            "net_config": self.net.config.to_dict(),
            "model": self.published_net().state_dict(),
            "config": _plain(asdict(self.config)),
            "counters": {
                "step": self.step,
                "consumed": self.consumed,
                "demonstrations": self.demonstrated,
            },
        }

    def train(
        self,
        log: Callable[[dict], None] | None = None,
        log_every: int = 100,
        wait_timeout: float = 600.0,
    ) -> dict:
        """Runs ``config.steps`` gradient steps or for ``config.time_budget`` seconds
        (waiting first for ``learning_starts`` experiences), then stops consuming and
        publishes the final weights (also when interrupted: a learner stopped by Ctrl-C or
        SIGINT leaves its last step's weights)."""
        c = self.config
        if self.version == 0:  # actors play the initial weights until the first version
            save_checkpoint(self.publish_dir / "latest.pt", self._weights_payload())
        if self._thread is None:
            self.start()
        started = time.monotonic()
        while not self._ready():
            self._check_consumer()
            if time.monotonic() - started > wait_timeout:
                raise TimeoutError(
                    f"fewer than {c.learning_starts} experiences (or demonstrations) after "
                    f"{wait_timeout:.0f} s"
                )
            time.sleep(0.05)
        metrics_path = self.run_dir / "metrics.csv"
        with metrics_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=DQN_METRICS)
            writer.writeheader()
            try:
                row = self._train_steps(writer, f, log, log_every)
            finally:
                self.stop()
                if self.step % c.publish_every:
                    self.publish()
        return row

    def _train_steps(self, writer: csv.DictWriter, f, log, log_every: int) -> dict:
        c = self.config
        row: dict = {}
        t0 = time.monotonic() - self.wall_time
        done = False
        while not done:
            self._check_consumer()
            stats = self.train_step()
            self.wall_time = elapsed = time.monotonic() - t0
            done = self.step >= c.steps or (
                c.time_budget is not None and self.wall_time >= c.time_budget
            )
            if self.step % log_every == 0 or done:
                row = {
                    "step": self.step,
                    "consumed": self.consumed,
                    "resident": self.resident(),
                    "demonstrations": self.demonstrated,
                    "replay_ratio": round(self.step * c.batch_size / max(1, self.consumed), 3),
                    **stats,
                    **self.memory_counts(),
                    "published_version": self.version,
                    "consumer_lag": self.consumer_lag,
                    "wall_time": round(elapsed, 3),
                    "samples_per_second": round(self.step * c.batch_size / max(elapsed, 1e-9), 1),
                }
                writer.writerow(row)
                f.flush()
                if log:
                    log(row)
        return row


def _plain(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
