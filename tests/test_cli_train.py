"""The training commands: train ppo, evaluate, plot; one-line errors and exit codes."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

from generals_rl.cli import main
from generals_rl.train.checkpoint import load_checkpoint

TINY = [
    "--size",
    "5x5",
    "--num-envs",
    "4",
    "--rollout-steps",
    "8",
    "--minibatches",
    "2",
    "--epochs",
    "1",
    "--channels",
    "4",
    "--blocks",
    "1",
    "--max-ticks",
    "40",
    "--checkpoint-every",
    "1",
    "--quiet",
]


def one_error_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err
    return err[0]


def test_train_resume_plot_and_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--run-dir",
                str(run),
                "--total-steps",
                "64",
                *TINY,
                "--reward",
                "land_gained=0.01",
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["reward"]["land_gained"] == 0.01 and config["height"] == 5
    assert (run / "checkpoints" / "latest.pt").exists()
    # a second run into the same directory is refused; --resume continues (here: already done)
    assert main(["train", "ppo", "--run-dir", str(run), "--total-steps", "64", *TINY]) == 2
    one_error_line(capsys, "generals-rl train ppo:")
    assert main(["train", "ppo", "--run-dir", str(run), "--resume", "--quiet"]) == 0

    assert main(["plot", str(run)]) == 0
    png = run / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    gif = tmp_path / "game.gif"
    checkpoint = str(run / "checkpoints" / "latest.pt")
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                checkpoint,
                "--opponent",
                "random",
                "--games",
                "6",
                "--size",
                "5x5",
                "--max-ticks",
                "30",
                "--gif",
                str(gif),
                "--frames",
                str(tmp_path / "frames"),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert result["games"] == 6 == result["wins"] + result["draws"] + result["losses"]
    low, high = result["win_rate_ci95"]
    assert 0 <= low <= result["win_rate"] <= high <= 1
    assert gif.exists() and any((tmp_path / "frames").iterdir())
    assert (
        main(
            [
                "evaluate",
                checkpoint,
                "--opponent",
                f"checkpoint:{checkpoint}",
                "--games",
                "2",
                "--size",
                "5x5",
                "--max-ticks",
                "20",
            ]
        )
        == 0
    )
    assert "2 games:" in capsys.readouterr().out


def test_config_file_and_overrides(tmp_path):
    config = tmp_path / "ppo.json"
    config.write_text(json.dumps({"gamma": 0.95, "lr": 0.01, "reward": {"win": 2.0}}))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--run-dir",
                str(run),
                "--config",
                str(config),
                "--lr",
                "0.002",
                "--total-steps",
                "32",
                *TINY,
            ]
        )
        == 0
    )
    saved = json.loads((run / "config.json").read_text())
    assert saved["gamma"] == 0.95 and saved["lr"] == 0.002 and saved["reward"]["win"] == 2.0


def test_factorised_head_and_bfloat16_trunk(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "ppo", "--run-dir", str(run), "--total-steps", "32", *TINY]
    assert main([*argv, "--action-head", "factorised", "--bfloat16-trunk"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["action_head"] == "factorised" and saved["bfloat16_trunk"] is True
    net = load_checkpoint(run / "checkpoints" / "latest.pt")["config"]
    assert net["action_head"] == "factorised" and net["bfloat16_trunk"] is True
    # the factorised network plays: evaluation loads and runs it
    checkpoint = str(run / "checkpoints" / "latest.pt")
    capsys.readouterr()
    evaluate = ["evaluate", checkpoint, "--games", "2", "--size", "5x5", "--max-ticks", "20"]
    assert main(evaluate) == 0
    assert "2 games:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,code,prefix",
    [
        (
            ["train", "ppo", "--reward", "bogus=1", "--total-steps", "8"],
            2,
            "generals-rl train ppo: unknown reward",
        ),
        (["train", "ppo", "--num-envs", "0"], 2, "generals-rl train ppo: num_envs"),
        (["train", "ppo", "--action-head", "diagonal"], 2, "generals-rl train ppo: action_head"),
        (["train", "ppo", "--move-view", "2"], 2, "generals-rl train ppo: move_view"),
        (["train", "ppo", "--resume"], 1, "generals-rl train ppo:"),
        (["evaluate", "missing.pt"], 1, "generals-rl evaluate: missing.pt"),
        (["evaluate", "JUNK", "--games", "0"], 2, "generals-rl evaluate: --games"),
        (["evaluate", "JUNK"], 1, "generals-rl evaluate:"),
        (["evaluate", "CKPT", "--opponent", "chess"], 2, "generals-rl evaluate: opponent"),
        (["plot", "nowhere"], 1, "generals-rl plot: nowhere"),
        (["train", "dqn", "--from", ","], 2, "generals-rl train dqn: --from"),
        (
            ["train", "dqn", "--from", "127.0.0.1:1", "--steps", "0"],
            2,
            "generals-rl train dqn: steps",
        ),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, code, prefix):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "JUNK").write_bytes(b"not a checkpoint")
    if "CKPT" in argv:
        assert main(["train", "ppo", "--run-dir", "r", "--total-steps", "8", *TINY]) == 0
        argv = [a.replace("CKPT", "r/checkpoints/latest.pt") for a in argv]
    if argv[:2] == ["train", "ppo"]:
        argv = [*argv, "--run-dir", str(tmp_path / "new"), "--quiet"]
    capsys.readouterr()
    assert main(argv) == code
    one_error_line(capsys, prefix)


@pytest.mark.parametrize("given, kept", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_learner_lets_idle_openmp_threads_sleep(monkeypatch, capsys, given, kept):
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        environ["OMP_WAIT_POLICY"] = given
    monkeypatch.setattr(os, "environ", environ)
    # Refused after the environment is set, before any consumer starts.
    assert main(["train", "dqn", "--from", "127.0.0.1:1", "--steps", "0"]) == 2
    assert environ["OMP_WAIT_POLICY"] == kept


def test_bad_usage_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "x.pt", "--size", "ten"])
    assert exit_info.value.code == 2
