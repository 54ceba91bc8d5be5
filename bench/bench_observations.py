"""Expanding compact observations: numpy (C++) and torch, against a plain memcpy.

A batch of compact views (tile codes, uint16 armies, packed masks of 20x20 boards,
taken from a VecEnv playing random legal moves) is expanded to float32 observations
and bool masks by ``generals_rl.observations.expand`` (1 thread and every core),
``generals_rl.torch.expand`` (on the CPU: the same C++ kernels) and its tensor
operations (the path other devices take, run here on the CPU); each is timed
against ``np.copyto`` of an array of the output's size (the memory bandwidth a
copy of the floats gets here), in the same run, both writing into an array
allocated once (as a trainer reuses its batch memory; a new array per call is
also measured). Best of several repetitions.
Prints one JSON document.

    python bench/bench_observations.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from generals_rl.bots import RandomBot
from generals_rl.config import MapConfig
from generals_rl.observations import expand, expand_masks
from generals_rl.vec_env import VecEnv

SIDE = 20


def compact_batch(rows: int):
    """``rows`` compact views and packed masks of mid-game boards."""
    env = VecEnv(
        max(1, rows // 2),
        players=2,
        height=SIDE,
        width=SIDE,
        seed=1,
        max_ticks=500,
        map_config=MapConfig(min_side=SIDE, max_side=SIDE),
        observation_format="compact",
    )
    bot = RandomBot(seed=1)
    for _ in range(150):
        env.step(bot.act(env))
    obs = env.observations
    masks = env.action_masks
    return (
        obs.tiles.reshape(-1, SIDE, SIDE)[:rows].copy(),
        obs.armies.reshape(-1, SIDE, SIDE)[:rows].copy(),
        masks.reshape(rows, -1)[:rows].copy(),
    )


def best_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: pools, page faults of the first output
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rate(seconds: float, out_bytes: int, memcpy_s: float, rows: int) -> dict:
    return {
        "rows_per_s": round(rows / seconds),
        "output_gb_per_s": round(out_bytes / seconds / 1e9, 2),
        "time_over_memcpy": round(seconds / memcpy_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096, help="views per batch")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    tiles, armies, masks = compact_batch(args.rows)
    obs = expand(tiles, armies)
    out_bytes = obs.nbytes
    source, target = np.ones_like(obs), np.empty_like(obs)
    memcpy_s = best_seconds(lambda: np.copyto(target, source), args.repeat)
    result = {
        "benchmark": "observations",
        "rows": args.rows,
        "board": f"{SIDE}x{SIDE}",
        "compact_bytes_per_view": tiles[0].nbytes + armies[0].nbytes + masks[0].nbytes,
        "float_bytes_per_view": obs[0].nbytes + SIDE * SIDE * 4,
        "memcpy_of_output": {
            "output_gb_per_s": round(out_bytes / memcpy_s / 1e9, 2),
            "seconds": round(memcpy_s, 6),
        },
        "numpy_expand_1_thread": rate(
            best_seconds(lambda: expand(tiles, armies, num_threads=1, out=target), args.repeat),
            out_bytes,
            memcpy_s,
            args.rows,
        ),
        "numpy_expand_all_cores": rate(
            best_seconds(lambda: expand(tiles, armies, out=target), args.repeat),
            out_bytes,
            memcpy_s,
            args.rows,
        ),
        "numpy_expand_all_cores_new_array": rate(
            best_seconds(lambda: expand(tiles, armies), args.repeat), out_bytes, memcpy_s, args.rows
        ),
        "numpy_expand_masks": rate(
            best_seconds(lambda: expand_masks(masks, SIDE, SIDE), args.repeat),
            args.rows * SIDE * SIDE * 4,
            memcpy_s,
            args.rows,
        ),
    }
    try:
        import generals_rl.torch as gtorch
        import torch
    except ImportError as error:
        result["torch"] = {"reason": str(error)}
    else:
        t_tiles, t_armies = gtorch.as_tensor(tiles), gtorch.as_tensor(armies)
        t_out = torch.from_numpy(target)
        result["torch"] = {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "expand_cpu": rate(
                best_seconds(lambda: gtorch.expand(t_tiles, t_armies, out=t_out), args.repeat),
                out_bytes,
                memcpy_s,
                args.rows,
            ),
            "expand_tensor_ops_cpu": rate(
                best_seconds(
                    lambda: gtorch._expand_tensor_ops(t_tiles, t_armies, "linear", 1000.0, False),
                    max(3, args.repeat // 4),
                ),
                out_bytes,
                memcpy_s,
                args.rows,
            ),
        }
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
