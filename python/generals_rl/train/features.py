"""Observations with memory: what a player saw under fog, kept across ticks, in bulk.

A feed-forward network sees only the current fogged board, so it forgets the enemy
tiles and general it glimpsed a tick ago. :class:`FogMemory` keeps, for every game of a
batch, the tiles ever seen, the enemy land and army as last seen, the mountains seen and
where the enemy general was seen, and adds a compass (the offset from each tile to the
enemy general, or to the centre of the enemy land remembered when the general was not
seen yet, or to the centre of the tiles never seen while no enemy was) and the clock
(the phase of the 50-tick land bonus, the tick). Everything works on the whole batch at
once (numpy, and torch for the compass, shared with :func:`observed_compass`); a game's
memory is cleared when its tick is 0 (a new game, after a reset or an
automatic one).
"""

from __future__ import annotations

import numpy as np

from ..vec_env import OBSERVATION_CHANNELS

_CHANNEL = {name: i for i, name in enumerate(OBSERVATION_CHANNELS)}
MEMORY_CHANNELS = (
    "seen",
    "enemy_land_seen",
    "enemy_army_seen",
    "mountains_seen",
    "enemy_general_seen",
    "enemy_dy",
    "enemy_dx",
    "land_bonus_phase",
    "time",
)
LAND_BONUS_TICKS = 50  # every tile's army grows by one every 50 ticks
TIME_SCALE = 500.0  # ticks mapped to 1.0 in the ``time`` plane


# The planes a memory keeps from tick to tick (MEMORY_CHANNELS' first; the compass and
# the clock are derived from them and the tick).
KEPT_CHANNELS = MEMORY_CHANNELS[:5]


def remember(kept: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """The kept planes ``(N, 5, H, W)`` after this tick's observations ``(N, C, H, W)``:
    every plane float32 and, but the enemy army, 0 or 1."""
    obs = observations
    seen, enemy_land, enemy_army, mountains, enemy_general = (kept[:, i] for i in range(5))
    visible = obs[:, _CHANNEL["visible"]] > 0
    seen_land = obs[:, _CHANNEL["enemy_land"]]
    # A general never moves, so one seen stays known until its tile is seen again not
    # the enemy's (an enemy city looks the same in the observation and is kept too: both
    # are worth attacking; one taken stops drawing the compass).
    general = ((obs[:, _CHANNEL["cities_and_generals"]] > 0) & (seen_land > 0)).astype(np.float32)
    planes = (
        np.maximum(seen, visible),
        np.where(visible, seen_land, enemy_land),
        np.where(visible, obs[:, _CHANNEL["enemy_army"]], enemy_army),
        np.maximum(mountains, obs[:, _CHANNEL["mountains"]]),
        np.where(visible, general, enemy_general),
    )
    return np.stack(planes, axis=1).astype(np.float32, copy=False)


def memory_planes(kept: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """float32 ``(N, len(MEMORY_CHANNELS), H, W)``: the kept planes ``(N, 5, H, W)``, then
    the compass toward the enemy and the clock of the games' ``ticks`` ``(N,)``."""
    import torch

    n, _, h, w = kept.shape
    seen, enemy_land, enemy_general = (
        kept[:, KEPT_CHANNELS.index(name)]
        for name in ("seen", "enemy_land_seen", "enemy_general_seen")
    )
    targets = (enemy_general > 0, enemy_land > 0, seen == 0)
    compass = compass_toward(*(torch.from_numpy(t) for t in targets)).numpy()
    ticks = np.asarray(ticks)
    clock = np.stack(
        [(ticks % LAND_BONUS_TICKS) / LAND_BONUS_TICKS, ticks / TIME_SCALE], axis=1
    ).astype(np.float32)
    clock = np.broadcast_to(clock[:, :, None, None], (n, 2, h, w))
    return np.concatenate([kept, compass, clock], axis=1)


class FogMemory:
    """The memory of one player in each of ``num_envs`` games of ``height x width``."""

    def __init__(self, num_envs: int, height: int, width: int) -> None:
        self.kept = np.zeros((num_envs, len(KEPT_CHANNELS), height, width), dtype=np.float32)

    def holds(self, num_envs: int, height: int, width: int) -> bool:
        """Whether this is a memory of ``num_envs`` games of ``height x width``."""
        return self.kept.shape[0] == num_envs and self.kept.shape[2:] == (height, width)

    def reset(self, games: np.ndarray) -> None:
        """Forgets everything of the games selected by the bool mask ``games``."""
        self.kept[games] = 0

    def update(self, observations: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        """Takes this tick's observations ``(N, 9, H, W)`` and ticks ``(N,)``; returns
        float32 ``(N, 9 + len(MEMORY_CHANNELS), H, W)``: the observations then the
        memory planes."""
        obs = np.asarray(observations, dtype=np.float32)
        ticks = np.asarray(ticks)
        games, _, height, width = self.kept.shape
        if obs.ndim != 4 or obs.shape[0] != games or obs.shape[2:] != (height, width):
            raise ValueError(
                f"observations: expected ({games}, C, {height}, {width}), got {obs.shape}"
            )
        if ticks.shape != (games,):
            raise ValueError(f"ticks: expected shape ({games},), got {ticks.shape}")
        new_games = ticks == 0
        if new_games.any():
            self.reset(new_games)
        self.kept = remember(self.kept, obs)
        return np.concatenate([obs, memory_planes(self.kept, ticks)], axis=1)


def enemy_tiles_taken(before, after):
    """Per row, the tiles that are the enemy's in observations ``before`` ``(N, C, H, W)``
    and the player's own in ``after`` (numpy arrays or torch tensors)."""
    return ((before[:, _CHANNEL["enemy_land"]] > 0) & (after[:, _CHANNEL["own_land"]] > 0)).sum(
        axis=(1, 2)
    )


# Where the remembered enemy general lies in an input carrying FogMemory's planes.
GENERAL_SEEN_PLANE = len(OBSERVATION_CHANNELS) + MEMORY_CHANNELS.index("enemy_general_seen")


def _general_in_sight(obs):
    """Bool ``(B, H, W)``: the enemy general's tile where it is in sight in ``obs``."""
    enemy = obs[:, _CHANNEL["enemy_land"]] > 0
    return enemy & (obs[:, _CHANNEL["cities_and_generals"]] > 0)


APPROACH_SOURCES = ("land", "army")


def general_distance(obs, source: str = "land"):
    """Torch float32 ``(B,)``: per row of ``obs`` (torch ``(B, C, H, W)``), the Manhattan
    distance to the enemy general over the board's span ``H + W - 2``, from the player's
    ``source``: "land", its tile nearest the general; "army", its tile holding the
    largest army (what must march there to take it). 1 where there is no general to go
    to. The general is the one in FogMemory's planes when ``obs`` carries them after the
    observation's (where it was last seen), else the one in sight."""
    import torch

    if source not in APPROACH_SOURCES:
        raise ValueError(f"source: expected one of {APPROACH_SOURCES}, got {source!r}")
    batch, channels, height, width = obs.shape
    own = obs[:, _CHANNEL["own_land"]] > 0
    if channels >= len(OBSERVATION_CHANNELS) + len(MEMORY_CHANNELS):
        general = obs[:, GENERAL_SEEN_PLANE] > 0
    else:
        general = _general_in_sight(obs)
    where = general.flatten(1).to(torch.uint8).argmax(dim=1)
    gy, gx = (where // width)[:, None, None], (where % width)[:, None, None]
    ys = torch.arange(height, device=obs.device)[None, :, None]
    xs = torch.arange(width, device=obs.device)[None, None, :]
    span = height + width - 2
    distance = ((ys - gy).abs() + (xs - gx).abs()).expand(batch, height, width).flatten(1)
    if source == "land":
        nearest = distance.masked_fill(~own.flatten(1), span).amin(dim=1)
    else:
        army = obs[:, _CHANNEL["own_army"]].masked_fill(~own, -1.0).flatten(1)
        nearest = distance.gather(1, army.argmax(dim=1)[:, None]).squeeze(1)
    known = general.flatten(1).any(dim=1) & own.flatten(1).any(dim=1)
    return torch.where(known, nearest.to(torch.float32) / span, 1.0)


COMPASS_CHANNELS = ("target_dy", "target_dx")


def compass_toward(*targets):
    """Torch ``(B, 2, H, W)``: the offset (rows, columns; scaled by the longer side) from
    every tile to the centre of the first of the bool ``(B, H, W)`` ``targets`` that has a
    tile in that game; zero where none has."""
    import torch

    target = targets[-1]
    for earlier in reversed(targets[:-1]):
        target = torch.where(earlier.flatten(1).any(dim=1)[:, None, None], earlier, target)
    target = target.to(torch.float32)
    _, height, width = target.shape
    weight = target.sum(dim=(1, 2))
    ys = torch.arange(height, dtype=target.dtype, device=target.device)[None, :, None]
    xs = torch.arange(width, dtype=target.dtype, device=target.device)[None, None, :]
    safe = weight.clamp(min=1.0)[:, None, None]
    scale = float(max(height, width))
    known = (weight > 0)[:, None, None]
    dy = ((target * ys).sum(dim=(1, 2), keepdim=True) / safe - ys) / scale
    dx = ((target * xs).sum(dim=(1, 2), keepdim=True) / safe - xs) / scale
    planes = [torch.where(known, d, 0.0).expand(-1, height, width) for d in (dy, dx)]
    return torch.stack(planes, dim=1)


CLOCK_CHANNELS = ("land_bonus_phase", "tick_parity")


def clock_planes(ticks, height: int, width: int):
    """Torch float32 ``(B, 2, H, W)`` from the games' ticks ``(B,)``: the phase of the
    50-tick land bonus (as FogMemory's plane) and the tick's parity, for a network
    without memory whose samples carry their tick (the DQN learner's): on which tick
    the land grows, and the alternation some players follow (HeuristicBot expands on
    even ticks and marches its largest army on odd ones)."""
    import torch

    ticks = torch.as_tensor(ticks).to(torch.int64)
    phase = (ticks % LAND_BONUS_TICKS).to(torch.float32) / LAND_BONUS_TICKS
    parity = (ticks % 2).to(torch.float32)
    planes = torch.stack([phase, parity], dim=1)[:, :, None, None]
    return planes.expand(-1, -1, height, width)


def observed_compass(obs):
    """The compass of one observation, for a network without memory: torch ``(B, 2, H,
    W)``, the offset from every tile to the enemy general in sight, else to the centre
    of the enemy land in sight, else to the centre of the tiles in fog (where the enemy
    must be); zero where there is none (:func:`compass_toward`). ``obs`` is a torch
    tensor ``(B, C, H, W)`` whose first planes are the observation's."""
    enemy = obs[:, _CHANNEL["enemy_land"]] > 0
    fog = obs[:, _CHANNEL["fog"]] > 0
    return compass_toward(_general_in_sight(obs), enemy, fog).to(obs.dtype)
