"""Benchmark of the gRPC experience service over loopback, printing JSON.

Throughput: a buffer pre-filled by self-play (heuristic vs random) is streamed
(follow=False, from the oldest) to 1 and 4 consumer processes, decoded to
numpy observation tensors or left compact (``decode=False``), with and without
zstd. Bytes on the wire per experience are the serialized batch messages.

Latency: a producer appends at a fixed rate while one consumer process follows
with batch_size 256; each experience's latency is the time from the end of the
step that appended it to the moment its batch is handed to the caller (both
clocks are the machine's monotonic clock).

In-process peers in the same run: reading the buffer directly through a
cursor, compact and decoded, with no network or serialization.

    python bench/bench_service.py [--experiences 200000] [--height 20 --width 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _fill(buffer, count: int, seed: int = 1) -> None:
    from generals_rl import VecEnv
    from generals_rl.bots import HeuristicBot, RandomBot

    env = VecEnv(
        64,
        2,
        buffer.height,
        buffer.width,
        seed=seed,
        observations=False,
        action_masks=False,
        buffer=buffer,
    )
    env.reset()
    heuristic, random_bot = HeuristicBot(), RandomBot(seed)
    actions = np.full((env.num_envs, 2), -1, dtype=np.int32)
    while buffer.head < count:
        heuristic.act(env, players=[0], out=actions)
        random_bot.act(env, players=[1], out=actions)
        env.step(actions)


def _in_process(buffer, batch_size: int) -> dict:
    """Cursor reads in this process, no network: the ceilings for the service."""
    result = {}
    for name, decode in (("compact", False), ("decoded", True)):
        cursor = buffer.cursor(start="oldest")
        start, count = time.perf_counter(), 0
        while True:
            batch = cursor.read(batch_size) if decode else cursor.read_raw(batch_size)
            if not len(batch):
                break
            count += len(batch)
        cursor.close()
        result[f"{name}_experiences_per_second"] = round(count / (time.perf_counter() - start))
    return result


def _wire_bytes(server, buffer, batch_size: int, compression: bool) -> float:
    """Bytes per experience of the batch messages the server sends (the same code path)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1) if compression else None
    cursor = buffer.cursor(start="oldest")
    total = count = 0
    while True:
        raw = cursor.read_raw(batch_size)
        if not len(raw):
            break
        total += (
            len(server.encoder.batch_message(raw, 0, raw.next_sequence, compressor)) + 5
        )  # + gRPC message header
        count += len(raw)
    cursor.close()
    return total / count


def _run_workers(args: list[list[str]]) -> list[dict]:
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", *a], stdout=subprocess.PIPE, text=True
        )
        for a in args
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        if process.returncode:
            raise RuntimeError(f"worker failed ({process.returncode}): {out}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _throughput(
    address: str, consumers: int, batch_size: int, compression: bool, decode: bool
) -> dict:
    worker = ["throughput", address, str(batch_size), str(int(compression)), str(int(decode))]
    results = _run_workers([worker] * consumers)
    seconds = max(r["seconds"] for r in results)
    total = sum(r["experiences"] for r in results)
    return {
        "consumers": consumers,
        "batch_size": batch_size,
        "compression": compression,
        "decoded": decode,
        "experiences_per_second_each": [round(r["experiences"] / r["seconds"]) for r in results],
        "experiences_per_second_total": round(total / seconds),
    }


def _latency(buffer, server, rate: float, seconds: float, decode: bool, wait_ms: int) -> dict:
    """p50/p99/max milliseconds from append to delivery under follow, batch_size 256."""
    from generals_rl import VecEnv
    from generals_rl.bots import RandomBot

    env = VecEnv(
        16,
        2,
        buffer.height,
        buffer.width,
        seed=7,
        observations=False,
        action_masks=False,
        buffer=buffer,
        num_threads=1,
    )
    env.reset()
    bot = RandomBot(7)
    worker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            "latency",
            server.address,
            "256",
            str(int(decode)),
            str(wait_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the consumer connects and starts following
    appended: list[tuple[int, float]] = []
    start = time.monotonic()
    produced_from = buffer.head
    while time.monotonic() - start < seconds:
        env.step(bot.act(env))
        appended.append((buffer.head, time.monotonic()))
        ahead = (buffer.head - produced_from) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    time.sleep(0.5)
    server.stop(grace=5)  # the follow stream ends after sending everything
    out, _ = worker.communicate(timeout=120)
    batches = json.loads(out.strip().splitlines()[-1])["batches"]
    heads = np.array([h for h, _ in appended], dtype=np.int64)
    times = np.array([t for _, t in appended])
    latencies = []
    for first, last, delivered in batches:
        sequences = np.arange(first, last + 1)
        sequences = sequences[sequences >= produced_from]
        at = np.searchsorted(heads, sequences, side="right")
        known = at < len(times)
        latencies.append(delivered - times[at[known]])
    ms = np.concatenate(latencies) * 1000
    return {
        "decoded": decode,
        "batch_size": 256,
        "max_batch_wait_ms": wait_ms,
        "rate_experiences_per_second": round(len(ms) / seconds),
        "experiences": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


# ---- consumer processes ------------------------------------------------------------


def _worker(argv: list[str]) -> None:
    from generals_rl.service import ExperienceConsumer

    kind, address = argv[0], argv[1]
    with ExperienceConsumer(address) as consumer:
        if kind == "throughput":
            batch_size, compression, decode = int(argv[2]), argv[3] == "1", argv[4] == "1"
            start, count = time.perf_counter(), 0
            for batch in consumer.stream_experiences(
                follow=False,
                batch_size=batch_size,
                compression=compression,
                decode=decode,
                start="oldest",
            ):
                count += len(batch)
            print(json.dumps({"experiences": count, "seconds": time.perf_counter() - start}))
        else:
            batch_size, decode, wait_ms = int(argv[2]), argv[3] == "1", int(argv[4])
            batches = []
            stream = consumer.stream_experiences(
                follow=True,
                batch_size=batch_size,
                decode=decode,
                start="newest",
                max_batch_wait_ms=wait_ms,
            )
            for batch in stream:
                if len(batch):
                    batches.append(
                        (int(batch.sequence[0]), int(batch.sequence[-1]), time.monotonic())
                    )
            print(json.dumps({"batches": batches}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiences", type=int, default=200_000)
    parser.add_argument("--height", type=int, default=20)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument(
        "--latency-rate", type=float, default=20_000, help="experiences/s appended while following"
    )
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--wait-ms", type=int, default=5, help="max_batch_wait_ms of the following consumer"
    )
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()

    from generals_rl import ExperienceBuffer
    from generals_rl.service import ExperienceServer

    buffer = ExperienceBuffer(
        args.height, args.width, capacity=args.experiences + 70_000, policy="overwrite"
    )
    _fill(buffer, args.experiences)
    server = ExperienceServer(buffer, "127.0.0.1:0").start()
    report = {
        "benchmark": "experience service over loopback",
        "cpu_count": os.cpu_count(),
        "board": f"{args.height}x{args.width}",
        "players": 2,
        "experiences_streamed": buffer.head,
        "in_process_peer": {"batch_size": 1024, **_in_process(buffer, 1024)},
        "bytes_per_experience": {
            f"batch_{size}_{'zstd' if compression else 'plain'}": round(
                _wire_bytes(server, buffer, size, compression), 1
            )
            for size in (256, 1024)
            for compression in (False, True)
        },
        "throughput": [],
    }
    runs = [(c, 1024, z, d) for c in (1, 4) for z in (False, True) for d in (True, False)]
    runs += [(1, 256, False, True), (1, 256, False, False)]
    for consumers, batch_size, compression, decode in [] if args.latency_only else runs:
        report["throughput"].append(
            _throughput(server.address, consumers, batch_size, compression, decode)
        )
    server.stop()

    report["latency"] = []
    for decode, rate in (
        (True, args.latency_rate),
        (False, args.latency_rate),
        (True, args.latency_rate / 2),
    ):
        latency_buffer = ExperienceBuffer(
            args.height, args.width, capacity=500_000, policy="overwrite"
        )
        latency_server = ExperienceServer(latency_buffer, "127.0.0.1:0").start()
        try:
            report["latency"].append(
                _latency(
                    latency_buffer, latency_server, rate, args.latency_seconds, decode, args.wait_ms
                )
            )
        finally:
            latency_server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
