"""Storage throughput and size: experiences/s written by each format with compact
states, and bytes per experience on disk, for 20x20 1v1 self-play.

    python bench/bench_storage.py [--experiences N] [--repeats R] [--dir PATH] [--formats A,B]

Prints one JSON object. ``writer`` figures time ``Writer.write`` + ``close`` over
batches as a cursor delivers them (pre-collected, so self-play does not compete),
with the process pinned to one CPU, except the ``_2_threads`` formats, which
encode on two threads and may use every CPU (``cpus`` says how many it could);
``sink`` figures run a BufferSink on live self-play (the games stepped on the
other threads), so they are bounded by how fast the games produce experiences.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import generals_rl
import numpy as np
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.storage import BufferSink, open_writer

FORMATS = {
    "parquet_zstd": ("parquet", {}),
    "tfrecord_bytes": ("tfrecord", {}),
    "npz": ("npz", {}),
    "npz_compressed": ("npz", {"compressed": True}),
    "tfrecord_gzip": ("tfrecord", {"compression": "gzip"}),
    "parquet_decoded": ("parquet", {"states": "decoded"}),
    "tfrecord_decoded": ("tfrecord", {"states": "decoded"}),
    "tfrecord_compact_views": ("tfrecord", {"states": "compact_views"}),
    "tfrecord_compact_views_2_threads": (
        "tfrecord",
        {"states": "compact_views", "encode_threads": 2},
    ),
    "tfrecord_compact_views_gzip": ("tfrecord", {"states": "compact_views", "compression": "gzip"}),
}
THROUGHPUT_FORMATS = (
    "parquet_zstd",
    "tfrecord_bytes",
    "npz",
    "tfrecord_compact_views",
    "tfrecord_compact_views_2_threads",
)


def collect(experiences: int, envs: int, bot: str, max_ticks: int) -> list:
    """Batches of real self-play as a cursor delivers them (a read every 64 steps)."""
    per_step = envs * 2
    buffer = generals_rl.ExperienceBuffer(capacity=experiences + 4 * per_step, policy="block")
    cursor = buffer.cursor()
    env = generals_rl.VecEnv(envs, buffer=buffer, max_ticks=max_ticks, seed=1)
    policy = HeuristicBot() if bot == "heuristic" else RandomBot(1)
    env.reset()
    batches, total, step = [], 0, 0
    while total < experiences:
        env.step(policy.act(env))
        step += 1
        if step % 64 == 0:
            batch = cursor.read_raw(experiences - total)
            total += len(batch)
            batches.append(batch)
    return batches


def on_disk(directory: Path) -> int:
    return sum(
        p.stat().st_size for p in directory.rglob("*") if p.is_file() and p.name != "_index.json"
    )


def write_once(
    fmt: str, options: dict, batches: list, directory: Path
) -> tuple[float, float, dict]:
    shutil.rmtree(directory, ignore_errors=True)
    writer = open_writer(fmt, directory, **options)
    cpu, wall = time.process_time(), time.perf_counter()
    for batch in batches:
        writer.write(batch)
    writer.close()
    return time.perf_counter() - wall, time.process_time() - cpu, writer.stats()


def allowed_cpus(name: str, pinned: int | None) -> set[int] | None:
    """The CPUs a format's writer runs on: one, unless it encodes on threads."""
    if pinned is None:
        return None
    if FORMATS[name][1].get("encode_threads", 1) != 1:
        return set(os.sched_getaffinity(0)) | {pinned}
    return {pinned}


def bench_writers(batches: list, root: Path, repeats: int, names, cpu_sets: dict) -> dict:
    """Each format's figures, its writer on ``cpu_sets[name]`` (a set of CPUs, or
    None for no pinning)."""
    n = sum(len(b) for b in batches)
    out = {}
    for name in names:
        fmt, options = FORMATS[name]
        allowed = cpu_sets[name]
        if allowed is not None:
            os.sched_setaffinity(0, allowed)
        runs = [
            write_once(fmt, options, batches, root / name)
            for _ in range(repeats if name in THROUGHPUT_FORMATS else 1)
        ]
        walls = [r[0] for r in runs]
        cpus = [r[1] for r in runs]
        stats = runs[-1][2]
        out[name] = {
            "experiences_per_second_best": round(n / min(walls)),
            "experiences_per_second_median": round(n / statistics.median(walls)),
            # CPU time is less affected by other processes sharing the core.
            "experiences_per_cpu_second_best": round(n / min(cpus)),
            "cpu_seconds_per_wall_second": round(runs[-1][1] / runs[-1][0], 2),
            "bytes_per_experience": round(on_disk(root / name) / n, 1),
            "shards": stats["shards_committed"],
            "cpus": len(allowed) if allowed is not None else os.cpu_count(),
        }
        shutil.rmtree(root / name, ignore_errors=True)
    return out


def bench_sink(fmt: str, options: dict, experiences: int, envs: int, root: Path) -> dict:
    """A BufferSink writing while the games are stepped (all cores)."""
    directory = root / f"sink_{fmt}"
    shutil.rmtree(directory, ignore_errors=True)
    buffer = generals_rl.ExperienceBuffer(capacity=1 << 18, policy="block")
    env = generals_rl.VecEnv(envs, buffer=buffer, max_ticks=500, seed=2)
    bot = RandomBot(2)
    sink = BufferSink(buffer, open_writer(fmt, directory, **options), batch_size=65_536).start()
    env.reset()
    start = time.perf_counter()
    while buffer.head < experiences:
        env.step(bot.act(env))
    produced = time.perf_counter() - start
    sink.stop()
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "experiences": int(buffer.head),
        "experiences_per_second": round(buffer.head / elapsed),
        "selfplay_seconds": round(produced, 3),
        "seconds_until_durable": round(elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiences", type=int, default=131_072)
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dir", default=None, help="where shards are written (default: a temporary directory)"
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated subset of {', '.join(FORMATS)} (default: all)",
    )
    args = parser.parse_args()
    names = args.formats.split(",")
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        parser.error(f"--formats: unknown {', '.join(unknown)}")
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-storage-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        heuristic = collect(args.experiences, args.envs, "heuristic", max_ticks=500)
        random_play = collect(args.experiences // 2, args.envs, "random", max_ticks=500)
        pinned = None
        if hasattr(os, "sched_setaffinity"):
            allowed = sorted(os.sched_getaffinity(0))
            pinned = allowed[-1]
        cpus = {name: allowed_cpus(name, pinned) for name in FORMATS}
        writers = bench_writers(heuristic, root, args.repeats, names, cpus)
        random_names = [
            name
            for name in ("parquet_zstd", "npz_compressed", "tfrecord_compact_views")
            if name in names
        ]
        sizes_random = {
            name: v["bytes_per_experience"]
            for name, v in bench_writers(random_play, root, 1, random_names, cpus).items()
        }
        if pinned is not None:
            os.sched_setaffinity(0, set(allowed))
        sink = {
            name: bench_sink(FORMATS[name][0], FORMATS[name][1], args.experiences, args.envs, root)
            for name in ("parquet_zstd", "tfrecord_bytes")
            if name in names
        }
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "storage",
        "board": "20x20",
        "players": 2,
        "experiences": sum(len(b) for b in heuristic),
        "bots": "heuristic (sizes with random bots in bytes_per_experience_random_bots)",
        "pinned_cpu": pinned,
        "writer": writers,
        "bytes_per_experience_random_bots": sizes_random,
        "sink_with_selfplay": sink,
        "targets": {
            "experiences_per_second": 500_000,
            "parquet_zstd_bytes_per_experience": 150,
            "tfrecord_compact_views_bytes_per_experience": 1500,
        },
        "destination": str(root),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
