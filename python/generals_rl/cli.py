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


def _selfplay(args: argparse.Namespace) -> int:
    from .selfplay import SelfPlayConfig, parse_policies, run_selfplay

    try:
        config = SelfPlayConfig(
            policies=parse_policies(args.policies),
            games=args.games or None,
            num_envs=args.num_envs,
            height=args.height,
            width=args.width,
            num_threads=args.threads,
            seed=args.seed,
            max_ticks=args.max_ticks,
            capacity=args.capacity,
            buffer_policy=args.buffer_policy,
        )
        tls = None
        if args.tls_cert or args.tls_key:
            if not (args.tls_cert and args.tls_key):
                raise ValueError("--tls-cert and --tls-key: give both")
            with open(args.tls_cert, "rb") as cert, open(args.tls_key, "rb") as key:
                tls = (cert.read(), key.read())
        storage = _StorageOutput(args.format, args.output) if args.output != "none" else None
        summary = run_selfplay(
            config,
            args.address,
            sinks=[storage.sink] if storage else [],
            keep_running=args.keep_running,
            wait_for_consumers=args.wait_for_consumers,
            drain_timeout=args.drain_timeout,
            token=args.token,
            tls=tls,
            max_streams=args.max_streams,
        )
    except (OSError, ValueError) as exc:
        print(f"generals-rl selfplay: {exc}", file=sys.stderr)
        return 2
    result = summary.to_dict()
    if storage:
        result["stored"] = storage.report()
    if args.json:
        print(json.dumps(result))
    else:
        print(summary.format())
        if storage:
            stored = result["stored"]
            print(f"stored: {stored['experiences']} experiences as {stored['format']} in {stored['destination']}")
    return 0


class _StorageOutput:
    """Self-play's durable copy: a writer of ``format`` shards to ``destination``
    fed by a background sink, numbering on from what the destination holds."""

    def __init__(self, format: str, destination: str) -> None:
        self.format, self.destination = format, destination
        self._sink = None
        self._first = 0

    def sink(self, buffer):
        from .storage import BufferSink, continue_numbering, open_writer

        try:
            writer = open_writer(self.format, self.destination)
        except ImportError as exc:
            raise ValueError(
                f"--format {self.format} needs {exc.name}: pip install 'generals-rl[storage]' "
                "(or --format npz, or --output none)"
            ) from None
        self._first = continue_numbering(buffer, writer)
        self._sink = BufferSink(buffer, writer)
        return self._sink

    def report(self) -> dict:
        durable = self._sink.durable_sequence if self._sink else None
        stored = 0 if durable is None or durable < self._first else durable - self._first + 1
        return {"format": self.format, "destination": self.destination, "experiences": stored}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="generals-rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="replay a .gioreplay or .gior file")
    replay.add_argument("file")
    replay.add_argument("--trace", metavar="OUT.json", help="write the tick-by-tick trace here")
    replay.add_argument("--snapshot-every", type=int, default=100, metavar="TICKS")
    replay.set_defaults(run=_replay)

    selfplay = commands.add_parser(
        "selfplay",
        help="play built-in bots against each other and serve the experiences over gRPC",
        description="Self-play with the built-in bots into an experience buffer served over gRPC. "
        "Plays --games games, prints a summary and exits once connected consumers have read everything.",
    )
    option = selfplay.add_argument
    option(
        "--policies",
        default="heuristic,random",
        metavar="P0,P1,...",
        help="the built-in policy of each player, comma-separated: heuristic or random (default: %(default)s)",
    )
    option("--games", type=int, default=128, help="games to finish; 0 plays until interrupted (default: %(default)s)")
    option("--num-envs", type=int, default=16, help="games played at once (default: %(default)s)")
    option("--height", type=int, default=20, help="board height (default: %(default)s)")
    option("--width", type=int, default=20, help="board width (default: %(default)s)")
    option("--threads", type=int, default=None, help="stepping threads (default: one per core)")
    option("--seed", type=int, default=0)
    option("--max-ticks", type=int, default=2000, help="ticks before a game is truncated (default: %(default)s)")
    option("--capacity", type=int, default=200_000, help="experiences the buffer holds (default: %(default)s)")
    option(
        "--buffer-policy",
        choices=("block", "overwrite"),
        default="block",
        help="when the buffer is full: block waits for consumers, overwrite drops the oldest and tells "
        "consumers what they missed (default: %(default)s)",
    )
    option(
        "--address",
        default="127.0.0.1:50051",
        help="host:port to serve on; port 0 picks a free one (default: %(default)s)",
    )
    option("--token", default=None, help="require this bearer token from clients")
    option("--tls-cert", default=None, metavar="PEM", help="serve over TLS with this certificate chain")
    option("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert")
    option("--max-streams", type=int, default=32, help="concurrent streams (default: %(default)s)")
    option("--keep-running", action="store_true", help="after the games, keep serving until interrupted")
    option(
        "--wait-for-consumers",
        type=int,
        default=0,
        metavar="N",
        help="start playing once N consumers are streaming (default: %(default)s)",
    )
    option(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for connected consumers to read everything (default: %(default)s)",
    )
    option(
        "--output",
        default="selfplay-data",
        metavar="DIR|s3://BUCKET/PREFIX|none",
        help="where the experiences are stored durably; 'none' only serves them (default: %(default)s)",
    )
    option(
        "--format",
        choices=("parquet", "tfrecord", "npz"),
        default="parquet",
        help="storage format of --output (default: %(default)s)",
    )
    option("--json", action="store_true", help="print the summary as JSON")
    selfplay.set_defaults(run=_selfplay)

    from .cli_train import add_commands

    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
