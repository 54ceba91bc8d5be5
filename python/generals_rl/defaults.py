"""The library's defaults, in one place.

The game limits and reward weights come from the C++ structs (``VecEnvConfig``,
``RewardConfig``), so the engine, ``VecEnv``, ``generals-rl selfplay`` and the
farm configuration (``generals_rl.config``) cannot disagree; self-play's own
defaults are ``SelfPlayConfig``'s fields, which the command line and the
configuration read.
"""

from __future__ import annotations

from . import _core

_CORE = _core.vec_env_defaults()

# Ticks before a game of a VecEnv (and of self-play, the wrappers, the farm) is
# truncated. A single ``Game`` has no limit unless given one, in C++ and Python alike.
MAX_TICKS: int = int(_CORE["max_ticks"])

# The reward weights, as the float32 values C++ holds printed back to the
# decimals they were written with (0.1f -> 0.1).
REWARD_WEIGHTS: dict[str, float] = {
    name: float(f"{value:.7g}") for name, value in _CORE["reward"].items()
}

# Upper bounds of the reward histogram's buckets (C++ counts into them): -1.0, -0.9, ..., 1.0.
REWARD_BUCKETS: tuple[float, ...] = tuple(
    round(-1.0 + 0.1 * k, 1) for k in range(int(_core.REWARD_BUCKET_BOUNDS))
)

# Serving and storing self-play (``run_selfplay``, ``ExperienceServer``, the
# command line and the farm configuration).
STREAM_ADDRESS: str = "127.0.0.1:50051"  # where self-play serves its experiences
MAX_STREAMS: int = 32  # concurrent gRPC streams
DRAIN_TIMEOUT: float = 30.0  # seconds to wait for connected consumers to read everything
STORAGE_DIRECTORY: str = "selfplay-data"
STORAGE_FORMAT: str = "parquet"
