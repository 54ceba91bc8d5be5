"""The ``generals-rl`` command line.

A mistake in what the user gave (options, paths, files) ends with one line on
stderr and exit code 2; a failure outside (a port in use, storage that cannot
be written) with one line and exit code 1; Ctrl-C before a command has started
with one line and exit code 130. None shows a traceback.

Longer than 400 lines: most of it is the argument parser, one option after
another, which reads best in one place.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .experience import ExperienceBuffer
    from .storage import BufferSink

USAGE_ERROR, RUNTIME_ERROR = 2, 1
INTERRUPTED = 128 + 2  # the shell's code for a process ended by SIGINT


def _replay(args: argparse.Namespace) -> int:
    from .replay import ReplayError, load

    try:
        trace = load(args.file).trace(snapshot_every=args.snapshot_every)
        if args.trace:
            with open(args.trace, "w") as out:
                json.dump(trace, out)
    except (OSError, ReplayError) as exc:
        print(f"generals-rl replay: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(
        f"{trace['replay_id']}: {trace['players']} players, {trace['moves']} moves, "
        f"ended at tick {trace['end_tick']} ({'over' if trace['over'] else 'not over'}), "
        f"death order {trace['death_order']}"
    )
    return 0


def _import_replays(args: argparse.Namespace) -> int:
    from .cli_config import say_storage_failure
    from .replay_import import ReplayFilter, import_replays, parse_size
    from .storage import open_writer

    def report(path: str, why: str) -> None:
        print(
            "generals-rl import-replays: skipped "
            f"{why if why.startswith(path) else f'{path}: {why}'}",
            file=sys.stderr,
        )

    try:
        size = parse_size(args.size) if args.size else None
        writer = open_writer(args.format, args.output)
    except (ImportError, OSError, ValueError) as exc:
        return say_storage_failure(
            "import-replays", exc, setting=f"--format {args.format}", instead="--format npz"
        )
    with writer:
        summary = import_replays(
            args.sources,
            writer,
            size=size,
            selection=ReplayFilter(players=args.players, min_stars=args.min_stars),
            on_skip=report,
        )
    print(f"{summary.format()}; stored as {args.format} in {args.output}")
    return 0


def _allocators_for_a_long_run() -> None:
    """Allocation settings of a process that runs for days (values already in the
    environment are kept).

    pyarrow's default pool (mimalloc) keeps memory it freed and its floor rises by
    steps of ~100 MB over a long Parquet run; the system allocator's stays level.
    glibc raises its mmap threshold each time a large block is freed, after which
    the large, short-lived column copies of every storage chunk come from the heap
    and fragment it. A fixed threshold keeps those blocks in mmap, returned to the
    system when freed (as MALLOC_MMAP_THRESHOLD_=131072 would)."""
    import ctypes
    import ctypes.util

    os.environ.setdefault(
        "ARROW_DEFAULT_MEMORY_POOL", "system"
    )  # read when pyarrow is first imported
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_mmap_threshold = -3  # from <malloc.h>
    mallopt(m_mmap_threshold, 128 * 1024)


def _selfplay(args: argparse.Namespace) -> int:
    _allocators_for_a_long_run()
    from .cli_config import print_summary, run_farm_cli, wants_farm

    if wants_farm(args):
        return run_farm_cli(args, args.argv)
    from .selfplay import SelfPlayConfig, parse_policies, run_selfplay
    from .storage.errors import StorageError

    # A storage failure is reported in one line once retrying is over (below),
    # not by each attempt.
    logging.getLogger("generals_rl.storage").setLevel(logging.ERROR)

    storage: _StorageOutput | None = None
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
            tls = (_read_file("--tls-cert", args.tls_cert), _read_file("--tls-key", args.tls_key))
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
    except StorageError as exc:
        line = storage.failure_line(exc) if storage is not None else str(exc)
        print(f"generals-rl selfplay: {line}", file=sys.stderr)
        return RUNTIME_ERROR
    except ValueError as exc:
        print(f"generals-rl selfplay: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print_summary(summary, storage.report() if storage else None, args.json)
    return 0


def _read_file(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"{option}: cannot read {path}: {exc.strerror}") from None


class _StorageOutput:
    """Self-play's durable copy: a writer of ``format`` shards to ``destination``
    fed by a background sink, numbering on from what the destination holds."""

    def __init__(self, format: str, destination: str) -> None:
        self.format, self.destination = format, destination
        self._sink: BufferSink | None = None
        self._buffer: ExperienceBuffer | None = None
        self._first = 0

    def sink(self, buffer):
        from .cli_config import missing_extra
        from .storage import BufferSink, continue_numbering, open_writer

        try:
            writer = open_writer(self.format, self.destination)
        except ImportError as exc:
            setting = f"--format {self.format} --output {self.destination}"
            raise ValueError(missing_extra(setting, exc, "--output none")) from None
        self._first = continue_numbering(buffer, writer)
        self._buffer = buffer
        self._sink = BufferSink(buffer, writer)
        return self._sink

    def report(self) -> dict:
        durable = self._sink.durable_sequence if self._sink else None
        stored = 0 if durable is None or durable < self._first else durable - self._first + 1
        return {"format": self.format, "destination": self.destination, "experiences": stored}

    def failure_line(self, exc: Exception) -> str:
        """``storage: <why> at <destination>: N experiences durable, M not stored``."""
        from .storage.errors import failure_reason

        stored = self.report()["experiences"]
        played = self._buffer.head - self._first if self._buffer is not None else 0
        return (
            f"storage: {failure_reason(exc)} at {self.destination}: {stored} experiences durable, "
            f"{played - stored} not stored"
        )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see --help)\n")  # one line, no usage block


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def _address(text: str) -> str:
    from .service.server import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="generals-rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser(
        "replay", help="replay a recorded game (.gioreplay, .gior or JSON)"
    )
    replay.add_argument("file")
    replay.add_argument("--trace", metavar="OUT.json", help="write the tick-by-tick trace here")
    replay.add_argument("--snapshot-every", type=_at_least(1), default=100, metavar="TICKS")
    replay.set_defaults(run=_replay)

    imports = commands.add_parser(
        "import-replays",
        help="turn recorded games into stored experiences",
        description="Replays every game of SRC (files, or folders searched recursively for "
        ".gioreplay, .gior and .json replays) and stores one experience per alive player per tick, "
        "with the writers of self-play. Damaged files are reported and skipped.",
    )
    imports.add_argument("sources", nargs="+", metavar="SRC")
    imports.add_argument("--output", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    imports.add_argument(
        "--format",
        choices=("parquet", "tfrecord", "npz"),
        default="parquet",
        help="storage format (default: %(default)s)",
    )
    imports.add_argument(
        "--size",
        metavar="HxW",
        help="pad every board with mountains to this size (default: the smallest that fits all)",
    )
    imports.add_argument(
        "--min-stars",
        type=int,
        default=None,
        metavar="N",
        help="only games whose every player has at least N stars",
    )
    imports.add_argument(
        "--players", type=int, default=None, metavar="N", help="only games of N players"
    )
    imports.set_defaults(run=_import_replays)

    selfplay = commands.add_parser(
        "selfplay",
        help="play built-in bots against each other and serve the experiences over gRPC",
        description="Self-play with the built-in bots into an experience buffer served over gRPC. "
        "Plays --games games, prints a summary and exits once connected consumers have read "
        "everything.",
    )
    option = selfplay.add_argument
    option(
        "--policies",
        default="heuristic,random",
        metavar="P0,P1,...",
        help="the built-in policy of each player, comma-separated: heuristic or random "
        "(default: %(default)s)",
    )
    option(
        "--games",
        type=int,
        default=128,
        help="games to finish; 0 plays until interrupted (default: %(default)s)",
    )
    option("--num-envs", type=int, default=16, help="games played at once (default: %(default)s)")
    option("--height", type=int, default=20, help="board height (default: %(default)s)")
    option("--width", type=int, default=20, help="board width (default: %(default)s)")
    option("--threads", type=int, default=None, help="stepping threads (default: one per core)")
    option("--seed", type=int, default=0)
    option(
        "--max-ticks",
        type=int,
        default=2000,
        help="ticks before a game is truncated (default: %(default)s)",
    )
    option(
        "--capacity",
        type=int,
        default=200_000,
        help="experiences the buffer holds (default: %(default)s)",
    )
    option(
        "--buffer-policy",
        choices=("block", "overwrite"),
        default="block",
        help="when the buffer is full: block waits for consumers, overwrite drops the oldest "
        "and tells consumers what they missed (default: %(default)s)",
    )
    option(
        "--address",
        type=_address,
        default="127.0.0.1:50051",
        help="host:port to serve on; port 0 picks a free one (default: %(default)s)",
    )
    option("--token", default=None, help="require this bearer token from clients")
    option(
        "--tls-cert", default=None, metavar="PEM", help="serve over TLS with this certificate chain"
    )
    option("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert")
    option(
        "--max-streams",
        type=_at_least(1),
        default=32,
        help="concurrent streams (default: %(default)s)",
    )
    option(
        "--keep-running",
        action="store_true",
        help="after the games, keep serving until interrupted",
    )
    option(
        "--wait-for-consumers",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="start playing once N consumers are streaming (default: %(default)s)",
    )
    option(
        "--drain-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for connected consumers to read everything (default: %(default)s)",
    )
    option(
        "--output",
        default="selfplay-data",
        metavar="DIR|s3://BUCKET/PREFIX|none",
        help="where the experiences are stored durably; 'none' only serves them "
        "(default: %(default)s)",
    )
    option(
        "--format",
        choices=("parquet", "tfrecord", "npz"),
        default="parquet",
        help="storage format of --output (default: %(default)s)",
    )
    option("--json", action="store_true", help="print the summary as JSON")
    selfplay.set_defaults(run=_selfplay)
    from .cli_config import add_config_command, add_selfplay_options

    add_selfplay_options(selfplay)
    add_config_command(commands)

    from .cli_train import add_commands

    add_commands(commands)

    from . import cli_farm

    cli_farm.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        from .storage import StorageError

        try:
            return args.run(args)
        except (OSError, StorageError) as exc:  # outside failures: the message says what and where
            print(f"generals-rl {args.command}: {exc}", file=sys.stderr)
            return RUNTIME_ERROR
    except KeyboardInterrupt:
        # Ctrl-C before a command installs its own handler (while starting up): nothing
        # was accepted yet, so there is nothing to save.
        print("generals-rl: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
