"""Where shards go in a destination (a local directory or an S3 prefix), and
what they are called::

    year=YYYY/month=MM/day=DD/hour=HH/game_<id>_<nnnn>.<ext>   one shard
    year=YYYY/month=MM/day=DD/hour=HH/_index.json              the partition index

The hour is the UTC hour in which the shard received its first experience, ``<id>``
the game id (16 hex digits) of the shard's first experience and ``<nnnn>`` the
shard's ordinal within its partition. A shard becomes visible only once complete;
the index lists it only after that, and the index is what readers and ``resume``
go by.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from datetime import datetime, timezone

INDEX_NAME = "_index.json"
INDEX_VERSION = 1
SHARD_NAME = re.compile(r"^game_(?P<game>[0-9a-f]{16})_(?P<ordinal>\d{4,})\.(?P<ext>[a-z0-9.]+)$")
PARTITION_KEYS = ("year", "month", "day", "hour")
_TEMP_MARK = ".tmp-"


def partition_of(timestamp: float) -> str:
    """``year=YYYY/month=MM/day=DD/hour=HH`` of a Unix time, in UTC."""
    t = time.gmtime(timestamp)
    return f"year={t.tm_year:04d}/month={t.tm_mon:02d}/day={t.tm_mday:02d}/hour={t.tm_hour:02d}"


def partition_start(partition: str) -> float:
    """The Unix time at which a partition's hour starts; ValueError if malformed."""
    parts = partition.strip("/").split("/")
    try:
        values = dict(p.split("=", 1) for p in parts)
        year, month, day, hour = (int(values[k]) for k in PARTITION_KEYS)
    except (KeyError, ValueError):
        raise ValueError(f"{partition!r} is not a year=/month=/day=/hour= partition") from None
    return datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp()


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def shard_name(first_game_id: int, ordinal: int, extension: str) -> str:
    return f"game_{int(first_game_id):016x}_{ordinal:04d}.{extension}"


def is_temporary(name: str) -> bool:
    return name.startswith(".") and _TEMP_MARK in name


def temporary_name(name: str) -> str:
    return f".{name}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
