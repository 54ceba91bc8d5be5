"""Replay sampling for a learner: prioritized and uniform minibatches from the buffer,
side by side with TorchRL and cpprb in one run (``pip install '.[bench]'``; a peer
that is not installed is reported as such and skipped).

Workload: 20x20 1v1 self-play experiences (RandomBot), minibatches of 256 decoded to
float32 observations, next observations and action masks.

(a) prioritized sample + priority update of each minibatch, minibatches/s: ours
    decoded with 3-step returns (their bootstrap observations decoded too), ours
    decoded without n-step (the peers' work), ours compact (``raw=True``, for a
    trainer that expands on its own device); TorchRL's
    ``TensorDictPrioritizedReplayBuffer`` over ``LazyTensorStorage`` and cpprb's
    ``PrioritizedReplayBuffer`` holding the same experiences as float arrays (without
    n-step, which would add one more observation per item to their storage). Targets:
    >= 2x both peers decoded, >= 10x compact.
(b) uniform sampling of decoded minibatches, minibatches/s (target >= 1.5x both).
(c) time per prioritized minibatch (sample + update, decoded, 3-step) at 10^4 .. 10^7
    resident (``--max-resident``; target: all within 2x of each other).
(d) bytes per resident experience: ours with the priority trees built (target <= 1 KB),
    the peers' resident-set growth per experience.
(e) producers: env-steps/s of a VecEnv collecting into a 10^6 ring without priority
    trees, with them, and with them while a sampler thread samples and updates
    continuously (target: <= 10% slower), and the producers' time in the trees'
    critical section. On a machine with fewer cores than the env's threads plus the
    sampler's, the sampler takes CPU time from the producers whatever the locking.

The peers hold ``--peer-resident`` experiences (100,000 by default: about 3 GB each at
30 KB per experience; the issue's 400,000 would need 12 GB per peer on a shared
machine). Their sampling cost is a gather of random rows out of memory far larger than
the caches, so it does not depend much on that number; ours holds 10^6.

TorchRL's prioritized sampler needs its C++ extension (``torchrl._torchrl``, the segment
trees). The TorchRL wheels on PyPI are built against other torch releases than 2.13
(0.13.x older, 0.14.x newer): with torch 2.13 the extension fails to load (undefined
symbols) and the prioritized buffer raises "SumSegmentTreeFp32 is not available". Build
it from TorchRL's ``torchrl/csrc`` (``pybind.cpp`` and ``utils.cpp``) against the
installed torch and put it in place of the wheel's; ``torchrl.extension`` in the output
says whether it loaded.

Prints one JSON document; figures are medians of ``--rounds`` rounds, with the CPU time
per minibatch of all the process's threads beside the wall time (on a shared machine the
wall figures depend on the load, reported at start and end).

    nice python bench/bench_replay_sampling.py [--seconds S] [--rounds N]
        [--peer-resident N] [--max-resident N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import threading
import time

import numpy as np
from bench_buffer import NUM_ENVS, SIDE, THREADS, make_env, rss_bytes
from generals_rl import ExperienceBuffer
from generals_rl.bots import RandomBot

BATCH = 256
ALPHA, BETA, N_STEP, GAMMA = 0.6, 0.4, 3, 0.99


def filled(resident: int, seed: int = 1) -> ExperienceBuffer:
    """An overwrite ring of `resident` experiences, filled (and lapped once) by self-play."""
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=resident, policy="overwrite")
    env = make_env(NUM_ENVS, buffer, observations=False, action_masks=False)
    bot = RandomBot(seed=seed)
    actions = np.full((NUM_ENVS, 2), -1, dtype=np.int32)
    env.reset()
    while buffer.head < resident + min(resident, 1 << 20):
        env.step(bot.act(env, out=actions))
    return buffer


def rate(step, seconds: float, rounds: int) -> dict:
    """Calls of `step` per second: the median of `rounds` timed rounds (after a warm-up)."""
    for _ in range(3):
        step()
    values, cpu = [], []
    for _ in range(rounds):
        calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            step()
            calls += 1
        values.append(calls / (time.perf_counter() - start))
        cpu.append((time.process_time() - cpu_start) / calls)
    median = statistics.median(values)
    return {
        "minibatches_per_s": round(median, 1),
        "experiences_per_s": round(median * BATCH),
        "ms_per_minibatch": round(1000 / median, 3),
        # CPU time of all the process's threads per minibatch: what a machine to
        # itself would turn into throughput (the wall figures depend on the load)
        "cpu_ms_per_minibatch": round(1000 * statistics.median(cpu), 3),
        "all_rounds": [round(v, 1) for v in values],
    }


def new_priorities(rng: np.random.Generator) -> np.ndarray:
    return (np.abs(rng.standard_normal(BATCH)) + 1e-3).astype(np.float32)


# ---- ours ----------------------------------------------------------------------


def ours_prioritized_step(buffer: ExperienceBuffer, raw: bool = False, n_step: int | None = N_STEP):
    rng = np.random.default_rng(0)
    seeds = iter(range(1 << 62))

    def step():
        batch = buffer.sample(
            BATCH,
            next(seeds),
            prioritized=True,
            alpha=ALPHA,
            beta=BETA,
            n_step=n_step,
            gamma=GAMMA,
            raw=raw,
        )
        buffer.update_priorities(batch.sequence, new_priorities(rng))

    return step


def ours_uniform_step(buffer: ExperienceBuffer):
    seeds = iter(range(1 << 62))
    return lambda: buffer.sample(BATCH, next(seeds))


# ---- peers -----------------------------------------------------------------------


def decoded_chunks(buffer: ExperienceBuffer, total: int, chunk: int = 4096):
    """The buffer's resident experiences, decoded, in chunks of `chunk`."""
    cursor = buffer.cursor(start="oldest")
    given = 0
    while given < total:
        batch = cursor.read(min(chunk, total - given))
        if len(batch) == 0:
            return
        given += len(batch)
        yield batch
    cursor.close()


def peer_rounds(
    buffer: ExperienceBuffer, resident: int, seconds: float, rounds: int, make, add, steps
) -> dict:
    """For "prioritized" and "uniform" in turn: a peer buffer ``make(name)`` filled with
    the buffer's experiences through ``add(rb, batch)``, then sampled by
    ``steps[name](rb, rng)``."""
    out = {}
    for name in ("prioritized", "uniform"):
        before = rss_bytes()
        rb = make(name)
        start = time.perf_counter()
        for batch in decoded_chunks(buffer, resident):
            add(rb, batch)
        ingest = resident / (time.perf_counter() - start)
        grown = rss_bytes() - before
        rng = np.random.default_rng(0)
        out[name] = {
            **rate(lambda rb=rb, step=steps[name], rng=rng: step(rb, rng), seconds, rounds),
            "ingest_experiences_per_s": round(ingest),
            "rss_growth_per_experience": round(grown / resident),
        }
        del rb
        gc.collect()
    return out


def torchrl_peer(buffer: ExperienceBuffer, resident: int, seconds: float, rounds: int) -> dict:
    try:
        import torch
        import torchrl
        from tensordict import TensorDict
        from torchrl.data import (
            LazyTensorStorage,
            TensorDictPrioritizedReplayBuffer,
            TensorDictReplayBuffer,
        )
    except ImportError as exc:
        return {"skipped": f"not installed ({exc})"}
    import logging

    logging.getLogger("torchrl").setLevel(logging.WARNING)  # it logs to stdout

    def make(name):
        if name == "prioritized":
            return TensorDictPrioritizedReplayBuffer(
                alpha=ALPHA,
                beta=BETA,
                storage=LazyTensorStorage(resident),
                batch_size=BATCH,
                priority_key="td_error",
            )
        return TensorDictReplayBuffer(storage=LazyTensorStorage(resident), batch_size=BATCH)

    def add(rb, batch):
        columns = {
            "observation": batch.state,
            "next_observation": batch.next_state,
            "action_mask": batch.action_mask,
            "action": batch.action,
            "reward": batch.reward,
            "done": batch.terminated,
        }
        rb.extend(
            TensorDict(
                {k: torch.from_numpy(v) for k, v in columns.items()}, batch_size=[len(batch)]
            )
        )

    def prioritized(rb, rng):
        td = rb.sample()
        rb.update_priority(td["index"], torch.from_numpy(new_priorities(rng)))

    steps = {"prioritized": prioritized, "uniform": lambda rb, rng: rb.sample()}
    try:
        import torchrl._torchrl

        extension = "loaded"
    except ImportError as exc:
        extension = f"does not load: {exc}"[:200]
    return {
        "version": f"torchrl {torchrl.__version__}, torch {torch.__version__}",
        "extension": extension,
        "resident": resident,
        **peer_rounds(buffer, resident, seconds, rounds, make, add, steps),
    }


def cpprb_peer(buffer: ExperienceBuffer, resident: int, seconds: float, rounds: int) -> dict:
    try:
        import cpprb
    except ImportError as exc:
        return {"skipped": f"not installed ({exc})"}
    from importlib.metadata import version

    env_dict = {
        "obs": {"shape": (9, SIDE, SIDE), "dtype": np.float32},
        "next_obs": {"shape": (9, SIDE, SIDE), "dtype": np.float32},
        "mask": {"shape": (SIDE * SIDE * 4,), "dtype": np.bool_},
        "act": {"dtype": np.int32},
        "rew": {"dtype": np.float32},
        "done": {"dtype": np.bool_},
    }

    def make(name):
        if name == "prioritized":
            return cpprb.PrioritizedReplayBuffer(resident, env_dict, alpha=ALPHA)
        return cpprb.ReplayBuffer(resident, env_dict)

    def add(rb, batch):
        rb.add(
            obs=batch.state,
            next_obs=batch.next_state,
            mask=batch.action_mask,
            act=batch.action,
            rew=batch.reward,
            done=batch.terminated,
        )

    def prioritized(rb, rng):
        sample = rb.sample(BATCH, beta=BETA)
        rb.update_priorities(sample["indexes"], new_priorities(rng))

    steps = {"prioritized": prioritized, "uniform": lambda rb, rng: rb.sample(BATCH)}
    return {
        "version": f"cpprb {version('cpprb')}",
        "resident": resident,
        **peer_rounds(buffer, resident, seconds, rounds, make, add, steps),
    }


# ---- scaling, memory, producers ---------------------------------------------------


def scaling(max_resident: int, seconds: float, rounds: int) -> dict:
    out = {}
    size = 10_000
    while size <= max_resident:
        buffer = filled(size, seed=5)
        step = ours_prioritized_step(buffer)
        measured = rate(step, seconds, rounds)
        stats = buffer.stats()
        out[str(size)] = {
            "ms_per_minibatch": measured["ms_per_minibatch"],
            "cpu_ms_per_minibatch": measured["cpu_ms_per_minibatch"],
            "bytes_per_experience": round(stats["bytes_used"] / stats["resident"], 1),
            "priority_tree_bytes": stats["priorities"]["bytes"],
        }
        del buffer, step
        gc.collect()
        size *= 10
    spread = {}
    for key in ("ms_per_minibatch", "cpu_ms_per_minibatch"):
        times = [v[key] for v in out.values()]
        spread[key] = round(max(times) / min(times), 2)
    return {"by_resident": out, "max_over_min": spread, "target_max_over_min": 2.0}


class Sampler:
    """A thread sampling prioritized minibatches and updating their priorities nonstop."""

    def __init__(self, buffer: ExperienceBuffer, raw: bool) -> None:
        self.step = ours_prioritized_step(buffer, raw=raw)
        self.minibatches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self.minibatches += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def producers(resident: int, seconds: float, rounds: int) -> dict:
    """env-steps/s alone and with a concurrent sampler, alternating each round."""
    buffer = filled(resident, seed=7)
    buffer.sample(BATCH, 0, prioritized=True, alpha=ALPHA)  # builds the trees
    env = make_env(NUM_ENVS, buffer, observations=False, action_masks=False)
    bot = RandomBot(seed=8)
    actions = np.full((NUM_ENVS, 2), -1, dtype=np.int32)
    env.reset()
    # the same without priority trees: what entering experiences into them costs producers
    plain_env = make_env(NUM_ENVS, filled(resident, seed=9), observations=False, action_masks=False)
    plain_env.reset()
    configs = ("alone_without_priorities", "alone", "with_raw_sampler", "with_decoding_sampler")
    results: dict[str, list[float]] = {name: [] for name in configs}
    sampled: dict[str, list[float]] = {name: [] for name in configs[2:]}
    before = buffer.stats()["priorities"]
    for _ in range(rounds):
        for name in configs:
            sampler = (
                Sampler(buffer, raw=name == "with_raw_sampler") if name.startswith("with") else None
            )
            stepped = plain_env if name == "alone_without_priorities" else env
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                stepped.step(bot.act(stepped, out=actions))
                steps += 1
            elapsed = time.perf_counter() - start
            if sampler:
                sampler.stop()
                sampled[name].append(sampler.minibatches / elapsed)
            results[name].append(steps * NUM_ENVS / elapsed)
    after = buffer.stats()["priorities"]
    sections = after["producer_sections"] - before["producer_sections"]
    base = statistics.median(results["alone"])
    out = {
        "workload": f"{NUM_ENVS} games {SIDE}x{SIDE} 1v1, RandomBot, observations off, "
        f"{THREADS} env threads, ring of {resident} with priorities, {os.cpu_count()} cores",
    }
    for name in configs:
        out[name] = {
            "env_steps_per_s": round(statistics.median(results[name])),
            "all_rounds": [round(v) for v in results[name]],
        }
        if name.startswith("with"):  # against producers alone on the same buffer
            out[name]["ratio"] = round(statistics.median(results[name]) / base, 3)
            out[name]["sampler_minibatches_per_s"] = round(statistics.median(sampled[name]), 1)
    without = statistics.median(results["alone_without_priorities"])
    out["alone"]["ratio_to_without_priorities"] = round(base / without, 3)
    out["critical_section"] = {
        "what": (
            "a producer's time entering one game-tick's experiences into the trees, "
            "lock wait included"
        ),
        "sections": sections,
        "mean_ns": round(
            (after["producer_ns_total"] - before["producer_ns_total"]) / max(sections, 1)
        ),
        "max_ns": after["producer_ns_max"],
        "longest_update_or_alpha_change_hold_ns": after["updater_ns_max"],
    }
    out["target_ratio"] = 0.9
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--resident", type=int, default=1_000_000, help="our ring for (a), (b), (d)"
    )
    parser.add_argument("--peer-resident", type=int, default=100_000)
    parser.add_argument(
        "--max-resident", type=int, default=1_000_000, help="largest size of (c): 10^7 needs ~7 GB"
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: peers,scaling,producers"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs on small buffers, for a smoke test"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.resident, args.peer_resident, args.max_resident = (
            0.2,
            1,
            20_000,
            5_000,
            10_000,
        )
    skip = set(filter(None, args.skip.split(",")))
    result: dict = {
        "benchmark": "bench_replay_sampling",
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "batch": BATCH,
        "alpha_beta_nstep_gamma": [ALPHA, BETA, N_STEP, GAMMA],
    }
    seconds, rounds = args.seconds, args.rounds
    buffer = filled(args.resident)
    ours = {
        "resident": buffer.stats()["resident"],
        "prioritized_decoded_nstep": rate(ours_prioritized_step(buffer), seconds, rounds),
        "prioritized_decoded": rate(ours_prioritized_step(buffer, n_step=None), seconds, rounds),
        "prioritized_compact": rate(
            ours_prioritized_step(buffer, raw=True, n_step=None), seconds, rounds
        ),
        "prioritized_compact_nstep": rate(ours_prioritized_step(buffer, raw=True), seconds, rounds),
        "uniform_decoded": rate(ours_uniform_step(buffer), seconds, rounds),
    }
    stats = buffer.stats()
    ours["bytes_per_experience_with_priorities"] = round(stats["bytes_used"] / stats["resident"], 1)
    result["ours"] = ours
    if "peers" not in skip:
        del buffer
        gc.collect()
        source = filled(args.peer_resident, seed=3)
        result["torchrl"] = torchrl_peer(source, args.peer_resident, seconds, rounds)
        gc.collect()
        result["cpprb"] = cpprb_peer(source, args.peer_resident, seconds, rounds)
        del source
        gc.collect()
        ratios = {}
        for peer in ("torchrl", "cpprb"):
            if "prioritized" not in result[peer]:
                continue
            p, u = (
                result[peer]["prioritized"]["minibatches_per_s"],
                result[peer]["uniform"]["minibatches_per_s"],
            )
            ratios[peer] = {
                "prioritized_decoded_nstep": round(
                    ours["prioritized_decoded_nstep"]["minibatches_per_s"] / p, 2
                ),
                "prioritized_decoded": round(
                    ours["prioritized_decoded"]["minibatches_per_s"] / p, 2
                ),
                "prioritized_compact": round(
                    ours["prioritized_compact"]["minibatches_per_s"] / p, 2
                ),
                "uniform_decoded": round(ours["uniform_decoded"]["minibatches_per_s"] / u, 2),
            }
        result["ours_over_peer"] = ratios
        result["targets"] = {
            "prioritized_decoded": 2.0,
            "prioritized_compact": 10.0,
            "uniform_decoded": 1.5,
        }
    if "scaling" not in skip:
        result["scaling"] = scaling(args.max_resident, seconds, rounds)
    if "producers" not in skip:
        result["producers"] = producers(args.resident, seconds, rounds)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
