"""Trainers (``pip install 'generals-rl[train]'``): PPO in process on a VecEnv, the
network, checkpoints and evaluation. Imports torch."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .model import NetConfig, PolicyValueNet, full_mask, sample
from .policy import NetworkPolicy, make_opponent
from .ppo import PPOConfig, PPOTrainer, compute_gae

__all__ = [
    "CheckpointError",
    "NetConfig",
    "NetworkPolicy",
    "PPOConfig",
    "PPOTrainer",
    "PolicyValueNet",
    "compute_gae",
    "full_mask",
    "load_checkpoint",
    "make_opponent",
    "sample",
    "save_checkpoint",
]
