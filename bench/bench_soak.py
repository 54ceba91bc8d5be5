"""Memory over a long self-play run: ``generals-rl selfplay --games 0`` into each
output format (and ``--output none``) for a given time, the resident memory of its
process tree sampled as it runs; with ``--consumer``, also of a trainer following the
farm over gRPC (compact views, batches of 8192, handed to torch).

    python bench/bench_soak.py [--duration SECONDS] [--formats parquet,tfrecord,npz,none]
                               [--interval SECONDS] [--warmup SECONDS] [--dir PATH]
                               [--consumer]

Prints one JSON object: per format the RSS series (seconds, MB), the experiences
played, and the slope of RSS over time after the warm-up (least squares, MB/min),
also of the per-minute minima (the floor between the peaks of encoding a chunk);
the same for the consumer, with the experiences it took. Memory is bounded when the
floor's slope is about zero. Committed shards are deleted as
they appear (the writer never reads them back), so a long run fits on disk;
staging files and indexes stay.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMATS = ("parquet", "tfrecord", "npz", "none")
# A trainer following the farm until stopped (SIGINT); prints what it took.
CONSUMER = """
import sys
from generals_rl.service import ExperienceConsumer
from generals_rl.torch import as_tensor
taken = 0
try:
    with ExperienceConsumer(sys.argv[1]) as consumer:
        for batch in consumer.stream_experiences(batch_size=8192, compact=True, start="oldest"):
            views = batch.views
            for array in (views.tiles, views.armies, views.state_view, views.next_state_view):
                as_tensor(array)
            as_tensor(batch.action_mask)
            taken += len(batch)
except KeyboardInterrupt:
    pass
print(taken)
"""
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_BYTES
        except OSError:
            continue
    return total / 1e6


def slope_mb_per_min(series: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(series) < 2:
        return None
    n = len(series)
    mean_t = sum(t for t, _ in series) / n
    mean_m = sum(m for _, m in series) / n
    var = sum((t - mean_t) ** 2 for t, _ in series)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in series)
    return 60.0 * cov / var if var else None


def minute_floors(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lowest sample of each whole minute, at the minute's middle: the level
    memory returns to between the peaks of encoding one chunk (a sawtooth of up
    to ~150 MB that the least-squares slope of a few minutes follows)."""
    floors: dict[int, float] = {}
    for t, m in series:
        floors[int(t // 60)] = min(m, floors.get(int(t // 60), m))
    return [(60.0 * minute + 30.0, m) for minute, m in sorted(floors.items())]


def delete_committed_shards(root: Path) -> None:
    """Deletes the shards (and companions) that partition indexes list."""
    for index in root.rglob("_index.json"):
        try:
            entries = json.loads(index.read_text())["shards"]
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now
        for entry in entries:
            for key in (entry["key"], *entry.get("companions", {}).values()):
                (root / key).unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_summary(series: list[tuple[float, float]], warmup: float) -> dict:
    after = [(t, m) for t, m in series if t >= warmup]
    return {
        "rss_mb_max": max((m for _, m in series), default=None),
        "rss_mb_after_warmup_min": min((m for _, m in after), default=None),
        "rss_mb_after_warmup_max": max((m for _, m in after), default=None),
        "slope_mb_per_min_after_warmup": None
        if (s := slope_mb_per_min(after)) is None
        else round(s, 3),
        "floor_slope_mb_per_min_after_warmup": None
        if (f := slope_mb_per_min(minute_floors(after))) is None
        else round(f, 3),
        "rss_series": series,
    }


def soak(
    fmt: str, duration: float, interval: float, warmup: float, workdir: Path, consumer: bool
) -> dict:
    output = workdir / fmt
    address = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable,
        "-m",
        "generals_rl.cli",
        "selfplay",
        "--games",
        "0",
        "--address",
        address,
        "--json",
    ]
    command += ["--output", "none"] if fmt == "none" else ["--output", str(output), "--format", fmt]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    follower = None
    if consumer:
        follower = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, address],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    series: list[tuple[float, float]] = []
    follower_series: list[tuple[float, float]] = []
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < duration and process.poll() is None:
            series.append((round(elapsed, 1), round(tree_rss_mb(process.pid), 1)))
            if follower is not None:
                follower_series.append((round(elapsed, 1), round(tree_rss_mb(follower.pid), 1)))
            if fmt != "none":
                delete_committed_shards(output)
            time.sleep(interval)
    finally:
        taken = None
        if follower is not None:
            follower.send_signal(signal.SIGINT)
            out, _ = follower.communicate(timeout=300)
            taken = int(out) if follower.returncode == 0 and out.strip().isdigit() else None
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=300)
    summary = json.loads(out) if process.returncode == 0 and out.strip() else {}
    result = {
        "exit_code": process.returncode,
        "experiences": summary.get("experiences"),
        "experiences_per_second": summary.get("experiences_per_second"),
        "stored": summary.get("stored", {}).get("experiences"),
        **memory_summary(series, warmup),
    }
    if follower is not None:
        result["consumer"] = {
            "exit_code": follower.returncode,
            "experiences": taken,
            **memory_summary(follower_series, warmup),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds per format (default: %(default)s)"
    )
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between samples (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds left out of the slope (default: %(default)s)",
    )
    parser.add_argument(
        "--dir", default=None, help="where the shards go (default: a temporary directory)"
    )
    parser.add_argument(
        "--consumer",
        action="store_true",
        help="also follow each farm with a compact consumer over gRPC and sample its memory",
    )
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"--formats: unknown {', '.join(unknown)}")
    if not (args.duration > 0 and args.interval > 0 and 0 <= args.warmup < args.duration):
        parser.error("--duration and --interval must be positive, --warmup in [0, duration)")
    workdir = Path(tempfile.mkdtemp(prefix="grl-soak-", dir=args.dir))
    results = {}
    try:
        for fmt in formats:
            results[fmt] = soak(
                fmt, args.duration, args.interval, args.warmup, workdir, args.consumer
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "formats": results,
            }
        )
    )


if __name__ == "__main__":
    main()
