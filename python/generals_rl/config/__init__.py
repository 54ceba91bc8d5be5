"""Configuration shared by single games and batched environments."""

from __future__ import annotations

from dataclasses import dataclass

from .. import _core


@dataclass(frozen=True)
class MapConfig:
    """How maps are generated, in the manner of generals.io's 1v1 and FFA maps.

    Board sides are drawn from ``[min_side, max_side]``; ``cities=-1`` places about
    one city per 40 tiles (10 on a 20x20 board) and ``min_general_distance=-1``
    uses 15 for 1v1 and less for more players. Invalid values raise ``ValueError``
    naming the field.
    """

    min_side: int = 18
    max_side: int = 23
    mountain_fraction: float = 0.2
    cities: int = -1
    city_army_min: int = 40
    city_army_max: int = 50
    min_general_distance: int = -1

    def to_core(self, players: int, pad_height: int = 0, pad_width: int = 0) -> _core.MapOptions:
        """The C++ options; with padding, sides are capped to fit the padded board."""
        options = _core.MapOptions()
        options.players = players
        for name in (
            "min_side",
            "max_side",
            "mountain_fraction",
            "cities",
            "city_army_min",
            "city_army_max",
            "min_general_distance",
        ):
            setattr(options, name, getattr(self, name))
        if pad_height and pad_width:
            # Boards are generated to fit the padded shape.
            options.max_side = min(self.max_side, pad_height, pad_width)
            options.min_side = min(self.min_side, options.max_side)
        options.pad_height = pad_height
        options.pad_width = pad_width
        options.validate()
        return options


# The farm configuration (pydantic, PyYAML: the `farm` extra) is imported on first use.
_FARM_EXPORTS = ("ConfigError", "FarmConfig", "HOT_KEYS", "load_config")


def __getattr__(name: str):
    if name in _FARM_EXPORTS:
        from . import farm

        return getattr(farm, name)
    if name == "ConfigWatcher":
        from .reload import ConfigWatcher

        return ConfigWatcher
    raise AttributeError(f"module 'generals_rl.config' has no attribute {name!r}")
