"""A short run through every part of the C++ extension, for a build with
AddressSanitizer and UndefinedBehaviorSanitizer (.ci/run): games, VecEnv with
both bots recording into a buffer, cursors, sampling, save/load, a TFRecord
dataset written and decoded, every shared replay's trace, and hostile inputs
that must be refused. The sanitizers end the process on any memory error or
undefined behaviour; a wrong answer fails an assertion.

    LD_PRELOAD=$(c++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        python tests/sanitizer_smoke.py build/asan/_core.cpython-*.so
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPLAY_DIR = Path(__file__).resolve().parents[2] / "shared" / "replays"


def load_core(path: str) -> None:
    """Makes ``generals_rl._core`` the extension at ``path`` (before the package loads it)."""
    spec = importlib.util.spec_from_file_location("generals_rl._core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["generals_rl._core"] = module


def refused(call, error=ValueError) -> None:
    try:
        call()
    except error:
        return
    raise AssertionError(f"{call} was not refused")


def games() -> None:
    from generals_rl import Game, _core

    game = Game(seed=3, players=4)
    rng = np.random.default_rng(0)
    while not game.done and game.tick < 600:
        game.step(
            [int(a) for a in rng.integers(-1, game.width * game.height * 8, game.num_players)]
        )
    for p in range(game.num_players):
        game.visibility(p)
    edge = _core.MAX_ARMY
    big = Game.from_map(
        np.array([[3, 0, 3]], np.uint8),
        np.array([[0, 0, 1]], np.int16),
        np.array([[edge, edge, 1]], np.int32),
        [0, 2],
    )
    for _ in range(60):
        big.step([1, None])
    assert big.army.max() == edge and (big.army >= 0).all()


def experience(directory: Path) -> None:
    from generals_rl import ExperienceBuffer, VecEnv
    from generals_rl.bots import HeuristicBot, RandomBot
    from generals_rl.experience import BufferFileError
    from generals_rl.storage import BufferSink, open_dataset, open_writer

    buffer = ExperienceBuffer(12, 12, capacity=20_000, policy="block")
    cursor = buffer.cursor(player_ids=[0], min_tick=3)
    writer = open_writer("tfrecord", directory / "data", max_experiences=5_000, chunk_size=1_000)
    sink = BufferSink(buffer, writer, batch_size=500, poll_interval=0.01).start()
    env = VecEnv(8, height=12, width=12, seed=1, max_ticks=150, buffer=buffer, army_scaling="log")
    env.reset()
    random_bot, heuristic = RandomBot(seed=2), HeuristicBot()
    for _ in range(200):
        actions = random_bot.act(env)
        heuristic.act(env, players=[1], out=actions)
        env.step(actions)
        cursor.read(256)
    sink.stop()
    cursor.read_raw(1 << 16)
    buffer.sample(500, seed=4)
    buffer.sample_raw(500, seed=5)
    read = sum(len(batch) for batch in open_dataset(directory / "data", form="decoded"))
    assert read == buffer.head > 0, (read, buffer.head)
    buffer.save(directory / "buffer.grlb")
    loaded = ExperienceBuffer.load(directory / "buffer.grlb")
    assert loaded.head == buffer.head
    loaded.cursor().read(1000)
    # Columns viewing a byte buffer at odd offsets, as packed submissions arrive:
    # read in place they were misaligned loads (undefined behaviour).
    raw = buffer.sample_raw(64, seed=6)
    columns = {}
    for name, value in raw.to_dict().items():
        if isinstance(value, np.ndarray):
            data = b"\0" + value.tobytes()
            value = np.frombuffer(data, dtype=value.dtype, offset=1).reshape(value.shape)
        columns[name] = value
    loaded.append_raw(type(raw)(**columns))
    type(raw)(**columns).decode()
    data = (directory / "buffer.grlb").read_bytes()
    (directory / "cut.grlb").write_bytes(data[: len(data) // 2])
    refused(lambda: ExperienceBuffer.load(directory / "cut.grlb"), BufferFileError)


def compact() -> None:
    from generals_rl import ExperienceBuffer, VecEnv
    from generals_rl.bots import RandomBot
    from generals_rl.observations import expand, expand_masks

    buffer = ExperienceBuffer(7, 9, capacity=5_000, policy="overwrite", army_scale=1e5)
    env = VecEnv(
        4,
        players=3,
        height=7,
        width=9,
        seed=2,
        max_ticks=40,
        buffer=buffer,
        observation_format="compact",
        army_scale=1e5,
        obstacles=True,
        teams=[0, 0, 1],
    )
    bot = RandomBot(seed=3)
    for _ in range(60):
        obs, *_, info = env.step(bot.act(env))
        env.expand(obs)
        env.expand_masks(info["action_masks"])
    buffer.cursor().read_compact(1 << 12).expand(army_scale=1e5)
    buffer.sample_compact(100, seed=1, n_step=2).expand(army_scale=1e5)
    # Misaligned views (as from a byte buffer) and bad codes.
    tiles = obs.tiles.reshape(-1, 7, 9)
    armies = np.frombuffer(b"\0" + obs.armies.tobytes(), dtype=obs.armies.dtype, offset=1)
    expand(tiles, armies.reshape(tiles.shape), army_scale=1e5)
    masks = info["action_masks"].reshape(-1, info["action_masks"].shape[-1])
    expand_masks(
        np.frombuffer(b"\0" + masks.tobytes(), dtype=np.uint8, offset=1).reshape(masks.shape), 7, 9
    )
    refused(lambda: expand(np.full((2, 2), 200, np.uint8), np.zeros((2, 2), np.uint16)))


def replays() -> None:
    from generals_rl import replay

    paths = sorted(p for p in REPLAY_DIR.glob("*") if p.suffix in (".gioreplay", ".gior"))
    for path in paths:
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        assert replay.load(path).trace() == expected, path
    print(f"replays: {len(paths)} traces as expected")


def hostile_inputs() -> None:
    from generals_rl import ExperienceBuffer, _core, replay
    from generals_rl.vec_env import encode_observation

    buffer = ExperienceBuffer(8, 8, capacity=100)
    refused(lambda: buffer.cursor(game_ids=[-1]))
    refused(lambda: buffer.cursor(min_tick=2**31))
    refused(lambda: buffer.cursor(game_ids=[2**64]))
    for width in (_core.MAX_BOARD_SIDE, _core.MAX_BOARD_SIDE + 1, 1100):
        board = (
            np.zeros((2, width), np.uint8),
            np.zeros((2, width), np.int16),
            np.ones((2, width), np.int32),
        )
        if width <= _core.MAX_BOARD_SIDE:
            encode_observation(*board, 0)
        else:
            refused(lambda board=board: encode_observation(*board, 0))
    refused(lambda: encode_observation(*board, 0, army_scaling="Log"))
    fields = {
        "version": 7,
        "id": "idle",
        "mapWidth": 1024,
        "mapHeight": 1024,
        "usernames": ["a", "b"],
        "cities": [],
        "cityArmies": [],
        "generals": [0, 5],
        "mountains": [],
        "moves": [],
        "afks": [{"index": 0, "turn": 1_000_000}],
        "teams": None,
    }
    refused(lambda: replay.from_fields(fields).trace(), replay.ReplayError)


def main(core_path: str) -> None:
    load_core(core_path)
    from generals_rl import _core

    assert Path(_core.__file__).resolve() == Path(core_path).resolve()
    games()
    with tempfile.TemporaryDirectory() as directory:
        experience(Path(directory))
    compact()
    replays()
    hostile_inputs()
    print("sanitizer smoke run: all passed")


if __name__ == "__main__":
    main(sys.argv[1])
