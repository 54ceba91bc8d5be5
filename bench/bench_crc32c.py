"""CRC32C throughput: the core's ``_core.crc32c`` (the CPU's CRC32 instruction when
it has one) and its table-driven fallback ``_core.crc32c_portable``, beside the
PyPI implementations (google-crc32c, and crc32c when installed), in GB/s on one
core, for buffers from 1 KiB to 64 MiB.

    python bench/bench_crc32c.py [--repeats N] [--seconds S]

Each figure is bytes per second of the calling thread's CPU time (a niced run on
a busy machine gets a fraction of the wall clock), the best of ``--repeats``
rounds of about ``--seconds`` of it each; implementations alternate within a
round so that they share its conditions. Prints one JSON document, with the
load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from generals_rl import _core

SIZES = (1 << 10, 64 << 10, 1 << 20, 64 << 20)


def implementations() -> dict[str, Callable]:
    found: dict[str, Callable] = {
        "core": _core.crc32c,
        "core_portable": _core.crc32c_portable,
    }
    try:
        import google_crc32c

        found["google_crc32c"] = google_crc32c.value
    except ImportError:
        pass
    try:
        import crc32c

        found["crc32c"] = crc32c.crc32c
    except ImportError:
        pass
    return found


def gigabytes_per_second(function: Callable, data: bytes, seconds: float) -> float:
    calls, started = 0, time.thread_time()
    while True:
        function(data)
        calls += 1
        elapsed = time.thread_time() - started
        if elapsed >= seconds:
            return calls * len(data) / elapsed / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per figure per round")
    args = parser.parse_args()
    functions = implementations()
    data = np.random.default_rng(1).integers(0, 256, max(SIZES), dtype=np.uint8).tobytes()
    reference = functions["core_portable"](data)
    for name, function in functions.items():
        if function(data) != reference:
            raise SystemExit(f"{name}: disagrees with the core's portable CRC32C")
    best: dict[str, dict[str, float]] = {name: {} for name in functions}
    for _ in range(args.repeats):
        for size in SIZES:
            chunk = data[:size]
            for name, function in functions.items():
                rate = gigabytes_per_second(function, chunk, args.seconds)
                best[name][str(size)] = max(best[name].get(str(size), 0.0), round(rate, 2))
    largest = str(max(SIZES))
    print(
        json.dumps(
            {
                "bench": "crc32c",
                "unit": "GB per second of thread CPU time (1e9 bytes/s), best round",
                "gbps": best,
                "core_vs_google_crc32c_largest": (
                    round(best["core"][largest] / best["google_crc32c"][largest], 2)
                    if "google_crc32c" in best
                    else None
                ),
                "load_average": os.getloadavg(),
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
