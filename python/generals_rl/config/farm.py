"""The farm's configuration: one YAML file with the sections ``collection``,
``streaming``, ``storage``, ``rewards`` and ``metrics`` (and ``log_level``).

Layers, later ones winning: the defaults (the library's own, see
``generals_rl.defaults`` and ``SelfPlayConfig``), the file, environment
variables ``GENERALS_RL__SECTION__KEY=value`` (values parsed as YAML scalars,
so ``GENERALS_RL__STORAGE__FORMAT=npz`` or ``GENERALS_RL__COLLECTION__BOTS=
[heuristic,heuristic]``), then command-line flags. Invalid settings raise
``ConfigError`` naming each key path, the value and what is allowed.

Needs ``pip install 'generals-rl[farm]'`` (pydantic, PyYAML).

Longer than 400 lines: the schema (one pydantic model per section) and the
layering, error reporting and hot-reload rules that walk it are one unit.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

try:
    import yaml
    from pydantic import (
        AfterValidator,
        BaseModel,
        ConfigDict,
        Field,
        ValidationError,
        create_model,
        model_validator,
    )
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"the farm configuration needs {error.name}: pip install 'generals-rl[farm]'",
        name=error.name,
    ) from error

from .. import _core
from ..defaults import (
    DRAIN_TIMEOUT,
    MAX_STREAMS,
    MAX_TICKS,
    REWARD_WEIGHTS,
    STORAGE_DIRECTORY,
    STORAGE_FORMAT,
)
from ..selfplay import POLICY_CHOICES, SelfPlayConfig, is_policy_name
from ..service.server import DEFAULT_ADDRESS
from ..service.streaming import DEFAULT_BATCH_WAIT_MS, MAX_BATCH_WAIT_MS
from ..storage.writer import Rotation

ENV_PREFIX = "GENERALS_RL__"

# Keys applied to a running farm when the file changes (a key names its whole
# subtree). Every other key needs a restart; a reload keeps its running value.
HOT_KEYS = (
    "log_level",
    "rewards",
    "collection.bots",
    "streaming.batch_timeout",
    "streaming.max_connections",
    "storage.rotation",
)

_SELFPLAY: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SelfPlayConfig)}
_ROTATION: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Rotation)}


def _policy(name: str) -> str:
    if not is_policy_name(name):
        raise ValueError(f"a policy is one of {POLICY_CHOICES}")
    return name


# A built-in bot's name or a network's checkpoint (``checkpoint:PATH[@OPTIONS]``).
Policy = Annotated[str, AfterValidator(_policy)]


class ConfigError(ValueError):
    """An invalid configuration: ``problems`` holds one line per problem, each
    starting with the key path."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Board(_Section):
    height: int = Field(_SELFPLAY["height"], ge=2, le=256)
    width: int = Field(_SELFPLAY["width"], ge=2, le=256)


class Collection(_Section):
    """Self-play: which bots play, on what boards, into what buffer."""

    enabled: bool = True
    games: int | None = Field(
        _SELFPLAY["games"], ge=0, description="games to finish; 0 or null: until stopped"
    )
    envs: int = Field(_SELFPLAY["num_envs"], ge=1, description="games played at once")
    threads: int | None = Field(
        _SELFPLAY["num_threads"], ge=1, description="stepping threads (null: one per core)"
    )
    board: Board = Board()
    bots: tuple[Policy, ...] = Field(
        _SELFPLAY["policies"], min_length=2, max_length=_core.MAX_PLAYERS
    )
    players: int | None = Field(None, description="optional: must equal the number of bots")
    max_ticks: int = Field(MAX_TICKS, ge=1)
    seed: int = Field(_SELFPLAY["seed"], ge=0)
    buffer_size: int = Field(_SELFPLAY["capacity"], ge=1)
    buffer_policy: Literal["block", "overwrite"] = _SELFPLAY["buffer_policy"]
    wait_for_consumers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Collection:
        if self.players is not None and self.players != len(self.bots):
            raise ValueError(
                f"players: {self.players} does not match bots ({len(self.bots)}: "
                f"{', '.join(self.bots)}); "
                "give one bot per player"
            )
        return self


class Tls(_Section):
    cert: str | None = Field(None, description="PEM certificate chain")
    key: str | None = Field(None, description="PEM private key")

    @model_validator(mode="after")
    def _both(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            missing = "key" if self.key is None else "cert"
            raise ValueError(
                f"{missing}: required when tls.{'cert' if missing == 'key' else 'key'} is set"
            )
        return self


class Streaming(_Section):
    """The gRPC experience service. The bearer token is read from a file or an
    environment variable, never written in the configuration."""

    address: str = Field(
        DEFAULT_ADDRESS, pattern=r"^\S+:\d+$", description="host:port; port 0 picks one"
    )
    max_connections: int = Field(MAX_STREAMS, ge=1)
    batch_timeout: float = Field(
        DEFAULT_BATCH_WAIT_MS / 1000,
        gt=0,
        le=MAX_BATCH_WAIT_MS / 1000,
        description="seconds a stream waits to fill a batch when the client does not say",
    )
    drain_timeout: float = Field(DRAIN_TIMEOUT, ge=0)
    keep_running: bool = False
    tls: Tls = Tls()
    token_file: str | None = None
    token_env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_inline_token(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "token" in data:
            raise ValueError(
                "token: never inline; use token_file (a file holding it) or token_env (a variable "
                "name)"
            )
        return data

    @model_validator(mode="after")
    def _one_token_source(self) -> Streaming:
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("token_env: give token_file or token_env, not both")
        return self

    def token(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The bearer token (read now), or None."""
        if self.token_file is not None:
            with open(self.token_file) as f:
                token = f.read().strip()
            if not token:
                raise ConfigError([f"streaming.token_file: {self.token_file} is empty"])
            return token
        if self.token_env is not None:
            token = environ.get(self.token_env, "")
            if not token:
                raise ConfigError(
                    [f"streaming.token_env: the variable {self.token_env} is not set"]
                )
            return token
        return None


class StorageRotation(_Section):
    max_experiences: int = Field(_ROTATION["max_experiences"], ge=1)
    max_bytes: int = Field(_ROTATION["max_bytes"], ge=1)
    max_age: float = Field(_ROTATION["max_age"], gt=0, description="seconds")

    def to_rotation(self, chunk_size: int | None = None) -> Rotation:
        extra = {} if chunk_size is None else {"chunk_size": chunk_size}
        return Rotation(
            max_experiences=self.max_experiences,
            max_bytes=self.max_bytes,
            max_age=self.max_age,
            **extra,
        )


class S3(_Section):
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    endpoint: str | None = Field(None, description="e.g. http://127.0.0.1:9000 for MinIO")


class Storage(_Section):
    """Durable shards of every experience, in a local directory or on S3."""

    enabled: bool = True
    type: Literal["file", "s3"] = "file"
    directory: str = STORAGE_DIRECTORY
    format: Literal["parquet", "tfrecord", "npz"] = STORAGE_FORMAT  # type: ignore[assignment]
    rotation: StorageRotation = StorageRotation()
    s3: S3 = S3()

    @model_validator(mode="after")
    def _destination(self) -> Storage:
        if self.type == "s3" and not self.s3.bucket:
            raise ValueError("s3.bucket: required when storage.type is s3")
        return self

    @property
    def destination(self) -> str:
        if self.type == "s3":
            return f"s3://{self.s3.bucket}/{self.s3.prefix}".rstrip("/")
        return self.directory

    def writer_options(self) -> dict:
        options: dict[str, Any] = {"rotation": self.rotation.to_rotation()}
        if self.type == "s3":
            if self.s3.endpoint:
                options["endpoint_url"] = self.s3.endpoint
            if self.s3.region:
                options["region_name"] = self.s3.region
        return options


# Every RewardConfig weight, with the engine's defaults (fields built at run
# time, which the type checker cannot follow).
Rewards = create_model(  # type: ignore[call-overload]
    "Rewards",
    __base__=_Section,
    __doc__="Per-player, per-tick reward weights (see RewardConfig).",
    **{name: (float, value) for name, value in REWARD_WEIGHTS.items()},
)


class Metrics(_Section):
    address: str | None = Field(
        None,
        pattern=r"^\S+:\d+$",
        description="host:port of /metrics, /healthz and /readyz (null: off)",
    )


class FarmConfig(_Section):
    """Everything a farm runs with. Immutable: a reload builds a new one."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    collection: Collection = Collection()
    streaming: Streaming = Streaming()
    storage: Storage = Storage()
    rewards: Rewards = Rewards()
    metrics: Metrics = Metrics()

    def selfplay_config(self) -> SelfPlayConfig:
        c = self.collection
        return SelfPlayConfig(
            policies=tuple(c.bots),
            games=c.games or None,
            num_envs=c.envs,
            height=c.board.height,
            width=c.board.width,
            num_threads=c.threads,
            seed=c.seed,
            max_ticks=c.max_ticks,
            capacity=c.buffer_size,
            buffer_policy=c.buffer_policy,
        )

    def reward_config(self):
        from ..vec_env import RewardConfig

        return RewardConfig(**self.rewards.model_dump())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ---- loading -------------------------------------------------------------------


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in a YAML file (empty for an empty file); ConfigError on a
    syntax error (with line and column) or a document that is not a mapping."""
    source = os.fspath(path)
    try:
        with open(source) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"expected a mapping of sections at the top, got {type(data).__name__}"], source
        )
    return data


def env_overrides(environ: Mapping[str, str] = os.environ) -> dict:
    """``GENERALS_RL__A__B=value`` as ``{"a": {"b": value}}``, values parsed as YAML."""
    out: dict = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            raise ConfigError([f"{name}: expected GENERALS_RL__SECTION__KEY"], "environment")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        set_path(out, path, value)
    return out


def merge(base: dict, override: Mapping) -> dict:
    """``base`` with ``override`` laid over it, mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_config(data: Mapping, source: str | None = None) -> FarmConfig:
    """``FarmConfig`` from a mapping; ConfigError lists every problem."""
    try:
        return FarmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc), source) from None


def load_config(
    path: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = os.environ,
    overrides: Mapping | None = None,
) -> FarmConfig:
    """The effective configuration: defaults, the file at ``path``, the
    ``GENERALS_RL__*`` variables of ``environ`` (None: ignore them), then
    ``overrides`` (e.g. from command-line flags)."""
    source = os.fspath(path) if path is not None else None
    data = read_yaml(path) if path is not None else {}
    if environ is not None:
        data = merge(data, env_overrides(environ))
    if overrides:
        data = merge(data, overrides)
    return parse_config(data, source)


# ---- errors -------------------------------------------------------------------

_RELATIVE_KEY = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.DOTALL)


def format_errors(exc: ValidationError) -> list[str]:
    """One line per problem: ``key.path: what is wrong (got value)``."""
    problems = []
    errors = exc.errors(include_url=False)
    item_errors = {
        error["loc"][:-1] for error in errors if error["loc"] and isinstance(error["loc"][-1], int)
    }
    for error in errors:
        if error["type"] in ("too_short", "too_long") and error["loc"] in item_errors:
            continue  # a list that is short only because some items are invalid: those say why
        loc = [str(part) for part in error["loc"]]
        message, kind = error["msg"], error["type"]
        show_value = kind not in ("missing", "extra_forbidden") and not isinstance(
            error.get("input"), Mapping
        )
        if kind == "value_error":
            message = message.removeprefix("Value error, ")
            match = _RELATIVE_KEY.match(message)
            if match:
                loc += match[1].split(".")
                message = match[2]
                show_value = False
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            message = f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
        else:
            message = message[:1].lower() + message[1:]
        path = _format_path(loc)
        value = f" (got {error['input']!r})" if show_value else ""
        problems.append(f"{path or '(top level)'}: {message}{value}")
    return problems


def _format_path(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _allowed_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] | None = FarmConfig
    for part in loc:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return list(model.model_fields) if model else []


# ---- paths ----------------------------------------------------------------------


def set_path(data: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ConfigError(
                [f"{'.'.join(path)}: {part} is a value, not a section"], "environment"
            )
    data[path[-1]] = value


def get_path(data: Mapping, path: str) -> Any:
    for part in path.split("."):
        data = data[part]
    return data


def changed_keys(old: FarmConfig, new: FarmConfig) -> list[str]:
    """The leaf key paths whose values differ."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() | b.keys():
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b:
            out.append(prefix)

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return sorted(out)


def is_hot(key: str, old: FarmConfig | None = None, new: FarmConfig | None = None) -> bool:
    """Whether ``key`` applies to a running farm. ``collection.bots`` is hot as
    long as the number of players stays."""
    if (
        key.startswith("collection.bots")
        and old is not None
        and new is not None
        and len(old.collection.bots) != len(new.collection.bots)
    ):
        return False
    return any(key == hot or key.startswith(hot + ".") for hot in HOT_KEYS)


def apply_hot(old: FarmConfig, new: FarmConfig) -> tuple[FarmConfig, list[str], list[str]]:
    """``old`` with the hot keys changed in ``new``: ``(config, applied keys,
    keys that need a restart)``. The cold keys keep their values in ``old``."""
    changed = changed_keys(old, new)
    hot = [k for k in changed if is_hot(k, old, new)]
    cold = [k for k in changed if k not in hot]
    data = old.model_dump(mode="json")
    fresh = new.model_dump(mode="json")
    for key in hot:
        parts = key.split(".")
        set_path(data, parts, get_path(fresh, key))
    return parse_config(data), hot, cold
