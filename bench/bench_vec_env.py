"""VecEnv throughput: env-steps per second at 20x20, 1v1, random legal play in C++.

One env-step is one tick of one game with both players acting; "with views" means both
players' float32 9-channel observations and action masks are produced every tick;
"compact views" the same as tile codes, uint16 armies and packed masks
(``observation_format="compact"``), measured in the same run for the ratio.
Measures generals-rl for num_envs in {1, 64, 1024} on 1 and 2 threads, with and
without observations and masks (and each view alone at the largest batch), the
Gymnasium wrapper, and the same workload on ``generals-bots`` (its NumPy engine: one
``Game.step`` per tick, both players' observations, ``compute_valid_move_mask`` for
each player and a random legal move drawn from it), in the same run. Prints one JSON
document. The peer is skipped (null, with the reason) when it is not installed:
``pip install 'generals-rl[bench]'``.

It also measures what a farm's metrics cost self-play (``metrics_overhead``):
the VecEnv recording into a buffer as ``generals-rl selfplay`` runs it, with the
C++ counters off, no step hook and no scrapes, against the counters on, the
farm's step hook and ``/metrics`` rendered every second (15 times Prometheus'
default rate), in interleaved rounds, as process CPU time per env-step (all
threads; robust to other load on the machine, unlike wall time), keeping each
side's best (needs the ``farm`` extra; ``--metrics-only`` runs just this).

    python bench/bench_vec_env.py [--seconds S] [--quick] [--metrics-only]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import threading
import time
from importlib import metadata

import numpy as np
from generals_rl import ExperienceBuffer
from generals_rl.bots import RandomBot
from generals_rl.config import MapConfig
from generals_rl.vec_env import VecEnv

SIDE = 20
MAX_TICKS = 500  # games end here if nobody won, in both engines
PEER_VERSION = "2.5.0"
# Every board exactly 20x20 (the default draws sides from 18..23).
MAP = MapConfig(min_side=SIDE, max_side=SIDE)


def measure_vec_env(
    num_envs: int,
    num_threads: int,
    seconds: float,
    observations: bool,
    action_masks: bool,
    observation_format: str = "float",
) -> dict:
    """Steps with RandomBot actions for ``seconds``; times the policy and the step apart."""
    env = VecEnv(
        num_envs,
        players=2,
        height=SIDE,
        width=SIDE,
        seed=1,
        max_ticks=MAX_TICKS,
        num_threads=num_threads,
        map_config=MAP,
        observations=observations,
        action_masks=action_masks,
        observation_format=observation_format,
    )
    bot = RandomBot(seed=1)
    actions = np.full((num_envs, 2), -1, dtype=np.int32)
    for _ in range(20):  # warm-up: caches, thread wake-ups
        env.step(bot.act(env, out=actions))
    steps, policy_s, step_s = 0, 0.0, 0.0
    clock = time.perf_counter
    start = clock()
    while clock() - start < seconds:
        t0 = clock()
        bot.act(env, out=actions)
        t1 = clock()
        env.step(actions)
        t2 = clock()
        policy_s += t1 - t0
        step_s += t2 - t1
        steps += 1
    total = clock() - start
    env_steps = steps * num_envs
    return {
        "num_envs": num_envs,
        "num_threads": num_threads,
        "observation_format": observation_format,
        "env_steps_per_s": round(env_steps / total),
        "env_only_steps_per_s": round(env_steps / step_s),
        "policy_us_per_env_step": round(1e6 * policy_s / env_steps, 4),
        "step_us_per_env_step": round(1e6 * step_s / env_steps, 4),
        "calls": steps,
    }


def measure_metrics_overhead(
    num_envs: int, num_threads: int, seconds: float, rounds: int = 3
) -> dict:
    """Self-play env-steps per second without and with the farm's metrics (see the module doc)."""
    try:
        from generals_rl.farm import FarmRuntime, count_steps
        from generals_rl.metrics import FarmMetrics
    except ImportError as error:
        return {"num_envs": num_envs, "overhead": None, "reason": str(error)}
    buffer = ExperienceBuffer(SIDE, SIDE, max(200_000, 8 * num_envs * 2), "overwrite")
    env = VecEnv(
        num_envs,
        players=2,
        height=SIDE,
        width=SIDE,
        seed=1,
        max_ticks=MAX_TICKS,
        num_threads=num_threads,
        map_config=MAP,
        observations=False,
        action_masks=False,
        buffer=buffer,
    )
    runtime = FarmRuntime()
    runtime.env, runtime.buffer = env, buffer
    metrics = FarmMetrics(runtime)
    plain_step = env.step
    count_steps(env, runtime, lambda: None)
    counted_step = env.step
    bot = RandomBot(seed=1)
    actions = np.full((num_envs, 2), -1, dtype=np.int32)
    env.reset()

    def run(counting: bool, farm: bool) -> tuple[float, int]:
        """Process CPU seconds per env-step (all threads, the scraper's too: what the
        metrics cost, unlike wall time hardly moved by other processes on the machine)
        with the C++ counters on or off, and with or without the farm's step hook and
        a scrape every second; and the scrapes made."""
        env.set_counting(counting)
        env.step = counted_step if farm else plain_step
        stop, scrapes = threading.Event(), [0]

        def scrape():
            while not stop.wait(1.0):
                metrics.exposition()
                scrapes[0] += 1

        scraper = threading.Thread(target=scrape, daemon=True)
        if farm:
            scraper.start()
        steps, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            env.step(bot.act(env, out=actions))
            steps += 1
        stop.set()
        if farm:
            scraper.join()
        return (time.process_time() - cpu) / (steps * num_envs), scrapes[0]

    for _ in range(20):
        env.step(bot.act(env, out=actions))
    off, counters, on, scrapes = [], [], [], 0
    for _ in range(rounds):  # interleaved, so a change in the machine's load hits all three alike
        off.append(run(False, False)[0])
        counters.append(run(True, False)[0])
        rate, scraped = run(True, True)
        on.append(rate)
        scrapes += scraped
    started = time.perf_counter()
    for _ in range(20):
        metrics.exposition()
    scrape_ms = (time.perf_counter() - started) / 20 * 1000
    env.set_counting(True)
    paired = sorted(b / a - 1 for a, b in zip(off, on, strict=False))
    return {
        "num_envs": num_envs,
        "num_threads": num_threads,
        "cpu_us_per_env_step_without_metrics": round(1e6 * min(off), 4),
        "cpu_us_per_env_step_with_counters_only": round(1e6 * min(counters), 4),
        "cpu_us_per_env_step_with_metrics": round(1e6 * min(on), 4),
        "overhead": round(min(on) / min(off) - 1, 4),  # best against best
        "overhead_counters_only": round(min(counters) / min(off) - 1, 4),
        "overhead_median_of_rounds": round(paired[len(paired) // 2], 4),
        "rounds": rounds,
        "seconds_per_run": seconds,
        "scrapes": scrapes,
        "ms_per_scrape": round(scrape_ms, 3),
    }


def measure_gymnasium_wrapper(seconds: float) -> dict | None:
    try:
        from generals_rl.envs import GeneralsEnv
    except ImportError as error:
        return {"steps_per_s": None, "reason": str(error)}
    env = GeneralsEnv(opponent="random", max_ticks=MAX_TICKS, map_config=MAP)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(1)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        legal = np.flatnonzero(obs["action_mask"])
        obs, _, terminated, truncated, _ = env.step(int(legal[rng.integers(len(legal))]))
        if terminated or truncated:
            obs, _ = env.reset()
        steps += 1
    return {"steps_per_s": round(steps / (time.perf_counter() - start))}


# ---------------------------------------------------------------------------
# the peer: generals-bots


def import_peer():
    """The generals-bots modules, or the reason they cannot be used."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # keep its import chatter out of the JSON
            from generals.core.action import Action, compute_valid_move_mask
            from generals.core.game import Game
            from generals.core.grid import GridFactory
            from generals.envs.gymnasium_generals import GymnasiumGenerals
    except Exception as error:
        return None, f"generals-bots is not importable: {type(error).__name__}: {error}"
    return {
        "Action": Action,
        "mask": compute_valid_move_mask,
        "Game": Game,
        "GridFactory": GridFactory,
        "Gym": GymnasiumGenerals,
    }, None


def peer_random_move(peer, mask: np.ndarray, rng: np.random.Generator):
    """A uniformly random legal full move from a (H, W, 4) mask, or a pass."""
    valid = np.argwhere(mask)
    if len(valid) == 0:
        return peer["Action"](to_pass=True)
    row, col, direction = valid[rng.integers(len(valid))]
    return peer["Action"](False, row, col, direction, False)


def measure_peer_engine(peer, num_envs: int, seconds: float) -> dict:
    """``num_envs`` games of the peer's NumPy engine stepped one after another."""
    agents = ["player_0", "player_1"]
    factory = peer["GridFactory"](
        mode="uniform", min_grid_dims=(SIDE, SIDE), max_grid_dims=(SIDE, SIDE), seed=1
    )
    rng = np.random.default_rng(1)
    games = [peer["Game"](factory.generate(), agents) for _ in range(num_envs)]
    observations = [{a: g.agent_observation(a) for a in agents} for g in games]

    def tick(i: int) -> None:
        game = games[i]
        actions = {a: peer_random_move(peer, peer["mask"](observations[i][a]), rng) for a in agents}
        obs, _ = game.step(actions)
        if game.is_done() or game.time >= MAX_TICKS:
            game = games[i] = peer["Game"](factory.generate(), agents)
            obs = {a: game.agent_observation(a) for a in agents}
        observations[i] = obs

    for i in range(num_envs):  # warm-up (numba compiles on first use)
        for _ in range(3):
            tick(i)
    ticks, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(num_envs):
            tick(i)
        ticks += num_envs
    return {"num_envs": num_envs, "env_steps_per_s": round(ticks / (time.perf_counter() - start))}


def measure_peer_gymnasium(peer, seconds: float) -> dict:
    """The peer's own Gymnasium env (both players' actions per step, masks in info)."""
    agents = ["player_0", "player_1"]
    factory = peer["GridFactory"](
        mode="uniform", min_grid_dims=(SIDE, SIDE), max_grid_dims=(SIDE, SIDE)
    )
    env = peer["Gym"](agents, grid_factory=factory, truncation=MAX_TICKS)
    rng = np.random.default_rng(1)
    _, info = env.reset(seed=1)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = [peer_random_move(peer, info[a]["masks"], rng) for a in agents]
        _, _, terminated, truncated, info = env.step(actions)
        if terminated or truncated:
            _, info = env.reset()
        steps += 1
    return {"steps_per_s": round(steps / (time.perf_counter() - start))}


def measure_peer(sizes: list[int], seconds: float) -> dict:
    try:
        version = metadata.version("generals-bots")
    except metadata.PackageNotFoundError:
        version = None
    peer, reason = import_peer()
    if peer is None:
        return {
            "package": "generals-bots",
            "version": version,
            "engine": None,
            "gymnasium_env": None,
            "reason": reason,
        }
    result = {
        "package": "generals-bots",
        "version": version,
        "how": "its games stepped one after another in Python (it has no batched engine): "
        "Game.step, both players' observations, compute_valid_move_mask per player, "
        "a random legal full move from the mask",
    }
    if version != PEER_VERSION:
        result["note"] = f"expected {PEER_VERSION}, measured {version}"
    result["engine"] = [measure_peer_engine(peer, n, seconds) for n in sizes]
    try:
        result["gymnasium_env"] = measure_peer_gymnasium(peer, seconds)
    except Exception as error:
        result["gymnasium_env"] = {
            "steps_per_s": None,
            "reason": f"{type(error).__name__}: {error}",
        }
    return result


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--quick", action="store_true", help="0.2 s per measurement (a smoke run)")
    parser.add_argument("--metrics-only", action="store_true", help="only the metrics overhead")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds of the metrics overhead"
    )
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else args.seconds
    metrics_overhead = [
        measure_metrics_overhead(
            n,
            t,
            max(seconds, 2.0 if not args.quick else 0.5),
            rounds=2 if args.quick else args.rounds,
        )
        for n, t in ((64, 1), (1024, 1), (1024, 2))
    ]
    if args.metrics_only:
        json.dump(
            {
                "benchmark": "vec_env",
                "metrics_overhead": metrics_overhead,
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return 0
    sizes, threads = [1, 64, 1024], [1, 2]
    began = time.perf_counter()
    load_before = os.getloadavg()

    with_views, compact_views = [], []
    for n in sizes:
        for t in threads:  # side by side, so that the ratio sees the same load
            with_views.append(measure_vec_env(n, t, seconds, True, True))
            compact_views.append(measure_vec_env(n, t, seconds, True, True, "compact"))
    bare = [measure_vec_env(n, t, seconds, False, False) for n in sizes for t in threads]
    largest = sizes[-1]
    compact_ratio = [
        {
            "num_envs": c["num_envs"],
            "num_threads": c["num_threads"],
            "compact_over_float": round(c["env_steps_per_s"] / f["env_steps_per_s"], 2),
        }
        for c, f in zip(compact_views, with_views, strict=True)
    ]
    views_cost = []
    for t in threads:
        full = next(r for r in with_views if r["num_envs"] == largest and r["num_threads"] == t)
        none = next(r for r in bare if r["num_envs"] == largest and r["num_threads"] == t)
        obs_only = measure_vec_env(largest, t, seconds, True, False)
        mask_only = measure_vec_env(largest, t, seconds, False, True)
        base = none["step_us_per_env_step"]
        views_cost.append(
            {
                "num_envs": largest,
                "num_threads": t,
                "step_us_per_env_step_bare": base,
                "observations_and_masks_us_per_env_step": round(
                    full["step_us_per_env_step"] - base, 4
                ),
                "observations_us_per_env_step": round(obs_only["step_us_per_env_step"] - base, 4),
                "masks_us_per_env_step": round(mask_only["step_us_per_env_step"] - base, 4),
                "share_of_step_with_views": round(1 - base / full["step_us_per_env_step"], 3),
            }
        )
    wrapper = measure_gymnasium_wrapper(seconds)
    peer = measure_peer([1, 64], seconds)

    best = max(r["env_steps_per_s"] for r in with_views)
    best_compact = max(r["env_steps_per_s"] for r in compact_views)
    best_bare = max(r["env_steps_per_s"] for r in bare)
    ratio = None
    if peer.get("engine"):
        peer_best = max(r["env_steps_per_s"] for r in peer["engine"])
        same_size = {
            str(p["num_envs"]): round(
                max(r["env_steps_per_s"] for r in with_views if r["num_envs"] == p["num_envs"])
                / p["env_steps_per_s"],
                1,
            )
            for p in peer["engine"]
        }
        ratio = {
            "best_vs_best": round(best / peer_best, 1),
            "same_num_envs_best_threads": same_size,
        }
        if wrapper.get("steps_per_s") and (peer.get("gymnasium_env") or {}).get("steps_per_s"):
            ratio["gymnasium_env"] = round(
                wrapper["steps_per_s"] / peer["gymnasium_env"]["steps_per_s"], 1
            )

    report = {
        "benchmark": "vec_env",
        "workload": {
            "board": f"{SIDE}x{SIDE}",
            "players": 2,
            "max_ticks": MAX_TICKS,
            "policy": "generals_rl.bots.RandomBot (uniform random legal full move, in C++)",
            "env_step": "one tick of one game, both players acting",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "generals_rl": {
            "with_observations_and_masks": with_views,
            "with_compact_observations_and_packed_masks": compact_views,
            "compact_over_float": compact_ratio,
            "without_observations_or_masks": bare,
            "observation_and_mask_cost": views_cost,
            "best_env_steps_per_s": best,
            "best_ticks_per_s_without_views": best_bare,
            "gymnasium_wrapper": wrapper,
            "metrics_overhead": metrics_overhead,
        },
        "peer": peer,
        "ratio_vs_peer": ratio,
        "targets": {
            "env_steps_per_s_with_compact_views": {"target": 1_000_000, "reached": best_compact},
            "env_steps_per_s_with_views": {"target": 500_000, "reached": best},
            "ticks_per_s_without_views": {"target": 5_000_000, "reached": best_bare},
            "ratio_vs_peer_engine": {"target": 100, "reached": ratio and ratio["best_vs_best"]},
            "metrics_overhead": {
                "target": 0.02,
                "reached": max(
                    (m["overhead"] for m in metrics_overhead if m.get("overhead") is not None),
                    default=None,
                ),
            },
        },
        "seconds_per_measurement": seconds,
        "elapsed_s": round(time.perf_counter() - began, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
