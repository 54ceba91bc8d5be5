"""generals-rl: the real generals.io game in C++ for reinforcement learning."""

from .actions import PASS, decode_actions, encode_actions
from .config import MapConfig
from .experience import ExperienceBatch, ExperienceBuffer, RawBatch
from .game import Game
from .vec_env import RewardConfig, VecEnv

__all__ = [
    "ExperienceBatch",
    "ExperienceBuffer",
    "Game",
    "MapConfig",
    "PASS",
    "RawBatch",
    "RewardConfig",
    "VecEnv",
    "decode_actions",
    "encode_actions",
]
__version__ = "0.1.0"
