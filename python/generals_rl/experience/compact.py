"""Experiences with compact views (``generals_rl.observations``): per row the acting
player's tile codes and visible armies of its state and next state, and the packed
action mask of its state. A fraction of the decoded form's bytes (1 + 2 bytes a tile
and view instead of 36 or 40), expanded to it bit for bit where the trainer is.

The indexed form (what the compact stream sends, ``CompactBatch.from_raw(...,
indexed=True)``) holds each distinct (state, player) view once, and per row which is
its state's and its next state's (``IndexedViews``): almost every next state is
another row's state, so it is about half the bytes. Its per-row columns are gathered
from the views on first read."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from .. import _core
from ..observations import (
    BYTE_ARMY_MAX,
    CompactObservations,
    army_dtype,
    expand,
    expand_masks,
    view_action_masks,
)
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
_ViewSources = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


class ViewPlan(NamedTuple):
    """The distinct views of a raw batch's experiences (``_core.compact_view_plan``):
    views 0..n-1 are the rows' state views, the rest next states that are no row's
    state; ``army_dtype`` the narrowest armies that hold every army of the batch."""

    next_state_view: np.ndarray  # (n,) int32
    view_state: np.ndarray  # (views,) int32: rows of the state tables
    view_player: np.ndarray  # (views,) int32
    army_dtype: np.dtype

    def sources(self, raw: RawBatch) -> _ViewSources:
        """What ``_core.compact_views`` makes the views from, up to
        ``obstacles``: ``raw``'s state tables, each view's state and player, and how
        many views have masks (the rows' own)."""
        tables = (raw.state_kind, raw.state_owner, raw.state_army)
        return (*tables, self.view_state, self.view_player, len(raw))


def plan_views(raw: RawBatch, army_scale: float, wide: bool | None = None) -> ViewPlan:
    """The ``ViewPlan`` of ``raw`` (int32 armies with ``wide``, as ``from_raw``)."""
    next_state_view, view_state, view_player = _core.compact_view_plan(
        raw.state_index, raw.next_state_index, raw.player_id, raw.state_kind.shape[0]
    )
    dtype: np.dtype
    if wide:
        dtype = np.dtype(np.int32)
    elif raw.state_army.size == 0 or int(raw.state_army.max()) <= BYTE_ARMY_MAX:
        dtype = np.dtype(np.uint8)
    else:
        dtype = army_dtype(army_scale)
    return ViewPlan(next_state_view, view_state, view_player, dtype)


@dataclass(frozen=True)
class IndexedViews:
    """Distinct compact views and, per row, which is its state's and its next
    state's. ``armies``: uint8 when every army of the batch fits, else as
    ``observations.army_dtype``."""

    tiles: np.ndarray  # (views, H, W) uint8
    armies: np.ndarray  # (views, H, W)
    state_view: np.ndarray  # (n,) int32, 0..views-1
    next_state_view: np.ndarray  # (n,) int32

    def rows(self, which: str, part: str) -> np.ndarray:
        """The per-row ``part`` ("tiles" or "armies") of ``which`` ("state" or
        "next_state") views; byte armies widen to uint16 (the per-row form's)."""
        values = getattr(self, part)
        if values.dtype == np.uint8 and part == "armies":
            values = values.astype(np.uint16)
        return values.take(getattr(self, f"{which}_view"), axis=0)

    def action_masks(self) -> np.ndarray:
        """Each row's packed action mask, made from its state view in C++ (equal to
        the engine's, ``observations.view_action_masks``)."""
        return view_action_masks(self.tiles, self.armies, self.state_view)


class _FromViews:
    """A per-row column of ``CompactBatch`` (a dataclass field): as given, or,
    given None by ``CompactBatch.from_views``, made from its ``views`` on first
    read (the view columns gathered, the action masks computed)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._which, _, self._part = name.rpartition("_")

    def __get__(self, batch: CompactBatch | None, owner: type | None = None) -> np.ndarray:
        if batch is None:  # class access: the field has no default
            raise AttributeError(self._name)
        value = batch.__dict__[self._name]
        if value is None:
            views = batch.views
            if views is None:
                raise ValueError(f"{self._name}: None, and the batch holds no indexed views")
            if self._name == "action_mask":
                value = views.action_masks()
            else:
                value = views.rows(self._which, self._part)
            batch.__dict__[self._name] = value
        return value

    def __set__(self, batch: CompactBatch, value: np.ndarray | None) -> None:
        batch.__dict__[self._name] = value


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
    also carry the sampling columns and ``nstep_next_state_tiles``/``_armies``. A batch
    in the indexed form also has ``views`` (``IndexedViews``, else None), the per-row
    view columns gathered from them when read (and the action masks made from them,
    when the batch came without)."""

    state_tiles: np.ndarray = _FromViews()  # type: ignore[assignment]
    state_armies: np.ndarray = _FromViews()  # type: ignore[assignment]
    next_state_tiles: np.ndarray = _FromViews()  # type: ignore[assignment]
    next_state_armies: np.ndarray = _FromViews()  # type: ignore[assignment]
    action_mask: np.ndarray = _FromViews()  # type: ignore[assignment]
    nstep_next_state_tiles: np.ndarray | None = None
    nstep_next_state_armies: np.ndarray | None = None

    @property
    def views(self) -> IndexedViews | None:
        """The indexed form's views, or None. Not a field: take, concat and storage
        see the per-row columns."""
        return self.__dict__.get("_views")

    @classmethod
    def from_views(cls, views: IndexedViews, **columns: Any) -> CompactBatch:
        """The indexed batch of ``views`` and the other columns (records, and the
        packed masks unless they are to be made from the views)."""
        rows: dict[str, Any] = dict.fromkeys(
            ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies", "action_mask")
        )
        batch = cls(**{**rows, **columns})
        batch.__dict__["_views"] = views
        return batch

    @property
    def height(self) -> int:
        return (self.state_tiles if self.views is None else self.views.tiles).shape[1]

    @property
    def width(self) -> int:
        return (self.state_tiles if self.views is None else self.views.tiles).shape[2]

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
        indexed: bool = False,
    ) -> CompactBatch:
        """The compact views of a raw batch's rows (int32 armies when ``army_scale``
        needs the wide form, or with ``wide=True``: every army exact), computed in C++;
        ``indexed``: in the indexed form (``views``; uint8 armies when they all fit)."""
        threads = 0 if num_threads is None else num_threads
        columns: dict[str, Any] = {}
        views: IndexedViews | None = None
        if indexed:  # byte armies whenever they fit, whatever the scale, unless told wide
            plan = plan_views(raw, army_scale, wide)
            tiles, armies, columns["action_mask"] = _core.compact_views(
                *plan.sources(raw), obstacles, plan.army_dtype.itemsize, threads
            )
            first = np.arange(len(raw), dtype=np.int32)
            views = IndexedViews(tiles, armies, first, plan.next_state_view)
        if wide is None:
            wide = army_dtype(army_scale) == np.int32
        if not indexed:
            (
                columns["state_tiles"],
                columns["state_armies"],
                columns["next_state_tiles"],
                columns["next_state_armies"],
                columns["action_mask"],
            ) = _core.compact_experiences(*view_sources(raw), obstacles, wide, threads)
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
        columns.update(
            {name: getattr(raw, name) for name in ROW_COLUMNS},
            missed=raw.missed,
            next_sequence=raw.next_sequence,
            **extra,
        )
        return cls(**columns) if views is None else cls.from_views(views, **columns)

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
