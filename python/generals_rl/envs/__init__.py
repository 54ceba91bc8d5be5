"""Gymnasium and PettingZoo environments on the C++ VecEnv (optional extras).

Importing this package registers :data:`ENV_ID` (``"generals_rl/Generals-v0"``) with
Gymnasium; ``gymnasium.make("generals_rl.envs:generals_rl/Generals-v0")`` imports it
on the fly. :class:`GeneralsParallelEnv` (PettingZoo) is loaded on first use, so
Gymnasium users do not need PettingZoo.
"""

from __future__ import annotations

import gymnasium

from .gymnasium_env import ENV_ID, GeneralsEnv

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="generals_rl.envs.gymnasium_env:GeneralsEnv")

__all__ = ["ENV_ID", "GeneralsEnv", "GeneralsParallelEnv", "parallel_env"]


def __getattr__(name: str):
    if name in ("GeneralsParallelEnv", "parallel_env"):
        from . import pettingzoo_env

        return getattr(pettingzoo_env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
