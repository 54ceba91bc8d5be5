"""Importing recorded games: experiences per second and stored bytes per experience.

Imports the shared replays of one form at a time (``.gioreplay``/``.json`` JSON, then
``.gior``) into Parquet (compact states, zstd), round after round into fresh
folders, with the board size given (``--size``, as a dataset of known size would);
also times the same games turned into experiences without storing them. Prints one
JSON line.

    python bench/bench_import.py [--replays DIR] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from generals_rl import replay
from generals_rl.replay_import import import_replays, replay_files
from generals_rl.storage import open_writer

DEFAULT_REPLAYS = Path(__file__).resolve().parents[1].parent / "shared" / "replays"
FORMS = {"json": (".gioreplay", ".json"), "gior": (".gior",)}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_form(files: list[Path], size: tuple[int, int], seconds: float) -> dict:
    stored_bytes = experiences = rounds = 0
    elapsed = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        while rounds < 2 or elapsed < seconds:
            out = Path(scratch) / f"round{rounds}"
            start = time.perf_counter()
            with open_writer("parquet", out) as writer:
                summary = import_replays(files, writer, size=size)
            elapsed += time.perf_counter() - start
            experiences += summary.experiences
            stored_bytes += folder_bytes(out)
            shutil.rmtree(out)
            rounds += 1
    in_memory, memory_elapsed = 0, 0.0
    while memory_elapsed < seconds / 2:
        start = time.perf_counter()
        for path in files:
            in_memory += len(replay.load(path).to_experiences(*size))
        memory_elapsed += time.perf_counter() - start
    return {
        "files": len(files),
        "rounds": rounds,
        "experiences_per_s": round(experiences / elapsed),
        "bytes_per_experience": round(stored_bytes / experiences, 2),
        "experiences_per_s_without_storing": round(in_memory / memory_elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=Path, default=DEFAULT_REPLAYS)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum time per form")
    args = parser.parse_args(argv)

    files = list(replay_files([args.replays]))
    if not files:
        raise SystemExit(f"bench_import: no replays in {args.replays}")
    loaded = [replay.load(p) for p in files]
    size = (max(r.height for r in loaded), max(r.width for r in loaded))
    result = {"bench": "import", "cpu_count": os.cpu_count(), "size": f"{size[0]}x{size[1]}"}
    for form, suffixes in FORMS.items():
        chosen = [p for p in files if p.suffix in suffixes]
        if chosen:
            result[form] = measure_form(chosen, size, args.seconds)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
