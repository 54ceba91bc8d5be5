"""Ray, imported once for the package with a clear message when it is missing."""

from __future__ import annotations

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"generals_rl.distributed needs {error.name}: pip install 'generals-rl[ray]'",
        name=error.name,
    ) from error

# Every actor of the project lives in this Ray namespace unless told otherwise, so
# that `generals-rl farm status` finds a farm started by `generals-rl farm up`.
NAMESPACE = "generals-rl"
FARM_NAME = "farm"

__all__ = ["FARM_NAME", "NAMESPACE", "GetTimeoutError", "RayActorError", "ray"]
