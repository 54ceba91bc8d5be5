"""The farm from the command line: ``generals-rl selfplay`` run as a farm (with
``--config FILE``, ``--metrics-address`` or ``GENERALS_RL__*`` variables: the
configuration from the file, the environment and the flags given) and
``generals-rl config show|check``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from .cli import USAGE_ERROR
from .defaults import DRAIN_TIMEOUT, MAX_STREAMS, STORAGE_DIRECTORY, STORAGE_FORMAT, STREAM_ADDRESS
from .selfplay import SelfPlayConfig

# selfplay flag -> configuration key (flags mapped by hand below: output, policies, tls)
_FLAG_KEYS = {
    "games": "collection.games",
    "num_envs": "collection.envs",
    "height": "collection.board.height",
    "width": "collection.board.width",
    "threads": "collection.threads",
    "seed": "collection.seed",
    "max_ticks": "collection.max_ticks",
    "capacity": "collection.buffer_size",
    "buffer_policy": "collection.buffer_policy",
    "wait_for_consumers": "collection.wait_for_consumers",
    "address": "streaming.address",
    "max_streams": "streaming.max_connections",
    "keep_running": "streaming.keep_running",
    "drain_timeout": "streaming.drain_timeout",
    "format": "storage.format",
    "tls_cert": "streaming.tls.cert",
    "tls_key": "streaming.tls.key",
    "metrics_address": "metrics.address",
}


def cli_defaults() -> dict:
    """The selfplay flags' defaults, from the library's (one source)."""
    play: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SelfPlayConfig)}
    return {
        "policies": ",".join(play["policies"]),
        "games": play["games"],
        "num_envs": play["num_envs"],
        "height": play["height"],
        "width": play["width"],
        "threads": play["num_threads"],
        "seed": play["seed"],
        "max_ticks": play["max_ticks"],
        "capacity": play["capacity"],
        "buffer_policy": play["buffer_policy"],
        "address": STREAM_ADDRESS,
        "max_streams": MAX_STREAMS,
        "drain_timeout": DRAIN_TIMEOUT,
        "output": STORAGE_DIRECTORY,
        "format": STORAGE_FORMAT,
    }


def add_selfplay_options(selfplay: argparse.ArgumentParser) -> None:
    """``--config`` and ``--metrics-address``, and the library's defaults for the other flags."""
    selfplay.add_argument(
        "--config",
        metavar="FARM.yaml",
        default=None,
        help="read the farm configuration from this file (hot keys reload while running); "
        "flags given override it, and GENERALS_RL__SECTION__KEY variables override the file",
    )
    selfplay.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=None,
        help="serve Prometheus /metrics, /healthz and /readyz here (needs the farm extra)",
    )
    selfplay.set_defaults(**cli_defaults())


def add_config_command(commands) -> None:
    config = commands.add_parser("config", help="show or check a farm configuration")
    actions = config.add_subparsers(dest="config_command", required=True)
    show = actions.add_parser(
        "show", help="print the effective configuration (defaults, FILE, environment)"
    )
    show.add_argument("file", nargs="?", default=None)
    show.set_defaults(run=_config_show)
    check = actions.add_parser("check", help="validate FILE (and the GENERALS_RL__* variables)")
    check.add_argument("file")
    check.set_defaults(run=_config_check)


def _config_show(args: argparse.Namespace) -> int:
    return _config_command(args, show=True)


def _config_check(args: argparse.Namespace) -> int:
    return _config_command(args, show=False)


def missing_extra(setting: str, exc: ImportError, instead: str) -> str:
    """``<setting>: <what needs which package, and the pip line> (or <instead>)``:
    the storage modules' ImportErrors name the package and the extra."""
    return f"{setting}: {exc} (or {instead})"


def say_storage_failure(command: str, exc: Exception, setting: str, instead: str) -> int:
    """Print in one line why a command's writer could not be opened; the exit
    code of a usage error."""
    why = missing_extra(setting, exc, instead) if isinstance(exc, ImportError) else str(exc)
    print(f"generals-rl {command}: {why}", file=sys.stderr)
    return USAGE_ERROR


def load_or_say(command: str, path: str | None, overrides: Mapping | None = None):
    """The configuration, or None after printing why there is none."""
    try:
        from .config.farm import ConfigError, load_config

        return load_config(path, overrides=overrides)
    except ImportError as exc:
        print(f"generals-rl {command}: {exc}", file=sys.stderr)
    except ConfigError as exc:
        print(f"generals-rl {command}: invalid configuration:\n{exc}", file=sys.stderr)
    return None


def _config_command(args: argparse.Namespace, show: bool) -> int:
    config = load_or_say("config", args.file)
    if config is None:
        return USAGE_ERROR
    if show:
        sys.stdout.write(config.to_yaml())
    else:
        print(f"{args.file}: ok")
    return 0


def wants_farm(args: argparse.Namespace) -> bool:
    """Whether ``generals-rl selfplay`` runs as a farm: with ``--config``,
    ``--metrics-address`` or any ``GENERALS_RL__*`` variable set."""
    from_env = any(name.startswith("GENERALS_RL__") for name in os.environ)
    return bool(getattr(args, "config", None) or getattr(args, "metrics_address", None) or from_env)


def explicit_flags(argv: list[str]) -> dict:
    """The selfplay flags given in ``argv`` (not their defaults)."""
    from .cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    selfplay = commands.choices["selfplay"]
    for action in selfplay._actions:
        action.default = argparse.SUPPRESS
    selfplay._defaults.clear()
    given = vars(parser.parse_args(argv))
    return {k: v for k, v in given.items() if k not in ("command", "run")}


def flag_overrides(flags: Mapping) -> dict:
    """Configuration overrides from selfplay flags."""
    from .config.farm import set_path
    from .selfplay import parse_policies

    out: dict = {}
    for name, value in flags.items():
        if name in _FLAG_KEYS:
            if name == "games" and value == 0:
                value = None
            set_path(out, _FLAG_KEYS[name].split("."), value)
        elif name == "policies":
            set_path(out, ["collection", "bots"], list(parse_policies(value)))
        elif name == "output":
            if value == "none":
                set_path(out, ["storage", "enabled"], False)
            elif value.startswith("s3://"):
                bucket, _, prefix = value[len("s3://") :].partition("/")
                set_path(out, ["storage", "type"], "s3")
                set_path(out, ["storage", "s3", "bucket"], bucket)
                set_path(out, ["storage", "s3", "prefix"], prefix)
            else:
                set_path(out, ["storage", "type"], "file")
                set_path(out, ["storage", "directory"], value)
    return out


def run_farm_cli(args: argparse.Namespace, argv: list[str]) -> int:
    """``generals-rl selfplay`` as a farm: configuration from ``--config``, the
    environment and the flags given."""
    from .farm import Farm

    overrides = flag_overrides(explicit_flags(argv))
    config = load_or_say("selfplay", args.config, overrides)
    if config is None:
        return USAGE_ERROR
    farm = Farm(config, config_path=args.config, overrides=overrides, token=args.token)
    try:
        summary = farm.run()
    except (ImportError, OSError, ValueError) as exc:
        return say_storage_failure(
            "selfplay",
            exc,
            setting=f"storage.format {config.storage.format}",
            instead="storage.format: npz, or storage.enabled: false",
        )
    if summary is None:
        return 0
    print_summary(summary, farm.stored, args.json)
    return 0


def print_summary(summary, stored: dict | None, as_json: bool) -> None:
    """A self-play run's summary and what it stored (``None``: no storage), as
    text or one JSON line."""
    result = summary.to_dict()
    if stored is not None:
        result["stored"] = stored
    if as_json:
        print(json.dumps(result))
        return
    print(summary.format())
    if stored is not None:
        print(
            f"stored: {stored['experiences']} experiences as {stored['format']} in "
            f"{stored['destination']}"
        )
