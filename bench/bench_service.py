"""Benchmark of the gRPC experience service over loopback, printing JSON.

Throughput: a buffer pre-filled by self-play (heuristic vs random) is streamed
(follow=False, from the oldest) to 1 and 4 consumer processes, decoded to
numpy observation tensors, as raw boards (``decode=False``) or as compact player
views handed to torch without a copy (``compact=True``, then
``generals_rl.torch.as_tensor`` of the distinct views, each row's view indices and
the packed masks: what a trainer feeds its network, gathering rows on its device;
"compact_gathered" gathers each row's views on the consumer's CPU instead), with
and without zstd. Bytes on the wire per experience are the serialized batch
messages.

Where the compact path's time goes: each stage of one batch timed in this
process (reading the raw rows, making the views and the message, parsing
without copying the payload, unpacking, zstd both ways), in microseconds of
CPU time per experience; and each throughput run's CPU time per
experience in the serving process and in the consumers.

Latency: a producer appends at a fixed rate while one consumer process follows
with batch_size 256; each experience's latency is the time from the end of the
step that appended it to the moment its batch is handed to the caller (both
clocks are the machine's monotonic clock).

In-process peers in the same run: reading the buffer directly through a
cursor, compact and decoded, with no network or serialization.

    python bench/bench_service.py [--experiences 1000000] [--repeats 1] [--height 20 --width 20]
        [--compact-only]   (the compact runs, and the raw and decoded ones beside them)
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


def _wire_bytes(server, buffer, batch_size: int, compression: bool, compact: bool) -> float:
    """Bytes per experience of the batch messages the server sends (the same code path)."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=1) if compression else None
    cursor = buffer.cursor(start="oldest")
    total = count = 0
    while True:
        if compact:
            batch = cursor.read_compact(batch_size, indexed=True)
        else:
            batch = cursor.read_raw(batch_size)
        if not len(batch):
            break
        message = server.encoder.batch_message(batch, 0, batch.next_sequence, compressor)
        total += len(message) + 5  # + gRPC message header
        count += len(batch)
    cursor.close()
    return total / count


def _run_name(form: str, batch_size: int, compression: bool) -> str:
    return f"{form}_batch_{batch_size}_{'zstd' if compression else 'plain'}"


_ROW_VIEWS = ("state_tiles", "state_armies", "next_state_tiles", "next_state_armies")


def _trainer_tensors(batch, as_tensor) -> list:
    """The tensors a trainer takes from a compact batch: the distinct views, each
    row's view indices and the packed masks (it gathers rows on its own device; the
    masks are made from the views by the consumer when the stream does not send them)."""
    views = batch.views
    arrays = (views.tiles, views.armies, views.state_view, views.next_state_view)
    return [as_tensor(array) for array in (*arrays, batch.action_mask)]


def _compact_stages(server, buffer, batch_size: int, compression: bool) -> dict:
    """Microseconds per experience of each stage of the compact path, one batch at a
    time in this process (no network): where the time goes. CPU time of the
    process (a pool's threads count too), so that other work on the machine
    does not count."""
    import zstandard
    from generals_rl._proto import experience_pb2 as pb
    from generals_rl.service.compact_packing import unpack_compact
    from generals_rl.service.consumer import _SPLIT_BATCH
    from generals_rl.torch import as_tensor

    compressor = zstandard.ZstdCompressor(level=1) if compression else None
    decompressor = zstandard.ZstdDecompressor()
    stages = dict.fromkeys(
        [
            "read_views",  # the server's read: the records and their distinct views
            "message",  # keyframes and deltas, packed
            "parse_without_payload_copy",
            "unpack_to_compact_batch",
            "masks_from_views",
            "as_tensor",
            "gather_rows",  # the per-row columns, for a trainer that wants them on the CPU
        ],
        0.0,
    )
    cursor = buffer.cursor(start="oldest")
    count = 0
    while True:
        t0 = time.process_time()
        read = cursor.read_compact(batch_size, indexed=True)
        if not len(read):
            break
        t1 = time.process_time()
        data = server.encoder.batch_message(read, 0, read.next_sequence, compressor)
        t2 = time.process_time()
        message, payload = _SPLIT_BATCH(data)
        t3 = time.process_time()
        batch = unpack_compact(message.packed, decompressor, payload)
        t4 = time.process_time()
        _ = batch.action_mask  # made from the views on first read
        t5 = time.process_time()
        _trainer_tensors(batch, as_tensor)
        t6 = time.process_time()
        for name in _ROW_VIEWS:
            getattr(batch, name)
        t7 = time.process_time()
        assert message.packed.layout == pb.PACKED_LAYOUT_COMPACT
        spans = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)
        for name, seconds in zip(stages, spans, strict=True):
            stages[name] += seconds
        count += len(read)
    cursor.close()
    return {
        "batch_size": batch_size,
        "compression": compression,
        **{f"{name}_us": round(seconds / count * 1e6, 3) for name, seconds in stages.items()},
    }


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
    address: str, consumers: int, batch_size: int, compression: bool, form: str, repeats: int
) -> dict:
    """One stream of everything per consumer, ``repeats`` times: each run's total
    rate, and the medians of the runs."""
    worker = ["throughput", address, str(batch_size), str(int(compression)), form]
    runs = []
    for _ in range(repeats):
        server_cpu = time.process_time()  # this process serves: the rest of it is idle
        results = _run_workers([worker] * consumers)
        server_cpu = time.process_time() - server_cpu
        total = sum(r["experiences"] for r in results)
        runs.append(
            {
                "rate": total / max(r["seconds"] for r in results),
                "each": [round(r["experiences"] / r["seconds"]) for r in results],
                "server_cpu_us": server_cpu / total * 1e6,
                "consumer_cpu_us": sum(r["cpu_seconds"] for r in results) / total * 1e6,
            }
        )

    def middle(name: str) -> float:
        return float(np.median([run[name] for run in runs]))

    return {
        # CPU time per experience of the serving process and of each consumer
        # process: what the machine's load does not change much
        "server_cpu_us": round(middle("server_cpu_us"), 3),
        "consumer_cpu_us": round(middle("consumer_cpu_us"), 3),
        "consumers": consumers,
        "batch_size": batch_size,
        "compression": compression,
        "form": form,
        "experiences_per_second_total": round(middle("rate")),  # the median run's
        "runs": [
            {"experiences_per_second_total": round(run["rate"]), "each_consumer": run["each"]}
            for run in runs
        ],
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
            batch_size, compression, form = int(argv[2]), argv[3] == "1", argv[4]
            if form.startswith("compact"):
                from generals_rl.torch import as_tensor
            start, cpu, count = time.perf_counter(), time.process_time(), 0
            for batch in consumer.stream_experiences(
                follow=False,
                batch_size=batch_size,
                compression=compression,
                decode=form == "decoded",
                compact=form.startswith("compact"),
                start="oldest",
            ):
                if form == "compact":  # what a trainer feeds its network
                    _trainer_tensors(batch, as_tensor)
                elif form == "compact_gathered":
                    for name in (*_ROW_VIEWS, "action_mask"):
                        as_tensor(getattr(batch, name))
                count += len(batch)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            print(json.dumps({"experiences": count, "seconds": seconds, "cpu_seconds": cpu}))
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
    # Each run streams them all: long enough that a stream's start (the consumer's
    # first batches, recycled memory not yet there) does not set the figure.
    parser.add_argument("--experiences", type=int, default=1_000_000)
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
    parser.add_argument(
        "--repeats", type=int, default=1, help="streams of each throughput run (median reported)"
    )
    parser.add_argument(
        "--compact-only",
        action="store_true",
        help="only the compact runs and one consumer's raw and decoded runs beside them",
    )
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
            _run_name("compact" if compact else "raw", size, compression): round(
                _wire_bytes(server, buffer, size, compression, compact), 1
            )
            for compact in (False, True)
            for size in (256, 1024, 8192)
            for compression in (False, True)
        },
        "compact_stages": [
            _compact_stages(server, buffer, 8192, compression) for compression in (False, True)
        ],
        "throughput": [],
    }
    compact_runs = [(1, size, z, "compact") for size in (1024, 8192) for z in (False, True)]
    compact_runs += [(1, 16384, False, "compact"), (1, 8192, False, "compact_gathered")]
    compact_runs += [(1, 8192, False, "raw"), (1, 1024, False, "decoded")]
    if args.compact_only:
        runs = compact_runs
    else:
        runs = [
            (c, 1024, z, form)
            for c in (1, 4)
            for z in (False, True)
            for form in ("decoded", "raw", "compact")
        ]
        runs += [(1, 256, False, "decoded"), (1, 256, False, "raw"), *compact_runs]
    for consumers, batch_size, compression, form in [] if args.latency_only else runs:
        report["throughput"].append(
            _throughput(server.address, consumers, batch_size, compression, form, args.repeats)
        )
    server.stop()
    if args.compact_only:
        print(json.dumps(report, indent=2))
        return

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
