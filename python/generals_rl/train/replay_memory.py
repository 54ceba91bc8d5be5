"""FogMemory for replayed experiences: what each sample's player remembered.

An actor playing a network with memory updates a :class:`~.features.FogMemory` from every
observation of its games. A learner sampling experiences out of order rebuilds the same
memory: :class:`ReplayMemory` follows the experiences as they are consumed, in each game's
order, and keeps the memory after each one's state, by ``(game, player, tick)``; a sample
then gets its state's memory, and its n-step next state's from the memory of the tick
before updated with that state. Each memory is kept in 5 bytes a tile (the four 0-or-1
planes as bits, the enemy army as float32), as many as the buffer holds and some more.
"""

from __future__ import annotations

import threading

import numpy as np

from ..experience import ExperienceBuffer
from .features import KEPT_CHANNELS, memory_planes, remember

_ARMY = KEPT_CHANNELS.index("enemy_army_seen")
_BITS = tuple(i for i in range(len(KEPT_CHANNELS)) if i != _ARMY)
# Kept beyond the buffer's capacity, so that every resident experience's memory is
# still here while batches are being appended to both.
SLACK = 65_536


class ReplayMemory:
    """The memories of the experiences appended to ``buffer`` (through :meth:`append`)."""

    def __init__(self, buffer: ExperienceBuffer, capacity: int) -> None:
        self.buffer = buffer
        self.capacity = capacity + SLACK
        height, width = buffer.height, buffer.width
        self._bits = np.zeros((self.capacity, height, width), dtype=np.uint8)
        self._army = np.zeros((self.capacity, height, width), dtype=np.float32)
        self._keys: list[tuple[int, int, int] | None] = [None] * self.capacity
        self._slots: dict[tuple[int, int, int], int] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.partial = 0  # experiences whose game was followed from a later tick than 0
        self.misses = 0  # samples whose memory was not held (then: their state alone)

    def append(self, batch) -> None:
        """Appends the raw ``batch`` to the buffer after keeping its memories."""
        if len(batch):
            self._follow(batch)
        self.buffer.append_raw(batch)

    def _follow(self, batch) -> None:
        states = self.buffer.decode(batch).state
        keys = list(
            zip(batch.game_id.tolist(), batch.player_id.tolist(), batch.tick.tolist(), strict=True)
        )
        # A game's ticks arrive in order, but a batch holds several: rows are taken in
        # waves, each row after the one before it in its game.
        wave = np.empty(len(keys), dtype=np.int64)
        seen: dict[tuple[int, int], int] = {}
        for row, (game, player, _) in enumerate(keys):
            wave[row] = seen.get((game, player), 0)
            seen[(game, player)] = wave[row] + 1
        with self._lock:
            for k in range(int(wave.max()) + 1):
                rows = np.flatnonzero(wave == k)
                before = [(g, p, t - 1) for g, p, t in (keys[r] for r in rows)]
                kept, held = self._gather(before)
                starts = np.array([keys[r][2] for r in rows]) == 0
                self.partial += int((~held & ~starts).sum())
                self._store([keys[r] for r in rows], remember(kept, states[rows]))

    def _gather(self, keys: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """The kept planes ``(N, 5, H, W)`` of ``keys`` (zero where not held) and which
        were held."""
        slots = np.array([self._slots.get(key, -1) for key in keys], dtype=np.int64)
        held = slots >= 0
        bits, army = self._bits[slots], self._army[slots]
        kept = np.zeros((len(keys), len(KEPT_CHANNELS), *bits.shape[1:]), dtype=np.float32)
        for bit, channel in enumerate(_BITS):
            kept[:, channel] = (bits >> bit) & 1
        kept[:, _ARMY] = army
        kept[~held] = 0
        return kept, held

    def _store(self, keys: list[tuple[int, int, int]], kept: np.ndarray) -> None:
        slots = (self._next + np.arange(len(keys))) % self.capacity
        self._next = int(slots[-1] + 1) % self.capacity
        bits = np.zeros((len(keys), *kept.shape[2:]), dtype=np.uint8)
        for bit, channel in enumerate(_BITS):
            bits |= (kept[:, channel] > 0.5).astype(np.uint8) << bit
        self._bits[slots], self._army[slots] = bits, kept[:, _ARMY]
        for slot, key in zip(slots.tolist(), keys, strict=True):
            old = self._keys[slot]
            if old is not None and self._slots.get(old) == slot:
                del self._slots[old]
            self._keys[slot] = key
            self._slots[key] = slot

    def planes(self, sample, nstep_next_state: np.ndarray | None = None) -> np.ndarray:
        """The memory planes ``(B, len(MEMORY_CHANNELS), H, W)`` of a sample's states, or
        with ``nstep_next_state`` of its n-step next states (``nstep_length`` ticks later:
        the memory of the tick before, updated with that state)."""
        games, players = sample.game_id.tolist(), sample.player_id.tolist()
        ticks = np.asarray(sample.tick, dtype=np.int64)
        if nstep_next_state is not None:
            ticks = ticks + np.asarray(sample.nstep_length, dtype=np.int64)
            keys = list(zip(games, players, (ticks - 1).tolist(), strict=True))
        else:
            keys = list(zip(games, players, ticks.tolist(), strict=True))
        with self._lock:
            kept, held = self._gather(keys)
        self.misses += int((~held).sum())
        if nstep_next_state is not None:
            kept = remember(kept, nstep_next_state)
        elif not held.all():
            kept[~held] = remember(kept[~held], np.asarray(sample.state)[~held])
        return memory_planes(kept, ticks)
