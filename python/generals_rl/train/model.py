"""A small residual CNN with a masked categorical policy over every action and a value head.

The network is fully convolutional (the value head pools), so one set of weights plays
on any board size. Policy logits are laid out in the Gymnasium encoding of
:mod:`generals_rl.envs`: ``H*W*4`` full moves, ``H*W*4`` half moves, then the pass.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from ..vec_env import OBSERVATION_CHANNELS
from .features import (
    CLOCK_CHANNELS,
    COMPASS_CHANNELS,
    MEMORY_CHANNELS,
    clock_planes,
    observed_compass,
)

# Logits of illegal actions: finite (so entropies stay finite), far below any legal one.
MASKED_LOGIT = -1e9
ACTION_HEADS = ("joint", "factorised")
# A move's view: its source tile, or the 3x3 tiles around it (every tile a move enters).
MOVE_VIEWS = (1, 3)
# FogMemory's compass: its rows plane, then its columns plane.
_MEMORY_COMPASS = MEMORY_CHANNELS.index("enemy_dy")
assert MEMORY_CHANNELS[_MEMORY_COMPASS + 1] == "enemy_dx"


@dataclass(frozen=True)
class NetConfig:
    channels: int = 32
    blocks: int = 2
    # Whether the input carries FogMemory's planes after the observation's
    # (then a policy keeps a memory per game and needs the games' ticks).
    memory: bool = False
    # Whether the policy may split armies (half moves); without them every move carries
    # the whole stack, which keeps armies together while a policy is still near random.
    half_moves: bool = True
    # The initial weight of a tile's own army (as observed) in its moves' logits: with it
    # a new policy prefers moving its large stacks, where a uniform one scatters its army.
    stack_preference: float = 0.0
    # Whether the network adds a compass of its own, from the observation alone (the
    # offset to the enemy general or land in sight, else to the tiles in fog): for a
    # network without memory.
    compass: bool = False
    # Whether the network adds clock planes from the games' ticks (the land bonus's
    # phase, the tick's parity), after the compass: for a network without memory
    # (whose input has FogMemory's clock); then every forward pass needs the ticks.
    clock: bool = False
    # The initial weight of the compass (the memory's, else the network's own) in the
    # logit of the move heading that way (needs ``memory`` or ``compass``).
    heading_preference: float = 0.0
    # How the policy lays out a move: "joint" (one logit per tile, direction and split) or
    # "factorised" (a distribution over the source tiles, then one over that tile's moves:
    # the network weighs which stack to move apart from where it goes).
    action_head: str = "joint"
    # The side of the square of tiles around a move's source that its logit reads (the
    # trunk's features and the input planes; MOVE_VIEWS): 1, the source alone; 3, also
    # the tile the move enters (whether the enemy general is there, and how large an
    # army), which a 1x1 head sees only through what the trunk carried over from there.
    move_view: int = 1
    # Whether the convolutional trunk computes in bfloat16 (autocast; its weights, the
    # heads, logits and value stay float32): ~1.6x faster forward and backward passes on
    # CPUs with AVX512-BF16 or AMX, the cost PPO spends most on. Elsewhere bfloat16 is
    # emulated, ~15x slower than float32, so there the trunk stays float32.
    bfloat16_trunk: bool = False
    # The observation encoding the network was trained on (VecEnv's army_scaling, army_scale).
    army_scaling: str = "log"
    army_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels: must be at least 1, got {self.channels}")
        if self.blocks < 0:
            raise ValueError(f"blocks: must be at least 0, got {self.blocks}")
        if self.move_view not in MOVE_VIEWS:
            raise ValueError(f"move_view: expected one of {MOVE_VIEWS}, got {self.move_view!r}")
        if self.heading_preference and not (self.memory or self.compass):
            raise ValueError("heading_preference: needs memory or compass (a compass to head by)")
        if self.action_head not in ACTION_HEADS:
            raise ValueError(
                f"action_head: expected one of {', '.join(ACTION_HEADS)}, got {self.action_head!r}"
            )
        if self.army_scaling not in ("linear", "log"):
            raise ValueError(f"army_scaling: expected 'linear' or 'log', got {self.army_scaling!r}")

    @property
    def input_channels(self) -> int:
        """The planes a caller passes: the observation's, then the memory's."""
        return len(OBSERVATION_CHANNELS) + (len(MEMORY_CHANNELS) if self.memory else 0)

    @property
    def in_channels(self) -> int:
        """The planes the network reads: the caller's, then its own compass and clock."""
        own = (len(COMPASS_CHANNELS) if self.compass else 0) + (
            len(CLOCK_CHANNELS) if self.clock else 0
        )
        return self.input_channels + own

    @property
    def compass_channels(self) -> tuple[int, int] | None:
        """The input planes of the compass the heading preference reads (rows, columns)."""
        if self.memory:
            first = len(OBSERVATION_CHANNELS) + _MEMORY_COMPASS
        elif self.compass:
            first = self.input_channels
        else:
            return None
        return first, first + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, trainer_config) -> NetConfig:
        """The network of a trainer's configuration: its fields named as NetConfig's."""
        names = [f.name for f in fields(cls) if hasattr(trainer_config, f.name)]
        return cls(**{name: getattr(trainer_config, name) for name in names})


class _Block(nn.Module):
    """conv-relu-conv plus a per-channel bias from the board's global mean, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.glob = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv1(x))
        y = y + self.glob(y.mean(dim=(2, 3)))[:, :, None, None]
        return F.relu(x + self.conv2(y))


class PolicyValueNet(nn.Module):
    """``forward(obs, full_mask)`` returns ``(masked logits (B, H*W*8+1), value (B,))``."""

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        c = self.config.channels
        self.stem = nn.Conv2d(self.config.in_channels, c, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(c) for _ in range(self.config.blocks)])
        view = self.config.move_view
        # channel = half * 4 + direction
        self.move_head = nn.Conv2d(c, 8, view, padding=view // 2)
        # A linear path from the input planes to the move logits (the army on the tile, the
        # compass of the memory planes), learned fast.
        self.input_head = nn.Conv2d(self.config.in_channels, 8, view, padding=view // 2)
        self.factorised = self.config.action_head == "factorised"
        self._bfloat16 = self.config.bfloat16_trunk and native_bfloat16()
        if self.factorised:  # the source tile's logit: its features, and a linear path again
            self.source_head = nn.Conv2d(c, 1, 1)
            self.source_input_head = nn.Conv2d(self.config.in_channels, 1, 1)
        self.pass_head = nn.Linear(2 * c, 1)
        self.value_hidden = nn.Linear(2 * c, 64)
        self.value_out = nn.Linear(64, 1)
        # A near-uniform policy over the legal actions at the start.
        nn.init.normal_(self.move_head.weight, std=0.01)
        nn.init.zeros_(self.move_head.bias)
        nn.init.zeros_(self.input_head.weight)
        nn.init.zeros_(self.input_head.bias)
        with torch.no_grad():
            own_army = OBSERVATION_CHANNELS.index("own_army")
            # The preferences weigh the source tile's own planes: the view's centre.
            centre = view // 2
            source_input = self.input_head.weight[:, :, centre, centre]
            if self.factorised:  # the preference picks the tile; its moves share it
                nn.init.normal_(self.source_head.weight, std=0.01)
                nn.init.zeros_(self.source_head.bias)
                nn.init.zeros_(self.source_input_head.weight)
                nn.init.zeros_(self.source_input_head.bias)
                self.source_input_head.weight[:, own_army] = self.config.stack_preference
            else:
                source_input[:, own_army] = self.config.stack_preference
            if self.config.compass_channels is not None:
                dy, dx = self.config.compass_channels
                heading = self.config.heading_preference
                for half in (0, 4):  # directions: 0 up, 1 down, 2 left, 3 right
                    source_input[half + 0, dy] = -heading
                    source_input[half + 1, dy] = heading
                    source_input[half + 2, dx] = -heading
                    source_input[half + 3, dx] = heading
        nn.init.normal_(self.pass_head.weight, std=0.01)
        nn.init.zeros_(self.pass_head.bias)
        nn.init.normal_(self.value_out.weight, std=0.01)
        nn.init.zeros_(self.value_out.bias)
        # The convolutions' weights, and so their outputs, in channels-last (NHWC)
        # layout: oneDNN's faster one on CPU (a forward and backward pass of the PPO
        # benchmark's network 1.45x faster on an AVX2-only CPU).
        self.to(memory_format=torch.channels_last)

    def forward(
        self,
        obs: torch.Tensor,
        full_mask: torch.Tensor | None = None,
        compass: torch.Tensor | None = None,
        ticks: torch.Tensor | None = None,
    ):
        """``compass``: ``observed_compass(obs)`` when the caller made it already;
        ``ticks`` ``(B,)``: the games' ticks, which a network with a clock needs."""
        if self.config.compass:
            obs = torch.cat([obs, observed_compass(obs) if compass is None else compass], dim=1)
        if self.config.clock:
            if ticks is None:
                raise ValueError("ticks: a network with a clock needs the games' ticks")
            if ticks.shape != (obs.shape[0],):
                raise ValueError(
                    f"ticks: expected shape ({obs.shape[0]},), got {tuple(ticks.shape)}"
                )
            clock = clock_planes(ticks, obs.shape[2], obs.shape[3]).to(obs.dtype)
            obs = torch.cat([obs, clock], dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bfloat16):
            x = self.blocks(F.relu(self.stem(obs)))
        x = x.float()
        b, _, h, w = x.shape
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        moves = self.move_head(x) + self.input_head(obs)  # (B, half * 4 + direction, H, W)
        pass_logit = self.pass_head(pooled)
        if self.factorised:
            moves, pass_logit = self._factorised_log_probs(x, obs, moves, pass_logit, full_mask)
        # (B, 8, H, W) -> (B, 2, 4, H, W) -> (B, 2, H, W, 4): index half*HW4 + (y*W + x)*4 + d
        moves = moves.view(b, 2, 4, h, w).permute(0, 1, 3, 4, 2).reshape(b, 8 * h * w)
        logits = torch.cat([moves, pass_logit], dim=1)
        if full_mask is not None:
            logits = logits.masked_fill(~full_mask, MASKED_LOGIT)
        value = self.value_out(F.relu(self.value_hidden(pooled))).squeeze(1)
        return logits, value

    def _factorised_log_probs(self, x, obs, moves, pass_logit, full_mask):
        """The log-probabilities of choosing a source tile and then one of that tile's
        legal moves, log p(tile) + log p(move | tile), laid out as ``moves`` (B, 8, H, W),
        and of the pass (the other choice of source). Normalised already, so sampling,
        log-probabilities and the entropy of the joint work on them as on any logits."""
        b, _, h, w = moves.shape
        source = (self.source_head(x) + self.source_input_head(obs)).view(b, h * w)
        if full_mask is not None:  # (B, half, tile, direction) -> (B, half * 4 + direction, H, W)
            legal = full_mask[:, :-1].view(b, 2, h, w, 4).permute(0, 1, 4, 2, 3)
            legal = legal.reshape(moves.shape)
            moves = moves.masked_fill(~legal, MASKED_LOGIT)
            source = source.masked_fill(~legal.any(dim=1).view(b, h * w), MASKED_LOGIT)
        source_logp = torch.log_softmax(torch.cat([source, pass_logit], dim=1), dim=1)
        tiles_logp = source_logp[:, :-1].view(b, 1, h, w)
        return torch.log_softmax(moves, dim=1) + tiles_logp, source_logp[:, -1:]


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX512-BF16 or AMX)."""
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not native:
        logging.getLogger(__name__).warning(
            "bfloat16_trunk: this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
            "the trunk computes in float32"
        )
    return native


def full_mask(move_mask: torch.Tensor, half_moves: bool = True) -> torch.Tensor:
    """The mask over every action (full moves, half moves, pass) from the VecEnv's
    ``(B, H*W*4)`` full-move mask: a half move is legal when its full move is (and
    ``half_moves``); the pass always is."""
    ones = torch.ones(move_mask.shape[0], 1, dtype=torch.bool, device=move_mask.device)
    halves = move_mask if half_moves else torch.zeros_like(move_mask)
    return torch.cat([move_mask, halves, ones], dim=1)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = log_probs(logits)
    return -(logp.exp() * logp).sum(dim=1)


def sample(logits: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False):
    """Actions (Gymnasium encoding) and their log-probabilities; masked actions have
    probability exactly 0, so they are never drawn."""
    logp = log_probs(logits)
    if greedy:
        actions = logits.argmax(dim=1)
    else:
        actions = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
    return actions, logp.gather(1, actions[:, None]).squeeze(1)
