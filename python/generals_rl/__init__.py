"""generals-rl: the real generals.io game in C++ for reinforcement learning."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the exports, spelled out for type checkers
    from .actions import PASS as PASS
    from .actions import decode_actions as decode_actions
    from .actions import encode_actions as encode_actions
    from .config import MapConfig as MapConfig
    from .experience import DecodedBatch as DecodedBatch
    from .experience import ExperienceBatch as ExperienceBatch
    from .experience import ExperienceBuffer as ExperienceBuffer
    from .experience import RawBatch as RawBatch
    from .game import Game as Game
    from .service import ExperienceConsumer as ExperienceConsumer
    from .service import ExperienceServer as ExperienceServer
    from .vec_env import RewardConfig as RewardConfig
    from .vec_env import VecEnv as VecEnv

__version__ = "0.1.0"

# Each export is imported on first use, so `import generals_rl` (and the command line,
# which answers Ctrl-C from its first line) starts without numpy, the core or gRPC.
_EXPORTED_FROM = {
    "PASS": "actions",
    "decode_actions": "actions",
    "encode_actions": "actions",
    "MapConfig": "config",
    "DecodedBatch": "experience",
    "ExperienceBatch": "experience",
    "ExperienceBuffer": "experience",
    "RawBatch": "experience",
    "Game": "game",
    "ExperienceConsumer": "service",
    "ExperienceServer": "service",
    "RewardConfig": "vec_env",
    "VecEnv": "vec_env",
}
__all__ = sorted(_EXPORTED_FROM)


def __getattr__(name: str):
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'generals_rl' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTED_FROM})
