"""Keyword options of the writer constructors: a format's, and those every
shard writer shares."""

from __future__ import annotations

import inspect

from .formats import ShardFormat
from .writer import RetryPolicy, Rotation

ROTATION_OPTIONS = ("max_experiences", "max_bytes", "max_age", "chunk_size")
RETRY_OPTIONS = {
    "retry_attempts": "attempts",
    "retry_base_delay": "base_delay",
    "retry_max_delay": "max_delay",
}
WRITER_OPTIONS = ("resume", "clock", "rotation", "retry")


def split_writer_options(options: dict) -> dict:
    """``ShardWriter`` keyword arguments from flat writer options: ``max_experiences``,
    ``max_bytes``, ``max_age``, ``chunk_size`` (a Rotation), ``retry_attempts``,
    ``retry_base_delay``, ``retry_max_delay`` (a RetryPolicy), ``resume``,
    ``clock``. TypeError names an unknown option."""
    unknown = sorted(
        set(options) - set(ROTATION_OPTIONS) - set(RETRY_OPTIONS) - set(WRITER_OPTIONS)
    )
    if unknown:
        raise TypeError(f"unknown writer option(s): {', '.join(unknown)}")
    out = {k: options[k] for k in WRITER_OPTIONS if k in options}
    rotation = {k: options[k] for k in ROTATION_OPTIONS if k in options}
    if rotation:
        if "rotation" in out:
            raise TypeError(
                "give either rotation= or max_experiences/max_bytes/max_age/chunk_size, not both"
            )
        out["rotation"] = Rotation(**rotation)
    retry = {RETRY_OPTIONS[k]: options[k] for k in RETRY_OPTIONS if k in options}
    if retry:
        if "retry" in out:
            raise TypeError(
                "give either retry= or retry_attempts/retry_base_delay/retry_max_delay, not both"
            )
        out["retry"] = RetryPolicy(**retry)
    return out


def format_and_writer_options(
    format_class: type[ShardFormat], options: dict
) -> tuple[ShardFormat, dict]:
    """The format built from the options its constructor names (checked first:
    ValueError names a bad one), and the ``ShardWriter`` keyword arguments from
    the rest (``split_writer_options``: TypeError names an unknown one)."""
    names = [p for p in inspect.signature(format_class.__init__).parameters if p != "self"]
    shard_format = format_class(**{k: v for k, v in options.items() if k in names})
    return shard_format, split_writer_options({k: v for k, v in options.items() if k not in names})
