"""generals-rl: the real generals.io game in C++ for reinforcement learning."""

from .actions import PASS, decode_actions, encode_actions
from .config import MapConfig
from .experience import DecodedBatch, ExperienceBatch, ExperienceBuffer, RawBatch
from .game import Game
from .vec_env import RewardConfig, VecEnv

__all__ = [
    "PASS",
    "DecodedBatch",
    "ExperienceBatch",
    "ExperienceBuffer",
    "ExperienceConsumer",
    "ExperienceServer",
    "Game",
    "MapConfig",
    "RawBatch",
    "RewardConfig",
    "VecEnv",
    "decode_actions",
    "encode_actions",
]
__version__ = "0.1.0"

# The gRPC service is imported on first use, so `import generals_rl` stays light.
_SERVICE_EXPORTS = ("ExperienceConsumer", "ExperienceServer")


def __getattr__(name: str):
    if name in _SERVICE_EXPORTS:
        from . import service

        return getattr(service, name)
    raise AttributeError(f"module 'generals_rl' has no attribute {name!r}")
