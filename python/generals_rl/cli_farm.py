"""``generals-rl farm up`` and ``generals-rl farm status``: a self-play farm on a
Ray cluster (``generals_rl.distributed``, the ``ray`` extra)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time

from .cli import RUNTIME_ERROR, USAGE_ERROR
from .cli_train import UsageError, _run
from .stop_signals import stop_on_signals

_RAY_HINT = "pip install 'generals-rl[ray]'"


def add_commands(commands) -> None:
    farm = commands.add_parser(
        "farm",
        help="self-play actors on a Ray cluster",
        description="Runs self-play actors across a Ray cluster (see docs/scaling.md).",
    )
    actions = farm.add_subparsers(dest="farm_command", required=True)
    up = actions.add_parser(
        "up",
        help="place the actors, watch and restart them until Ctrl-C",
        description="Places ACTORS self-play actors configured by FARM.yaml across the cluster, "
        "publishes their addresses for learners (generals-rl train dqn --from farm:NAME), "
        "restarts those that die and reports what their deaths lost.",
    )
    up.add_argument("--config", metavar="FARM.yaml", default=None, help="the farm configuration")
    up.add_argument("--actors", type=int, default=2, help="self-play actors (default: %(default)s)")
    up.add_argument("--num-cpus", type=float, default=1.0, help="CPUs Ray reserves per actor")
    up.add_argument(
        "--memory-mib", type=int, default=None, help="memory Ray reserves per actor (MiB)"
    )
    up.add_argument(
        "--pack", action="store_true", help="pack actors on few nodes (default: spread)"
    )
    up.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    up.add_argument("--json", action="store_true", help="print the final status as JSON")
    up.set_defaults(run=lambda a: _run("farm up", _up, a))
    status = actions.add_parser("status", help="show a running farm's actors and restarts")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=lambda a: _run("farm status", _status, a))
    for command in (up, status):
        command.add_argument(
            "--address",
            default="auto",
            metavar="auto|HOST:PORT",
            help="the Ray cluster (default: %(default)s, the one started on this machine)",
        )
        command.add_argument("--name", default=None, help="the farm's name (default: farm)")
        add_ray_options(command)


def add_ray_options(command: argparse.ArgumentParser) -> None:
    """The options of every command that connects to a Ray cluster."""
    command.add_argument(
        "--node-ip-address",
        default=None,
        metavar="IP",
        help="this machine's address in the cluster, as ray start --node-ip-address "
        "(default: Ray's guess)",
    )
    command.add_argument("--namespace", default=None, help="Ray namespace (default: generals-rl)")


def _connect(args: argparse.Namespace, address: str, flag: str = "--address"):
    """``(generals_rl.distributed, ray)``, connected to the cluster at ``address``."""
    if address != "auto":
        from .service.server import parse_address

        try:
            parse_address(address)
        except ValueError as exc:
            raise UsageError(f"{flag}: expected auto or HOST:PORT: {exc}") from None
    try:
        import ray

        from . import distributed
    except ImportError as exc:
        raise UsageError(f"needs {exc.name}: {_RAY_HINT}") from None
    args.name = getattr(args, "name", None) or distributed.FARM_NAME
    args.namespace = args.namespace or distributed.NAMESPACE
    ray.init(
        address=address,
        namespace=args.namespace,
        logging_level=logging.WARNING,
        log_to_driver=False,
        _node_ip_address=args.node_ip_address,
    )
    return distributed, ray


FARM_PREFIX = "farm:"  # generals-rl train dqn --from farm:NAME


def train_dqn_on_farm(args: argparse.Namespace, config) -> int:
    """``generals-rl train dqn --from farm:NAME``: the learner as a Ray actor that
    follows the farm NAME (started by ``generals-rl farm up``)."""
    import dataclasses
    import os

    from .cli_train import learner_openmp_env

    args.name = args.sources[len(FARM_PREFIX) :] or None
    distributed, ray = _connect(args, args.ray_address, "--ray-address")
    try:
        learner = distributed.LearnerActor.options(
            num_cpus=config.torch_threads, runtime_env={"env_vars": learner_openmp_env()}
        ).remote(
            dataclasses.asdict(config),
            os.path.abspath(args.run_dir),  # on the node Ray places the learner on
            args.name,
            args.namespace,
            {"token": args.token},
        )
        row = ray.get(
            learner.train.remote(log_every=args.log_every, wait_timeout=args.wait_timeout)
        )
        progress = ray.get(learner.progress.remote())
    finally:
        ray.shutdown()
    if not args.quiet:
        print(json.dumps({**row, **progress}))
    return 0


def _up(args: argparse.Namespace) -> int:
    from .cli_config import load_or_say

    if args.actors < 1:
        raise UsageError(f"--actors: must be at least 1, got {args.actors}")
    if args.duration < 0:
        raise UsageError(f"--duration: must be >= 0 seconds, got {args.duration}")
    config = load_or_say("farm up", args.config)
    if config is None:
        return USAGE_ERROR
    if not args.num_cpus >= 0:
        raise UsageError(f"--num-cpus: must be >= 0, got {args.num_cpus}")
    if args.memory_mib is not None and args.memory_mib < 1:
        raise UsageError(f"--memory-mib: must be at least 1, got {args.memory_mib}")
    distributed, ray = _connect(args, args.address)
    try:
        resources = distributed.ActorResources(
            num_cpus=args.num_cpus,
            memory=None if args.memory_mib is None else args.memory_mib << 20,
            spread=not args.pack,
        )
        farm = distributed.Farm(
            config, args.actors, resources=resources, name=args.name, namespace=args.namespace
        )
        stop = threading.Event()
        restore = stop_on_signals(stop)
        farm.start()
        try:
            for key, address in farm.addresses().items():
                print(
                    f"generals-rl farm up: {key} serving on {address}", file=sys.stderr, flush=True
                )
            _watch(farm, stop, args.duration)
        finally:
            state = farm.status()
            stored = farm.stop()
            restore()
    finally:
        ray.shutdown()
    state["stored"] = stored
    if args.json:
        print(json.dumps(state))
    else:
        print(_format(state))
    return 0


def _watch(farm, stop: threading.Event, duration: float) -> None:
    """Says each restart as it happens, until ``stop`` or ``duration`` seconds."""
    deadline = time.monotonic() + duration if duration else None
    told = 0
    while not stop.wait(0.5):
        for restart in farm.restarts[told:]:
            print(
                f"generals-rl farm up: {restart.key} died (pid {restart.dead_pid}); restarted "
                f"(incarnation {restart.incarnation}), durable below {restart.durable_next}, "
                f"at least {restart.not_durable_at_least} experiences lost from memory",
                file=sys.stderr,
                flush=True,
            )
        told = len(farm.restarts)
        if deadline is not None and time.monotonic() >= deadline:
            return


def _status(args: argparse.Namespace) -> int:
    distributed, ray = _connect(args, args.address)
    try:
        try:
            state = distributed.farm_state(args.name, args.namespace)
        except LookupError as exc:
            print(f"generals-rl farm status: {exc}", file=sys.stderr)
            return RUNTIME_ERROR
    finally:
        ray.shutdown()
    print(json.dumps(state) if args.json else _format(state))
    return 0


def _format(state: dict) -> str:
    lines = [
        f"{'actor':<12} {'address':<22} {'pid':>7} {'head':>10} {'durable':>10} {'use':>5}  state"
    ]
    for key, actor in state["actors"].items():
        use = actor["resident"] / actor["capacity"] if actor["capacity"] else 0.0
        condition = actor["error"] or ("serving" if actor["serving"] else "not serving")
        lines.append(
            f"{key:<12} {actor['address']:<22} {actor['pid']:>7} {actor['head']:>10} "
            f"{actor['durable_next']:>10} {use:>5.0%}  {condition}"
        )
    restarts = state["restarts"]
    lines.append(
        f"restarts: {len(restarts)}; experiences lost from memory: at least "
        f"{state['not_durable_at_least']}"
    )
    return "\n".join(lines)
