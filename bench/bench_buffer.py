"""Experience collection and reading: what recording costs self-play, what an
experience costs in memory, and how fast cursors hand experiences out.

(a) env-steps/s of the VecEnv bench's workload (1024 games, 20x20, 1v1, RandomBot,
    observations and masks on, 2 threads) without a buffer, with an overwrite buffer,
    and with a block buffer drained by a reader thread (raw reads); the ratios to the
    run without (target >= 0.8). Configurations alternate over several rounds; the
    median round counts.
(b) resident memory once the ring is full: bytes_used / resident (target <= 1 KB), and
    the process's resident-set growth per experience as a cross-check.
(c) cursor reads on one core from a pre-filled buffer: decoded to float32 tensors and
    masks (target >= 500,000 experiences/s) and raw (target >= 5,000,000/s).

Prints one JSON document. Figures are noisy when other work shares the machine: the
load average is included.

    python bench/bench_buffer.py [--seconds S] [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time

import numpy as np
from generals_rl import ExperienceBuffer
from generals_rl.bots import RandomBot
from generals_rl.config import MapConfig
from generals_rl.vec_env import VecEnv

SIDE = 20
MAX_TICKS = 500  # as in bench_vec_env.py
MAP = MapConfig(min_side=SIDE, max_side=SIDE)
NUM_ENVS = 1024
THREADS = 2
RING = 1 << 18  # experiences: the ring fills within the first seconds, then overwrites


def make_env(num_envs: int, buffer: ExperienceBuffer | None, **kwargs) -> VecEnv:
    return VecEnv(
        num_envs,
        players=2,
        height=SIDE,
        width=SIDE,
        seed=1,
        max_ticks=MAX_TICKS,
        num_threads=THREADS,
        map_config=MAP,
        buffer=buffer,
        **kwargs,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Drainer:
    """A thread reading everything from a cursor in raw form, as a transport would:
    when it has caught up it lets a few milliseconds of experiences gather instead of
    reading them a handful at a time (a read returns as soon as anything is there)."""

    def __init__(self, buffer: ExperienceBuffer) -> None:
        self.cursor = buffer.cursor(start="newest")
        self.read = 0
        self.missed = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.is_set():
            batch = self.cursor.read_raw(16384, timeout=0.05)
            self.read += len(batch)
            self.missed += batch.missed
            if len(batch) < 4096:
                time.sleep(0.005)
            self.cpu_seconds = time.thread_time() - started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.cursor.close()


def collection_rounds(seconds: float, rounds: int) -> dict:
    """env-steps/s per configuration, alternating configurations each round."""
    configs = {
        "without_buffer": None,
        "overwrite": ExperienceBuffer(SIDE, SIDE, capacity=RING, policy="overwrite"),
        "block_with_reader": ExperienceBuffer(SIDE, SIDE, capacity=RING, policy="block"),
    }
    envs = {name: make_env(NUM_ENVS, buffer) for name, buffer in configs.items()}
    bots = {name: RandomBot(seed=1) for name in configs}
    actions = np.full((NUM_ENVS, 2), -1, dtype=np.int32)
    drainer = Drainer(configs["block_with_reader"])
    results: dict[str, list[float]] = {name: [] for name in configs}
    for name, env in envs.items():  # warm-up
        for _ in range(20):
            env.step(bots[name].act(env, out=actions))
    for _ in range(rounds):
        for name, env in envs.items():
            bot, steps = bots[name], 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                env.step(bot.act(env, out=actions))
                steps += 1
            results[name].append(steps * NUM_ENVS / (time.perf_counter() - start))
    drainer.stop()
    base = statistics.median(results["without_buffer"])
    out = {
        "workload": f"{NUM_ENVS} games, {SIDE}x{SIDE}, 1v1, RandomBot, observations and masks on, "
        f"{THREADS} threads, ring of {RING} experiences",
        "rounds": rounds,
        "seconds_per_round": seconds,
    }
    for name, values in results.items():
        out[name] = {
            "env_steps_per_s": round(statistics.median(values)),
            "all_rounds": [round(v) for v in values],
        }
        if name != "without_buffer":
            out[name]["ratio"] = round(statistics.median(values) / base, 3)
    out["block_with_reader"]["reader"] = {
        "read": drainer.read,
        "missed": drainer.missed,
        "cpu_seconds": round(drainer.cpu_seconds, 2),
        "note": (
            f"the reader thread shares the {os.cpu_count()} cores with the env's {THREADS} threads"
        ),
    }
    out["overwrite"]["buffer_stats"] = {
        k: v for k, v in configs["overwrite"].stats().items() if k != "cursor_lag"
    }
    out["target_ratio"] = 0.8
    return out


def memory_per_experience() -> dict:
    """A ring filled (and lapped) by self-play; bytes_used and RSS growth per experience."""
    before = rss_bytes()
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=RING, policy="overwrite")
    env = make_env(NUM_ENVS, buffer, observations=False, action_masks=False)
    bot = RandomBot(seed=2)
    actions = np.full((NUM_ENVS, 2), -1, dtype=np.int32)
    while buffer.head < 2 * buffer.capacity:
        env.step(bot.act(env, out=actions))
    stats = buffer.stats()
    grown = rss_bytes() - before
    return {
        "capacity": stats["capacity"],
        "state_capacity": stats["state_capacity"],
        "resident": stats["resident"],
        "bytes_used": stats["bytes_used"],
        "bytes_per_experience": round(stats["bytes_used"] / stats["resident"], 1),
        "rss_growth_per_experience": round(grown / stats["resident"], 1),
        "target_bytes_per_experience": 1024,
    }


def filled_buffer(experiences: int) -> ExperienceBuffer:
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=experiences, policy="overwrite")
    env = make_env(NUM_ENVS, buffer, observations=False, action_masks=False)
    bot = RandomBot(seed=3)
    actions = np.full((NUM_ENVS, 2), -1, dtype=np.int32)
    while buffer.head < experiences:
        env.step(bot.act(env, out=actions))
    return buffer


def read_rate(buffer: ExperienceBuffer, raw: bool, batch: int, seconds: float) -> dict:
    """Experiences/s reading the whole ring through fresh cursors, on the calling thread."""
    total, elapsed = 0, 0.0
    while elapsed < seconds:
        cursor = buffer.cursor(start="oldest")
        start = time.perf_counter()
        while True:
            got = len(cursor.read_raw(batch) if raw else cursor.read(batch))
            if got == 0:
                break
            total += got
        elapsed += time.perf_counter() - start
    return {"experiences_per_s": round(total / elapsed), "batch": batch, "experiences": total}


def read_rates(seconds: float) -> dict:
    buffer = filled_buffer(1 << 17)
    return {
        "buffer": f"{buffer.stats()['resident']} experiences of {SIDE}x{SIDE} 1v1 self-play",
        "decoded": {**read_rate(buffer, False, 1024, seconds), "target": 500_000},
        # batches spanning ticks of the same games: next_state tensors shared with later
        # rows are copied instead of encoded again
        "decoded_4096": read_rate(buffer, False, 4096, seconds),
        "raw": {**read_rate(buffer, True, 65536, seconds), "target": 5_000_000},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time per measurement (and per round)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the collection comparison")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = parser.parse_args(argv)
    seconds, rounds = (0.3, 1) if args.quick else (args.seconds, args.rounds)
    result = {
        "benchmark": "bench_buffer",
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "collection_overhead": collection_rounds(seconds, rounds),
        "memory": memory_per_experience(),
        "reads_one_core": read_rates(seconds),
    }
    result["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
