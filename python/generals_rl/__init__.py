"""generals-rl: the real generals.io game in C++ for reinforcement learning."""

from .actions import PASS, decode_actions, encode_actions
from .config import MapConfig
from .game import Game

__all__ = ["Game", "MapConfig", "PASS", "decode_actions", "encode_actions"]
__version__ = "0.1.0"
