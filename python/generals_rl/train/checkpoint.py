"""Checkpoints: weights, optimizer, config and counters in one file, written atomically."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
from pathlib import Path

import torch

FORMAT = "generals-rl-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a readable generals-rl checkpoint."""


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Writes ``payload`` (tensors, dicts, lists, numbers, strings) to ``path`` atomically:
    a temporary file in the same directory, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, data)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path) -> dict:
    """The payload of a checkpoint file (loaded without unpickling arbitrary objects)."""
    path = Path(path)
    if path.is_dir():
        path = path / "latest.pt"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({exc.__class__.__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a generals-rl checkpoint")
    return payload
