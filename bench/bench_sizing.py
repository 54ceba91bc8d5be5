"""The figures a farm is sized from, measured on 20x20 1v1 self-play (heuristic
against random, as `generals-rl selfplay` plays by default), and what they come
to at 10 and 1,000 actor pods (docs/scaling.md):

- memory per million resident experiences (the buffer's bytes, and the
  process's resident set growth while it fills);
- experiences per core per second (self-play into the buffer on one stepping
  thread, the bots included);
- storage bytes per experience (Parquet, as the farm writes it) and so per hour;
- network bytes per experience a trainer receives (gRPC stream messages, packed,
  with and without zstd) and so per second.

    python bench/bench_sizing.py [--experiences N] [--seconds S] [--cores-per-pod C]
                                 [--buffer-per-pod N] [--pods 10,1000]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable

from generals_rl import ExperienceBuffer
from generals_rl._proto import experience_pb2 as pb
from generals_rl._proto import experience_pb2_grpc as pb_grpc
from generals_rl.selfplay import SelfPlay, SelfPlayConfig
from generals_rl.service import ExperienceServer
from generals_rl.storage import BufferSink, open_writer

SIDE = 20
MILLION = 1_000_000


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def play(buffer: ExperienceBuffer, until: Callable[[], bool], threads: int = 1):
    """Self-play into ``buffer`` until ``until()`` holds (checked every 10 ms)."""
    config = SelfPlayConfig(games=None, num_envs=64, height=SIDE, width=SIDE, num_threads=threads)
    stop = threading.Event()

    def watch():
        while not stop.wait(0.01):
            if until():
                stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return SelfPlay(config, buffer).run(stop)


def filled(buffer: ExperienceBuffer, experiences: int) -> Callable[[], bool]:
    return lambda: buffer.head >= experiences


def memory(experiences: int) -> dict:
    before = resident_bytes()
    buffer = ExperienceBuffer(SIDE, SIDE, experiences, "overwrite")
    play(buffer, filled(buffer, experiences))
    stats = buffer.stats()
    grown = resident_bytes() - before
    return {
        "resident_experiences": int(stats["resident"]),
        "buffer_bytes_per_million": round(stats["bytes_used"] / stats["resident"] * MILLION),
        "process_growth_bytes_per_million": round(grown / stats["resident"] * MILLION),
    }


def throughput(seconds: float) -> dict:
    buffer = ExperienceBuffer(SIDE, SIDE, 4 * MILLION, "overwrite")
    deadline = time.monotonic() + seconds
    cpu = time.process_time()
    summary = play(buffer, lambda: time.monotonic() >= deadline)
    cpu = time.process_time() - cpu
    return {
        "seconds": round(summary.seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "experiences": summary.experiences,
        # Per CPU second of this process (all its threads): what a dedicated core gives,
        # however busy the machine was; the wall-clock rate is what this run got.
        "experiences_per_core_second": round(summary.experiences / cpu),
        "experiences_per_wall_second": round(summary.experiences_per_second),
        "mean_game_length": round(summary.mean_game_length, 1),
    }


def storage(experiences: int) -> dict:
    buffer = ExperienceBuffer(SIDE, SIDE, experiences + 4096, "block")
    with tempfile.TemporaryDirectory() as directory:
        sink = BufferSink(buffer, open_writer("parquet", directory)).start()
        play(buffer, filled(buffer, experiences))
        sink.stop()
        stored = sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(directory)
            for name in names
        )
    return {
        "experiences": int(buffer.head),
        "parquet_bytes_per_experience": round(stored / buffer.head, 1),
    }


def network(experiences: int) -> dict:
    import grpc

    buffer = ExperienceBuffer(SIDE, SIDE, experiences + 4096, "overwrite")
    play(buffer, filled(buffer, experiences))
    server = ExperienceServer(buffer, "127.0.0.1:0").start()
    out = {}
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ExperienceServiceStub(channel)
            for compression in (False, True):
                request = pb.StreamExperiencesRequest(
                    follow=False,
                    batch_size=1024,
                    enable_compression=compression,
                    start_position=pb.START_OLDEST,
                )
                size = count = 0
                for message in stub.StreamExperienceBatches(request, timeout=300):
                    size += message.ByteSize()
                    count += message.packed.count
                name = "zstd" if compression else "plain"
                out[f"stream_bytes_per_experience_{name}"] = round(size / count, 1)
            out["experiences"] = count
    finally:
        server.stop(grace=1.0)
    return out


def projection(figures: dict, pods: int, cores_per_pod: int, buffer_per_pod: int) -> dict:
    rate = figures["throughput"]["experiences_per_core_second"] * cores_per_pod * pods
    per_million = figures["memory"]["process_growth_bytes_per_million"]
    return {
        "pods": pods,
        "cores": pods * cores_per_pod,
        "experiences_per_second": rate,
        "games_per_second": round(rate / figures["throughput"]["experiences_per_game"]),
        "buffer_memory_gib_per_pod": round(per_million * buffer_per_pod / MILLION / 2**30, 2),
        "storage_gib_per_hour": round(
            rate * 3600 * figures["storage"]["parquet_bytes_per_experience"] / 2**30, 1
        ),
        "trainer_network_mib_per_second_zstd": round(
            rate * figures["network"]["stream_bytes_per_experience_zstd"] / 2**20, 1
        ),
        "trainer_network_mib_per_second_plain": round(
            rate * figures["network"]["stream_bytes_per_experience_plain"] / 2**20, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiences", type=int, default=500_000, help="buffer filled for memory")
    parser.add_argument("--seconds", type=float, default=20.0, help="self-play timed on one thread")
    parser.add_argument(
        "--sample", type=int, default=200_000, help="experiences stored and streamed"
    )
    parser.add_argument("--cores-per-pod", type=int, default=2)
    parser.add_argument("--buffer-per-pod", type=int, default=MILLION)
    parser.add_argument("--pods", default="10,1000")
    args = parser.parse_args()
    figures = {
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "board": f"{SIDE}x{SIDE}",
        "memory": memory(args.experiences),
        "throughput": throughput(args.seconds),
        "storage": storage(args.sample),
        "network": network(args.sample),
    }
    figures["load_average_after"] = os.getloadavg()
    # Two players: every tick of a game gives two experiences.
    figures["throughput"]["experiences_per_game"] = round(
        2 * figures["throughput"]["mean_game_length"], 1
    )
    figures["projections"] = [
        projection(figures, int(p), args.cores_per_pod, args.buffer_per_pod)
        for p in args.pods.split(",")
    ]
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
