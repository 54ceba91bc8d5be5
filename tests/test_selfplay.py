"""`generals-rl selfplay`: plays, serves over gRPC, waits for consumers to drain,
prints a summary; and its hook for other destinations (sinks)."""

from __future__ import annotations

import io
import itertools
import json
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from generals_rl.selfplay import SelfPlay, SelfPlayConfig, run_selfplay
from generals_rl.service import ExperienceConsumer

COMMAND = [sys.executable, "-m", "generals_rl.cli", "selfplay"]
SMALL = [
    "--height",
    "10",
    "--width",
    "10",
    "--max-ticks",
    "200",
    "--num-envs",
    "4",
    "--address",
    "127.0.0.1:0",
    "--output",
    "none",
]


class _Selfplay:
    """The command in a subprocess; ``address`` once it serves."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, *SMALL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.log: list[str] = []
        self._served = threading.Event()
        self.address = None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._served.wait(30):
            self.process.kill()
            raise AssertionError(f"selfplay did not start serving: {self.log}")

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            match = re.search(r"serving experiences on (\S+)", line)
            if match:
                self.address = match.group(1)
                self._served.set()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """The exit code and stdout (a summary: far below a pipe's buffer, so waiting
        first cannot block). stderr stays with the log reader, which has every line
        once the process is gone."""
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        out = self.process.stdout.read()
        self._reader.join(10)
        return self.process.returncode, out


def test_selfplay_serves_every_experience_to_a_consumer_then_exits_with_a_summary():
    selfplay = _Selfplay(
        "--games", "12", "--wait-for-consumers", "1", "--policies", "heuristic,random", "--json"
    )
    with ExperienceConsumer(selfplay.address) as consumer:
        batches = list(consumer.stream_experiences(follow=True, batch_size=256, start="oldest"))
    code, out = selfplay.finish()
    assert code == 0, selfplay.log
    summary = json.loads(out)
    sequences = np.concatenate([b.sequence for b in batches])
    assert summary["experiences"] == len(sequences) > 0
    np.testing.assert_array_equal(sequences, np.arange(len(sequences)))
    assert summary["games"] >= 12
    assert sum(summary["wins"].values()) == summary["games"]
    assert set(summary["wins"]) == {"player 0 (heuristic)", "player 1 (random)", "no winner"}
    assert summary["wins_by_policy"]["heuristic"] > summary["wins_by_policy"]["random"]
    assert batches[0].state.shape[1:] == (9, 10, 10)
    assert any("waiting for 1 consumer(s)" in line for line in selfplay.log)


def test_selfplay_stores_parquet_by_default_and_numbers_on_across_runs(tmp_path):
    pyarrow_dataset = pytest.importorskip("pyarrow.dataset")
    reported = []
    for _ in range(2):
        result = subprocess.run(
            [*COMMAND, *SMALL[:-2], "--games", "4", "--json"],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["stored"]["format"] == "parquet"
        assert summary["stored"]["experiences"] == summary["experiences"] > 0
        reported.append(summary["experiences"])
    table = pyarrow_dataset.dataset(tmp_path / "selfplay-data", format="parquet").to_table(
        columns=["sequence", "player_id", "tick"]
    )
    sequences = np.sort(table.column("sequence").to_numpy())
    # The second run continues the stored numbering: one gap-free range, nothing twice.
    np.testing.assert_array_equal(sequences, np.arange(sum(reported)))


def test_selfplay_without_a_game_limit_stops_on_sigint_with_a_summary():
    selfplay = _Selfplay("--games", "0", "--policies", "random,random,random")
    with ExperienceConsumer(selfplay.address) as consumer:
        stream = consumer.stream_experiences(follow=True, decode=False)
        first = next(stream)
        assert set(first.player_id.tolist()) <= {0, 1, 2}
        selfplay.process.send_signal(signal.SIGINT)
        rest = list(stream)  # ends when the server shuts down gracefully
    code, out = selfplay.finish()
    assert code == 0, selfplay.log
    experiences = int(re.search(r"experiences: (\d+)", out).group(1))
    assert len(first) + sum(map(len, rest)) == experiences
    assert "winners by policy: random" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--policies", "heuristic,chess"], "unknown ['chess']"),
        (["--policies", "random"], "2..16 players"),
        (["--games", "-3"], "games: must be at least 1"),
        (["--address", "256.1.1.1:1"], "cannot listen on 256.1.1.1:1"),
    ],
)
def test_bad_options_are_reported_without_a_traceback(args, words):
    result = subprocess.run(
        [*COMMAND, *args], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert words in result.stderr and "Traceback" not in result.stderr


class _RecordingSink:
    """A destination reading everything through its own cursor, like a storage writer."""

    def __init__(self, buffer) -> None:
        self.buffer = buffer
        self.events: list[str] = []
        self.sequences: list[np.ndarray] = []

    def start(self) -> None:
        self.events.append(f"start at {self.buffer.head}")
        self.cursor = self.buffer.cursor(start="oldest")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sequences.append(self.cursor.read_raw(4096, 0.01).sequence)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sequences.append(self.cursor.read_raw(1 << 20, 0.0).sequence)  # the rest
        self.cursor.close()
        self.events.append(f"stop at {self.buffer.head}")


def test_sinks_start_before_play_and_stop_after_it_with_every_experience():
    sinks = []

    def factory(buffer):
        sinks.append(_RecordingSink(buffer))
        return sinks[-1]

    config = SelfPlayConfig(games=6, num_envs=3, height=10, width=10, max_ticks=150)
    log = io.StringIO()
    summary = run_selfplay(config, "127.0.0.1:0", sinks=[factory], log=log)
    assert "serving experiences on 127.0.0.1:" in log.getvalue()
    sink = sinks[0]
    assert sink.events == ["start at 0", f"stop at {summary.experiences}"]
    np.testing.assert_array_equal(np.concatenate(sink.sequences), np.arange(summary.experiences))
    assert summary.games >= 6


def test_progress_reports_games_and_rates():
    config = SelfPlayConfig(
        games=20, num_envs=4, height=10, width=10, max_ticks=300, policies=("random", "random")
    )
    reports = []
    summary = SelfPlay(config).run(on_progress=reports.append, progress_interval=0.0)
    assert reports and reports[-1].games <= summary.games
    assert all(b.experiences >= a.experiences for a, b in itertools.pairwise(reports))
    assert max(r.experiences_per_second for r in reports) > 0
    assert summary.experiences_per_second > 0 and summary.mean_game_length > 0


def test_a_stalled_step_retries_the_same_actions_without_asking_the_bots_again():
    config = SelfPlayConfig(
        policies=("random", "random"),
        games=None,
        num_envs=4,
        height=6,
        width=6,
        capacity=64,
        buffer_policy="block",
    )
    selfplay = SelfPlay(config)
    cursor = selfplay.buffer.cursor()  # never read: the ring fills and holds play back
    calls = []
    for bot in selfplay.bots:
        act = bot.act

        def counted(*args, _act=act, **kwargs):
            calls.append(1)
            return _act(*args, **kwargs)

        bot.act = counted
    stop = threading.Event()
    timer = threading.Timer(1.2, stop.set)
    timer.start()
    try:
        summary = selfplay.run(stop)
    finally:
        timer.cancel()
        cursor.close()
    # 64 experiences of room, 8 a step: 8 steps went through, then every try stalled.
    assert summary.experiences == 64 and summary.stalled_steps >= 3
    # Two bots, asked once a step: 8 steps, the stalled one (however often it was tried)
    # and the final truncating step.
    assert len(calls) == 2 * (8 + 1 + 1)
