"""The ``generals-rl`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _replay(args: argparse.Namespace) -> int:
    from .replay import ReplayError, load

    try:
        trace = load(args.file).trace(snapshot_every=args.snapshot_every)
    except (OSError, ReplayError) as exc:
        print(f"generals-rl replay: {exc}", file=sys.stderr)
        return 2
    if args.trace:
        with open(args.trace, "w") as out:
            json.dump(trace, out)
    print(
        f"{trace['replay_id']}: {trace['players']} players, {trace['moves']} moves, "
        f"ended at tick {trace['end_tick']} ({'over' if trace['over'] else 'not over'}), "
        f"death order {trace['death_order']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="generals-rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="replay a .gioreplay or .gior file")
    replay.add_argument("file")
    replay.add_argument("--trace", metavar="OUT.json", help="write the tick-by-tick trace here")
    replay.add_argument("--snapshot-every", type=int, default=100, metavar="TICKS")
    replay.set_defaults(run=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
