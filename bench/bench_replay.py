"""Replay speed: the largest shared replay (by moves), replayed many times.

Prints one JSON line: ticks per second through ``generals_rl.replay`` (game set-up,
the C++ replay and building the Python trace) and through the bare C++
``_core.run_replay`` call alone.

    python bench/bench_replay.py [--replays DIR] [--seconds S] [--min-runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from generals_rl import _core, replay

DEFAULT_REPLAYS = Path(__file__).resolve().parents[1].parent / "shared" / "replays"


def largest_replay(directory: Path) -> replay.Replay:
    paths = sorted(p for p in directory.glob("*") if p.suffix in (".gioreplay", ".gior"))
    if not paths:
        raise SystemExit(f"bench_replay: no .gioreplay or .gior files in {directory}")
    loaded = [replay.load(p) for p in paths]
    return max(loaded, key=lambda r: (len(r.moves), r.id))


def measure(run_once, seconds: float, min_runs: int) -> tuple[int, float]:
    """Calls ``run_once`` (which returns the seconds it measured) until both ``seconds``
    and ``min_runs`` are reached, after one warm-up call; returns (runs, seconds)."""
    run_once()
    runs, elapsed = 0, 0.0
    while runs < min_runs or elapsed < seconds:
        elapsed += run_once()
        runs += 1
    return runs, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=Path, default=DEFAULT_REPLAYS)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    parser.add_argument("--min-runs", type=int, default=20)
    args = parser.parse_args(argv)

    rec = largest_replay(args.replays)
    ticks = rec.trace(snapshot_every=100)["end_tick"]

    def with_trace() -> float:
        start = time.perf_counter()
        rec.trace(snapshot_every=100)
        return time.perf_counter() - start

    def core_only() -> float:
        game = rec.initial_game()._game  # set-up is not part of this measurement
        start = time.perf_counter()
        _core.run_replay(game, rec.moves, rec.afks, 100)
        return time.perf_counter() - start

    runs, elapsed = measure(with_trace, args.seconds, args.min_runs)
    core_runs, core_elapsed = measure(core_only, args.seconds, args.min_runs)

    print(
        json.dumps(
            {
                "bench": "replay",
                "replay": rec.id,
                "players": rec.num_players,
                "moves": len(rec.moves),
                "ticks": ticks,
                "runs": runs,
                "ticks_per_second": round(ticks * runs / elapsed, 1),
                "core_runs": core_runs,
                "ticks_per_second_core": round(ticks * core_runs / core_elapsed, 1),
                "cpu_count": os.cpu_count(),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
