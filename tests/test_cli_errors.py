"""The command line never shows a traceback for a user's mistake (one line on
stderr, exit code 2) or an outside failure (one line, exit code 1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from generals_rl._core import LZSTRING_MAX_OUTPUT
from service_support import port_in_use

CLI = [sys.executable, "-m", "generals_rl.cli"]
SMALL = ["--height", "6", "--width", "6", "--games", "2", "--num-envs", "2", "--max-ticks", "50"]


def run(
    *args: str, env: dict | None = None, prelude: str | None = None
) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (``prelude``: Python run first in that process)."""
    command = (
        CLI
        if prelude is None
        else [
            sys.executable,
            "-c",
            f"{prelude}\nfrom generals_rl.cli import main\nraise SystemExit(main())",
        ]
    )
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def assert_one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ---- usage: exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["replay", "x.gior", "--snapshot-every", "0"],
            ["--snapshot-every", "must be at least 1, got 0"],
        ),
        (["selfplay", "--drain-timeout", "-1"], ["--drain-timeout", "got -1"]),
        (["selfplay", "--drain-timeout", "nan"], ["--drain-timeout", "got nan"]),
        (["selfplay", "--wait-for-consumers", "-2"], ["--wait-for-consumers", "at least 0"]),
        (["selfplay", "--max-streams", "0"], ["--max-streams", "at least 1"]),
        (
            ["selfplay", "--address", "127.0.0.1:99999"],
            ["--address", "port 99999", "outside 0..65535"],
        ),
        (["selfplay", "--address", "nohost"], ["--address", "is not host:port"]),
        (["selfplay", "--buffer-policy", "sometimes"], ["--buffer-policy", "invalid choice"]),
        (
            ["selfplay", "--address", "256.1.1.1:1", "--output", "none"],
            ["cannot listen on 256.1.1.1:1"],
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, words):
    assert_one_line(run(*args), 2, *words)


def test_a_trace_into_a_missing_directory_is_one_line(tmp_path):
    replay = tmp_path / "tiny.gioreplay"
    replay.write_text(
        json.dumps(
            {
                "version": 7,
                "id": "tiny",
                "mapWidth": 4,
                "mapHeight": 4,
                "usernames": ["a", "b"],
                "cities": [],
                "cityArmies": [],
                "generals": [0, 15],
                "mountains": [],
                "moves": [],
                "afks": [],
            }
        )
    )
    out = tmp_path / "missing" / "trace.json"
    assert_one_line(run("replay", str(replay), "--trace", str(out)), 2, "No such file", str(out))


def _lzstring_bomb(steps: int) -> bytes:
    """A .gior whose every code repeats the previous entry plus a character: the
    output grows quadratically (``steps``**2 / 2 characters from ``steps`` codes)."""
    bits: list[int] = []

    def write(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    write(0, 2)  # an 8-bit character follows
    write(ord("["), 8)
    entries, enlarge_in, num_bits = 4, 4, 3
    for _ in range(steps):
        write(
            entries, num_bits
        )  # the entry not yet in the dictionary: previous + its first character
        entries += 1
        enlarge_in -= 1
        if enlarge_in == 0:
            enlarge_in, num_bits = 1 << num_bits, num_bits + 1
    write(2, num_bits)  # end of stream
    bits += [0] * (-len(bits) % 16)
    units = [int("".join(map(str, bits[i : i + 16])), 2) for i in range(0, len(bits), 16)]
    return b"".join(unit.to_bytes(2, "big") for unit in units)


def test_a_quadratic_gior_stops_at_the_size_limit(tmp_path):
    from generals_rl.replay import ReplayError, load

    steps = int((2.5 * LZSTRING_MAX_OUTPUT) ** 0.5)  # about 1.25 times the limit
    path = tmp_path / "bomb.gior"
    path.write_bytes(_lzstring_bomb(steps))
    assert path.stat().st_size < 32_000
    start = time.monotonic()
    with pytest.raises(
        ReplayError, match=f"decompresses to more than {LZSTRING_MAX_OUTPUT} characters"
    ):
        load(path)
    assert time.monotonic() - start < 20
    assert_one_line(run("replay", str(path)), 2, "decompresses to more than")


def test_empty_tls_key_is_named(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("")
    args = ["selfplay", *SMALL, "--address", "127.0.0.1:0", "--output", "none"]
    assert_one_line(
        run(*args, "--tls-cert", str(cert), "--tls-key", str(key)),
        2,
        "tls: the private key is empty",
    )
    assert_one_line(
        run(*args, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nokey.pem")),
        2,
        "--tls-key: cannot read",
        "nokey.pem",
    )


@pytest.mark.parametrize("command", ["selfplay", "selfplay --config", "import-replays"])
def test_a_missing_storage_extra_names_the_package(tmp_path, command):
    out = str(tmp_path / "out")
    if command == "selfplay":
        args = ["selfplay", *SMALL, "--address", "127.0.0.1:0", "--output", out]
        setting, instead = f"--format parquet --output {out}", "--output none"
    elif command == "selfplay --config":
        config = tmp_path / "farm.yaml"
        config.write_text(f"storage:\n  format: parquet\n  directory: {out}\n")
        args = ["selfplay", "--config", str(config)]
        setting, instead = "storage.format parquet", "storage.format: npz"
    else:
        args = ["import-replays", str(tmp_path), "--output", out]
        setting, instead = "--format parquet", "--format npz"
    result = run(*args, prelude="import sys; sys.modules['pyarrow'] = None")
    assert_one_line(
        result, 2, f"{setting}: Parquet storage needs pyarrow", "generals-rl[storage]", instead
    )


# ---- outside failures: exit 1 ------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_busy_port_says_address_in_use(host):
    with port_in_use() as port:
        result = run("selfplay", *SMALL, "--address", f"{host}:{port}", "--output", "none")
    assert_one_line(result, 1, f"cannot listen on {host}:{port}", "address already in use")


def test_unreadable_storage_is_one_line(tmp_path):
    from generals_rl.storage.layout import partition_of

    out = tmp_path / "out"
    partition = out / partition_of(time.time())  # where this run would write
    partition.mkdir(parents=True)
    (partition / "_index.json").write_text("{ not json")
    result = run(
        "selfplay", *SMALL, "--address", "127.0.0.1:0", "--output", str(out), "--format", "npz"
    )
    assert_one_line(result, 1, "_index.json: malformed index")


def test_an_unreachable_s3_destination_is_one_line():
    pytest.importorskip("boto3")
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = run(
        "selfplay", *SMALL, "--address", "127.0.0.1:0", "--output", "s3://bucket/run", env=env
    )
    assert_one_line(result, 1, "s3://bucket", "is not reachable")


@pytest.mark.parametrize(
    ("option", "value"),
    [("drain_timeout", -1.0), ("drain_timeout", float("nan")), ("wait_for_consumers", -1)],
)
def test_run_selfplay_refuses_bad_arguments_before_serving(option, value):
    from generals_rl.selfplay import SelfPlayConfig, run_selfplay

    with pytest.raises(ValueError, match=f"{option}: must be at least 0"):
        run_selfplay(
            SelfPlayConfig(games=1, num_envs=1, height=6, width=6), "127.0.0.1:0", **{option: value}
        )


def test_ctrl_c_while_starting_up_is_one_line_and_exit_code_130(monkeypatch, capsys):
    """SIGINT before self-play installs its handler (here, while the buffer is being
    allocated) ends the command with one line, not a traceback."""
    import generals_rl.experience.buffer as buffer_module
    from generals_rl.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(buffer_module._core, "ExperienceBuffer", interrupted)
    assert main(["selfplay", *SMALL, "--address", "127.0.0.1:0", "--output", "none"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "generals-rl: interrupted\n"
    assert captured.out == ""


def test_the_command_line_starts_before_numpy_the_core_or_grpc_are_imported():
    """Everything heavy is imported inside ``main``, where Ctrl-C is answered with one
    line: importing the entry point loads none of it."""
    heavy = ["numpy", "generals_rl._core", "grpc", "generals_rl.vec_env"]
    probe = f"import sys, generals_rl.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_every_package_export_resolves_to_its_module_object():
    import importlib

    import generals_rl

    for name, module in generals_rl._EXPORTED_FROM.items():
        expected = getattr(importlib.import_module(f"generals_rl.{module}"), name)
        assert getattr(generals_rl, name) is expected, name
    assert set(generals_rl.__all__) <= set(dir(generals_rl))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = generals_rl.NoSuchThing
