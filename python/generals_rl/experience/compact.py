"""Experiences with compact views (``generals_rl.observations``): per row the acting
player's tile codes and visible armies of its state and next state, and the packed
action mask of its state. A fraction of the decoded form's bytes (1 + 2 bytes a tile
and view instead of 36 or 40), expanded to it bit for bit where the trainer is."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .. import _core
from ..observations import CompactObservations, army_dtype, expand, expand_masks
from .batch import ROW_COLUMNS, ExperienceBatch, RawBatch, SampledBatch, _Records, _SampleColumns

# The compact columns: name -> dtype (armies: uint16, or int32 in the wide form).
COMPACT_COLUMNS = {
    "state_tiles": np.uint8,  # (n, H, W) tile codes
    "state_armies": np.uint16,  # (n, H, W)
    "next_state_tiles": np.uint8,
    "next_state_armies": np.uint16,
    "action_mask": np.uint8,  # (n, packed_mask_bytes) of state
}


_Arrays6 = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def view_sources(raw: RawBatch) -> _Arrays6:
    """What ``_core``'s compact views of experiences are made from: the raw
    batch's state tables, state and next state indices, and players."""
    return (
        raw.state_kind,
        raw.state_owner,
        raw.state_army,
        raw.state_index,
        raw.next_state_index,
        raw.player_id,
    )


@dataclass(kw_only=True)
class CompactBatch(_Records, _SampleColumns):
    """Record columns plus the compact columns (``COMPACT_COLUMNS``); sampled batches
    also carry the sampling columns and ``nstep_next_state_tiles``/``_armies``."""

    state_tiles: np.ndarray
    state_armies: np.ndarray
    next_state_tiles: np.ndarray
    next_state_armies: np.ndarray
    action_mask: np.ndarray
    nstep_next_state_tiles: np.ndarray | None = None
    nstep_next_state_armies: np.ndarray | None = None

    @property
    def height(self) -> int:
        return self.state_tiles.shape[1]

    @property
    def width(self) -> int:
        return self.state_tiles.shape[2]

    @property
    def state(self) -> CompactObservations:
        return CompactObservations(self.state_tiles, self.state_armies)

    @property
    def next_state(self) -> CompactObservations:
        return CompactObservations(self.next_state_tiles, self.next_state_armies)

    @classmethod
    def from_raw(
        cls,
        raw: RawBatch,
        *,
        army_scale: float = 1000.0,
        obstacles: bool = False,
        num_threads: int | None = None,
        wide: bool | None = None,
    ) -> CompactBatch:
        """The compact views of a raw batch's rows (int32 armies when ``army_scale``
        needs the wide form, or with ``wide=True``: every army exact), computed in C++."""
        if wide is None:
            wide = army_dtype(army_scale) == np.int32
        threads = 0 if num_threads is None else num_threads

        state_tiles, state_armies, next_tiles, next_armies, mask = _core.compact_experiences(
            *view_sources(raw), obstacles, wide, threads
        )
        extra: dict[str, Any] = {f.name: getattr(raw, f.name, None) for f in fields(_SampleColumns)}
        nstep_index = getattr(raw, "nstep_next_state_index", None)
        if nstep_index is not None:
            extra["nstep_next_state_tiles"], extra["nstep_next_state_armies"], _ = (
                _core.compact_rows(
                    raw.state_kind,
                    raw.state_owner,
                    raw.state_army,
                    nstep_index,
                    raw.player_id,
                    obstacles,
                    wide,
                    False,
                    threads,
                )
            )
        return cls(
            **{name: getattr(raw, name) for name in ROW_COLUMNS},
            state_tiles=state_tiles,
            state_armies=state_armies,
            next_state_tiles=next_tiles,
            next_state_armies=next_armies,
            action_mask=mask,
            missed=raw.missed,
            next_sequence=raw.next_sequence,
            **extra,
        )

    def expand(
        self,
        army_scaling: str = "linear",
        army_scale: float = 1000.0,
        obstacles: bool = False,
        num_threads: int | None = None,
    ) -> ExperienceBatch:
        """The decoded batch (float observations, bool masks), bit for bit as
        ``RawBatch.decode`` gives it."""
        options: dict[str, Any] = dict(
            army_scaling=army_scaling,
            army_scale=army_scale,
            obstacles=obstacles,
            num_threads=num_threads,
        )
        columns = {name: getattr(self, name) for name in ROW_COLUMNS}
        columns["state"] = expand(self.state_tiles, self.state_armies, **options)
        columns["next_state"] = expand(self.next_state_tiles, self.next_state_armies, **options)
        columns["action_mask"] = expand_masks(
            self.action_mask, self.height, self.width, num_threads=num_threads
        )
        sampled = {f.name: getattr(self, f.name) for f in fields(_SampleColumns)}
        if self.nstep_next_state_tiles is not None:
            sampled["nstep_next_state"] = expand(
                self.nstep_next_state_tiles, self.nstep_next_state_armies, **options
            )
        batch_type = (
            SampledBatch if any(v is not None for v in sampled.values()) else ExperienceBatch
        )
        return batch_type.from_dict(
            {**columns, **sampled, "missed": self.missed, "next_sequence": self.next_sequence}
        )
