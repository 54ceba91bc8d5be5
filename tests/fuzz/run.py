"""Coverage-guided fuzzing of one target with atheris for a bounded time.

    python tests/fuzz/run.py TARGET [--seconds 25] [--out build/fuzz]
                             [--replays ../shared/replays]

TARGET is one of targets.TARGETS (replay, dataset, submit, compact_stream, buffer). The corpus
is seeded from the target's own seeds into OUT/TARGET/corpus; an input that
fails is written to OUT/TARGET/ and the run exits non-zero. Coverage is that of
the generals_rl Python code (the C++ core is exercised, not instrumented).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import sys
import types
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target")
    parser.add_argument("--seconds", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "fuzz")
    parser.add_argument("--replays", type=Path, default=ROOT.parent / "shared" / "replays")
    args, libfuzzer_args = parser.parse_known_args()

    sys.path.insert(0, str(Path(__file__).parent))
    import targets

    # After the imports (instrument_imports misses modules of an editable
    # install), and only the package's own code: the rest would slow it down.
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(
            ("generals_rl", "targets")
        ):
            atheris.instrument_func(obj)
    target = targets.TARGETS[args.target]
    seeds = target.setup(targets.workdir(), args.replays if args.replays.is_dir() else None)
    out = args.out / args.target
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"fuzz {args.target}: {len(seeds)} seeds, {args.seconds} s", flush=True)

    def one(data: bytes) -> None:
        with contextlib.suppress(target.errors):
            target.one(data)

    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={args.seconds}",
            "-timeout=20",  # seconds for one input: a hang is a failure
            "-rss_limit_mb=4096",
            "-max_len=262144",
            "-print_final_stats=1",
            f"-artifact_prefix={out}/",
            *libfuzzer_args,
            str(corpus),
        ],
        one,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
