"""The farm configuration: one source of defaults, the layers (file,
GENERALS_RL__ variables, flags), errors naming the key path, the value and what
is allowed, `generals-rl config show|check`, and which keys apply while running."""

from __future__ import annotations

import pytest

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from conftest import PROJECT_ROOT
from generals_rl import RewardConfig
from generals_rl.cli import build_parser, main
from generals_rl.cli_config import cli_defaults, explicit_flags, flag_overrides
from generals_rl.config import ConfigError, FarmConfig, load_config
from generals_rl.config.farm import apply_hot, changed_keys
from generals_rl.selfplay import SelfPlayConfig
from generals_rl.storage import Rotation

EXAMPLE = PROJECT_ROOT / "examples" / "farm.yaml"


def write(path, text: str):
    path.write_text(text)
    return path


def test_defaults_are_the_librarys():
    config = FarmConfig()
    assert config.selfplay_config() == SelfPlayConfig()
    assert config.reward_config() == RewardConfig()
    assert config.storage.rotation.to_rotation() == Rotation()
    # The command line's defaults are the same ones.
    parser = build_parser()
    args = parser.parse_args(["selfplay"])
    for name, value in cli_defaults().items():
        assert getattr(args, name) == value, name
    assert args.max_ticks == config.collection.max_ticks == 2000
    assert args.address == config.streaming.address
    assert args.max_streams == config.streaming.max_connections
    assert (args.output, args.format) == (config.storage.directory, config.storage.format)


def test_the_example_passes_config_check(capsys):
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert "ok" in capsys.readouterr().out


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = write(
        tmp_path / "farm.yaml", "storage:\n  format: tfrecord\ncollection:\n  envs: 8\n  seed: 5\n"
    )
    environ = {
        "GENERALS_RL__STORAGE__FORMAT": "npz",
        "GENERALS_RL__COLLECTION__ENVS": "12",
        "GENERALS_RL__COLLECTION__BOTS": "[heuristic, heuristic, random]",
        "UNRELATED": "x",
    }
    config = load_config(path, environ=environ)
    assert config.storage.format == "npz"  # the environment beats the file
    assert config.collection.envs == 12 and config.collection.seed == 5
    assert config.collection.bots == ("heuristic", "heuristic", "random")
    flags = flag_overrides(
        explicit_flags(["selfplay", "--config", str(path), "--num-envs", "3", "--output", "none"])
    )
    assert flags == {
        "collection": {"envs": 3},
        "storage": {"enabled": False},
    }  # only the flags given
    config = load_config(path, environ=environ, overrides=flags)
    assert (
        config.collection.envs == 3
        and not config.storage.enabled
        and config.storage.format == "npz"
    )
    s3 = flag_overrides({"output": "s3://bucket/runs/a", "policies": "random,random", "games": 0})
    assert s3 == {
        "storage": {"type": "s3", "s3": {"bucket": "bucket", "prefix": "runs/a"}},
        "collection": {"bots": ["random", "random"], "games": None},
    }

    monkeypatch.setenv("GENERALS_RL__STORAGE__FORMAT", "npz")
    assert main(["config", "show", str(path)]) == 0


def test_config_show_prints_the_effective_config(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setenv("GENERALS_RL__REWARDS__WIN", "2.5")
    assert main(["config", "show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["rewards"]["win"] == 2.5
    assert FarmConfig.model_validate(shown).collection == FarmConfig().collection


@pytest.mark.parametrize(
    "text, expected",
    [
        ("storage:\n  type: s3\n", "storage.s3.bucket: required when storage.type is s3"),
        (
            "collection:\n  envs: 0\n",
            "collection.envs: input should be greater than or equal to 1 (got 0)",
        ),
        (
            "collection:\n  bots: [heuristic, alphago]\n",
            "collection.bots[1]: a policy is one of heuristic, random or "
            "checkpoint:PATH[@OPTIONS] (got 'alphago')",
        ),
        (
            "storage:\n  formt: npz\n",
            "storage.formt: unknown key; allowed: enabled, type, directory, format, rotation, s3",
        ),
        (
            "storage:\n  format: csv\n",
            "storage.format: input should be 'parquet', 'tfrecord' or 'npz' (got 'csv')",
        ),
        ("streaming:\n  token: hunter2\n", "streaming.token: never inline; use token_file"),
        ("streaming:\n  tls: {cert: a.pem}\n", "streaming.tls.key: required when tls.cert is set"),
        ("streaming:\n  address: localhost\n", "streaming.address: string should match pattern"),
        ("rewards:\n  win: lots\n", "rewards.win: input should be a valid number"),
        ("collection:\n  players: 3\n", "collection.players: 3 does not match bots"),
        (
            "metrics: {address: 9464}\n",
            "metrics.address: input should be a valid string (got 9464)",
        ),
        ("[1, 2]\n", "expected a mapping of sections at the top"),
        ("collection:\n  envs: [\n", "line 3, column 1: invalid YAML"),
    ],
)
def test_errors_name_the_key_path_the_value_and_what_is_allowed(tmp_path, capsys, text, expected):
    path = write(tmp_path / "farm.yaml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert expected in str(error.value)
    assert str(error.value).startswith(str(path))
    assert main(["config", "check", str(path)]) == 2
    assert expected in capsys.readouterr().err
    if "token" in text:
        assert "hunter2" not in str(error.value)  # a secret is never echoed


def test_every_problem_is_listed_and_the_environment_is_checked_too(tmp_path):
    path = write(tmp_path / "farm.yaml", "collection:\n  envs: -1\n  seed: -2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"GENERALS_RL__STORAGE__TYPE": "ftp"})
    problems = error.value.problems
    assert any(p.startswith("collection.envs:") for p in problems)
    assert any(p.startswith("collection.seed:") for p in problems)
    assert any(
        p.startswith("storage.type:") and "'file' or 's3'" in p and "'ftp'" in p for p in problems
    )


def test_the_token_comes_from_a_file_or_a_variable(tmp_path):
    token_file = write(tmp_path / "token", "s3cret\n")
    assert (
        load_config(
            environ={}, overrides={"streaming": {"token_file": str(token_file)}}
        ).streaming.token()
        == "s3cret"
    )
    config = load_config(environ={}, overrides={"streaming": {"token_env": "FARM_TOKEN"}})
    assert config.streaming.token({"FARM_TOKEN": "abc"}) == "abc"
    with pytest.raises(
        ConfigError, match=r"streaming\.token_env: the variable FARM_TOKEN is not set"
    ):
        config.streaming.token({})
    assert "s3cret" not in config.to_yaml()


def test_hot_keys_apply_and_cold_keys_are_kept():
    old = FarmConfig()
    new = load_config(
        environ={},
        overrides={
            "rewards": {"win": 3.0},
            "collection": {"envs": 64, "bots": ["random", "heuristic"]},
            "storage": {"rotation": {"max_age": 5}},
            "streaming": {"address": "127.0.0.1:1"},
        },
    )
    assert changed_keys(old, new) == [
        "collection.bots",
        "collection.envs",
        "rewards.win",
        "storage.rotation.max_age",
        "streaming.address",
    ]
    config, applied, cold = apply_hot(old, new)
    assert applied == ["collection.bots", "rewards.win", "storage.rotation.max_age"]
    assert cold == ["collection.envs", "streaming.address"]
    assert config.rewards.win == 3.0 and config.collection.bots == ("random", "heuristic")
    assert (
        config.collection.envs == old.collection.envs
        and config.streaming.address == old.streaming.address
    )
    # A different number of bots changes the players: that needs a restart.
    three = load_config(environ={}, overrides={"collection": {"bots": ["random"] * 3}})
    assert apply_hot(old, three)[1:] == ([], ["collection.bots"])


def test_bots_take_a_checkpoint_and_refuse_unknown_names():
    config = load_config(
        environ={}, overrides={"collection": {"bots": ["checkpoint:runs/x/weights@0.1", "random"]}}
    )
    assert config.selfplay_config().policies == ("checkpoint:runs/x/weights@0.1", "random")
    for bad in ("checkpoint:", "alphago"):
        with pytest.raises(
            ConfigError,
            match=r"collection\.bots\[0\]: .*a policy is one of heuristic, random or checkpoint",
        ):
            load_config(environ={}, overrides={"collection": {"bots": [bad, "random"]}})


def test_selfplay_with_an_invalid_config_exits_2_naming_the_key(tmp_path, capsys):
    path = write(tmp_path / "farm.yaml", "collection:\n  buffer_policy: drop\n")
    assert main(["selfplay", "--config", str(path)]) == 2
    assert (
        "collection.buffer_policy: input should be 'block' or 'overwrite' (got 'drop')"
        in capsys.readouterr().err
    )


def test_a_config_cannot_change_in_place():
    from pydantic import ValidationError

    config = FarmConfig()
    with pytest.raises(ValidationError, match="frozen"):
        config.collection.envs = 3


_WITHOUT_FARM_EXTRA = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "yaml", "prometheus_client", "watchfiles"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
from generals_rl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_selfplay_runs_without_the_farm_extra(tmp_path):
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if not k.startswith("GENERALS_RL__")}
    run = [sys.executable, "-c", _WITHOUT_FARM_EXTRA]
    played = subprocess.run(
        [
            *run,
            "selfplay",
            "--games",
            "2",
            "--num-envs",
            "2",
            "--address",
            "127.0.0.1:0",
            "--output",
            "none",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )
    assert played.returncode == 0, played.stderr
    assert '"games": 2' in played.stdout
    # The farm commands say which extra they need.
    shown = subprocess.run(
        [*run, "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert shown.returncode == 2 and "pip install 'generals-rl[farm]'" in shown.stderr


def test_the_readme_sample_is_a_valid_config(tmp_path):
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Operating a farm") :]
    sample = section[section.index("```yaml") + len("```yaml") :]
    sample = sample[: sample.index("```")]
    assert main(["config", "check", str(write(tmp_path / "farm.yaml", sample))]) == 0
    config = load_config(tmp_path / "farm.yaml", environ={})
    assert config.collection.envs == 64 and config.metrics.address == "127.0.0.1:9464"
