"""Experience collection on real self-play: a VecEnv with a buffer attached records
every alive player's transition of every tick, and what cursors read back equals
what the env showed (observations, masks, rewards, actions, done flags), in both
full-buffer policies, with concurrent readers, and when nobody reads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields

import numpy as np
import pytest
from generals_rl import ExperienceBuffer, MapConfig, VecEnv
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.experience import BufferFullError, ExperienceBatch, RawBatch

SIDE = 8
SMALL_MAPS = MapConfig(min_side=6, max_side=SIDE, min_general_distance=3)
KEY_COLUMNS = ("game_id", "player_id", "tick")
EXPECTED_COLUMNS = ("action", "reward", "legal", "terminated", "truncated")
TENSOR_COLUMNS = ("state", "next_state", "action_mask")


def small_env(
    buffer: ExperienceBuffer | None = None, num_envs: int = 8, players: int = 2, **kwargs
) -> VecEnv:
    """Short games on boards of at most 8x8, so that games end within a test."""
    kwargs.setdefault("max_ticks", 60)
    return VecEnv(
        num_envs,
        players=players,
        height=SIDE,
        width=SIDE,
        num_threads=2,
        map_config=SMALL_MAPS,
        buffer=buffer,
        **kwargs,
    )


def concat_batches(batches: list):
    """One batch holding the rows of all (``missed`` summed, ``next_sequence`` of the last)."""
    if isinstance(batches[0], RawBatch):
        return RawBatch.concat(batches)
    columns = {}
    for f in fields(ExperienceBatch):
        if f.name == "missed":
            columns[f.name] = sum(b.missed for b in batches)
        elif f.name == "next_sequence":
            columns[f.name] = batches[-1].next_sequence
        else:
            columns[f.name] = np.concatenate([getattr(b, f.name) for b in batches])
    return ExperienceBatch(**columns)


def read_all(cursor, raw: bool = False, max_items: int = 4096):
    """Everything the cursor can read now (no waiting), as one batch."""
    batches = []
    while True:
        batches.append(cursor.read_raw(max_items) if raw else cursor.read(max_items))
        if len(batches[-1]) == 0:
            return concat_batches(batches)


def mixed_policy(seed: int = 0):
    """Player 0 heuristic, the others random, with passes, half moves and illegal
    indices mixed in: ``policy(env) -> actions``."""
    heuristic, random_bot, rng = HeuristicBot(), RandomBot(seed=seed), np.random.default_rng(seed)

    def policy(env: VecEnv) -> np.ndarray:
        actions = random_bot.act(env).copy()
        heuristic.act(env, players=[0], out=actions)
        roll = rng.random(actions.shape)
        full = env.height * env.width * 4
        actions[(roll < 0.15) & (actions >= 0)] += full  # the half move of the same move
        actions[roll > 0.93] = -1
        illegal = (roll > 0.86) & (roll <= 0.93)
        actions[illegal] = rng.integers(0, 2 * full, size=int(illegal.sum()))
        return actions

    return policy


@dataclass
class Transcript:
    """What the env showed around each step: one row per alive player and step,
    sorted by (game_id, player_id, tick), plus the ids of the games that ended."""

    rows: dict[str, np.ndarray]
    finished_games: np.ndarray

    def __len__(self) -> int:
        return len(self.rows["game_id"])


def play(env: VecEnv, steps: int, policy=None) -> Transcript:
    """Resets the env and plays ``steps`` steps, recording before each step the
    observations, masks, game ids, ticks and alive players, and after it the
    rewards, flags, illegal moves and next observations (final ones at game end)."""
    policy = policy or mixed_policy()
    observations, info = env.reset()
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in KEY_COLUMNS + EXPECTED_COLUMNS + TENSOR_COLUMNS
    }
    finished = []
    for _ in range(steps):
        game_id, tick = info["game_id"].copy(), info["tick"].copy()
        games, players = np.nonzero(info["alive"])
        state = observations[games, players].copy()
        mask = info["action_masks"][games, players].copy()
        actions = policy(env)
        observations, rewards, terminated, truncated, info = env.step(actions)
        done = info["episode_done"][games]
        next_state = np.where(
            done[:, None, None, None],
            info["final_observations"][games, players],
            observations[games, players],
        )
        for name, values in (
            ("game_id", game_id[games]),
            ("player_id", players.astype(np.int32)),
            ("tick", tick[games]),
            ("action", actions[games, players]),
            ("reward", rewards[games, players]),
            ("legal", ~info["illegal"][games, players]),
            ("terminated", terminated[games, players]),
            ("truncated", truncated[games] & ~terminated[games, players]),
            ("state", state),
            ("next_state", next_state),
            ("action_mask", mask),
        ):
            parts[name].append(np.array(values))
        finished.extend(info["episode_game_id"][info["episode_done"]].tolist())
    rows = {name: np.concatenate(values) for name, values in parts.items()}
    order = np.lexsort((rows["tick"], rows["player_id"], rows["game_id"]))
    return Transcript(
        {name: values[order] for name, values in rows.items()}, np.array(finished, np.uint64)
    )


def sorted_by_key(batch: ExperienceBatch) -> ExperienceBatch:
    order = np.lexsort((batch.tick, batch.player_id, batch.game_id))
    columns = {f.name: getattr(batch, f.name) for f in fields(ExperienceBatch)}
    for name, values in columns.items():
        if isinstance(values, np.ndarray):
            columns[name] = values[order]
    return ExperienceBatch(**columns)


def bits(values: np.ndarray) -> np.ndarray:
    """Float arrays as their bit patterns, so that equality is bit for bit."""
    return values.view(np.uint32)


def assert_matches_transcript(batch: ExperienceBatch, transcript: Transcript) -> None:
    batch = sorted_by_key(batch)
    expected = transcript.rows
    assert len(batch) == len(transcript)
    for name in KEY_COLUMNS:
        np.testing.assert_array_equal(getattr(batch, name), expected[name], err_msg=name)
    for name in EXPECTED_COLUMNS:
        np.testing.assert_array_equal(getattr(batch, name), expected[name], err_msg=name)
    np.testing.assert_array_equal(bits(batch.state), bits(expected["state"]))
    np.testing.assert_array_equal(bits(batch.next_state), bits(expected["next_state"]))
    np.testing.assert_array_equal(batch.action_mask, expected["action_mask"])


def assert_games_are_complete_chains(batch: ExperienceBatch, finished_games: np.ndarray) -> None:
    """Per (game, player): ticks 0, 1, 2, ... without gaps, each next_state the state
    of the next experience, a done flag exactly on the last experience of a game
    that ended, and none in games still running."""
    batch = sorted_by_key(batch)
    key = np.stack([batch.game_id.astype(np.int64), batch.player_id]).T
    same_as_next = np.all(key[1:] == key[:-1], axis=1)
    first = np.concatenate([[True], ~same_as_next])
    last = np.concatenate([~same_as_next, [True]])
    np.testing.assert_array_equal(batch.tick[first], 0)
    np.testing.assert_array_equal(batch.tick[1:][same_as_next], batch.tick[:-1][same_as_next] + 1)
    np.testing.assert_array_equal(
        bits(batch.next_state[:-1][same_as_next]), bits(batch.state[1:][same_as_next])
    )
    ended = np.isin(batch.game_id, finished_games)
    np.testing.assert_array_equal(batch.done, last & ended)
    assert not np.any(batch.terminated & batch.truncated)


# ---------------------------------------------------------------------------
# what is recorded equals what the env showed


@pytest.mark.parametrize(
    "players, policy, max_ticks",
    [(2, "overwrite", 40), (3, "block", 60), (2, "block", 0)],
)
def test_every_experience_of_self_play_is_recorded_once_as_the_env_showed_it(
    players, policy, max_ticks
):
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=1 << 15, policy=policy)
    env = small_env(buffer, num_envs=8, players=players, seed=players, max_ticks=max_ticks)
    cursor = buffer.cursor()
    transcript = play(env, 150)
    batch = read_all(cursor)

    assert batch.missed == 0
    np.testing.assert_array_equal(batch.sequence, np.arange(buffer.head))
    assert batch.next_sequence == buffer.head
    keys = np.stack([batch.game_id.astype(np.int64), batch.player_id, batch.tick]).T
    assert len(np.unique(keys, axis=0)) == len(batch), "an experience was recorded twice"
    assert_matches_transcript(batch, transcript)
    assert_games_are_complete_chains(batch, transcript.finished_games)
    # the runs end games both ways (elimination, tick limit) and keep games going
    assert len(transcript.finished_games) > 0
    assert batch.terminated.any()
    if max_ticks:
        assert batch.truncated.any()
        np.testing.assert_array_equal(batch.tick[batch.truncated], max_ticks - 1)
    else:
        assert not batch.truncated.any()
    assert (~batch.legal).any() and (batch.action == -1).any()


def test_players_eliminated_mid_game_stop_getting_experiences():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=1 << 15, policy="overwrite")
    env = small_env(buffer, num_envs=16, players=4, seed=9, max_ticks=0)
    cursor = buffer.cursor()
    transcript = play(env, 200)
    batch = sorted_by_key(read_all(cursor))
    assert_matches_transcript(batch, transcript)
    games, game_rows = np.unique(batch.game_id, return_inverse=True)
    last_tick_of_game = np.zeros(len(games), np.int32)
    np.maximum.at(last_tick_of_game, game_rows, batch.tick)
    eliminated_early = batch.terminated & (batch.tick < last_tick_of_game[game_rows])
    assert eliminated_early.any(), "no player was eliminated before the end of its game"
    for game, player, tick in zip(
        *(getattr(batch, name)[eliminated_early] for name in KEY_COLUMNS), strict=False
    ):
        rows = (batch.game_id == game) & (batch.player_id == player)
        assert batch.tick[rows].max() == tick


def test_rewards_follow_the_env_reward_config():
    from generals_rl import RewardConfig

    buffer = ExperienceBuffer(SIDE, SIDE, capacity=1 << 14, policy="overwrite")
    config = RewardConfig(win=5.0, loss=-3.0, army_advantage=0.5, land_gained=0.01)
    env = small_env(buffer, seed=5, reward_config=config)
    cursor = buffer.cursor()
    transcript = play(env, 80)
    batch = read_all(cursor)
    assert_matches_transcript(batch, transcript)
    assert (batch.reward[batch.terminated] > 4).any() and (
        batch.reward[batch.terminated] < -2
    ).any()


# ---------------------------------------------------------------------------
# filters and start positions on self-play


@pytest.fixture(scope="module")
def recorded():
    """A buffer holding 120 steps of 3-player self-play, and everything read back."""
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=1 << 15, policy="overwrite")
    env = small_env(buffer, num_envs=6, players=3, seed=11)
    cursor = buffer.cursor()
    play(env, 120)
    return buffer, read_all(cursor)


@pytest.mark.parametrize(
    "which",
    ["games", "players", "min_tick", "games_players_min_tick", "unknown_game"],
)
def test_cursor_filters_return_exactly_the_matching_experiences(recorded, which):
    buffer, everything = recorded
    games = np.unique(everything.game_id)[[0, 3]]  # numpy ids are accepted as they are
    filters = {
        "games": {"game_ids": games},
        "players": {"player_ids": [0, 2]},
        "min_tick": {"min_tick": 25},
        "games_players_min_tick": {"game_ids": games, "player_ids": [1], "min_tick": 4},
        "unknown_game": {"game_ids": [12345]},
    }[which]
    expected = np.ones(len(everything), bool)
    if "game_ids" in filters:
        expected &= np.isin(everything.game_id, np.asarray(filters["game_ids"], np.uint64))
    if "player_ids" in filters:
        expected &= np.isin(everything.player_id, filters["player_ids"])
    expected &= everything.tick >= filters.get("min_tick", 0)

    cursor = buffer.cursor(**filters)
    batch = read_all(cursor, max_items=97)
    np.testing.assert_array_equal(batch.sequence, everything.sequence[expected])
    for name in EXPECTED_COLUMNS + TENSOR_COLUMNS:
        np.testing.assert_array_equal(
            getattr(batch, name), getattr(everything, name)[expected], err_msg=name
        )
    assert batch.missed == 0
    assert cursor.position == buffer.head  # skipped experiences are passed, not re-read
    if which != "unknown_game":
        assert 0 < len(batch) < len(everything)


def test_cursor_starts_at_oldest_newest_or_a_sequence():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=1 << 14, policy="overwrite")
    env = small_env(buffer, seed=2)
    policy = mixed_policy(2)
    for _ in range(10):
        env.step(policy(env))
    middle = buffer.head
    oldest, newest, at = (
        buffer.cursor(start="oldest"),
        buffer.cursor(start="newest"),
        buffer.cursor(start=37),
    )
    assert len(newest.read_raw(100)) == 0
    for _ in range(10):
        env.step(policy(env))
    np.testing.assert_array_equal(read_all(oldest, raw=True).sequence, np.arange(buffer.head))
    np.testing.assert_array_equal(
        read_all(newest, raw=True).sequence, np.arange(middle, buffer.head)
    )
    np.testing.assert_array_equal(read_all(at, raw=True).sequence, np.arange(37, buffer.head))


# ---------------------------------------------------------------------------
# overwrite policy: gaps reported exactly


def test_overwrite_tells_a_lagging_cursor_exactly_what_it_missed():
    per_step = 8 * 2
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=5 * per_step, policy="overwrite")
    env = small_env(buffer, seed=6)
    policy = mixed_policy(6)
    cursor = buffer.cursor()
    for _ in range(3):
        env.step(policy(env))
    first = cursor.read_raw(7)
    np.testing.assert_array_equal(first.sequence, np.arange(7))
    assert (first.missed, first.next_sequence, cursor.position) == (0, 7, 7)

    for _ in range(25):  # far more than the ring holds
        env.step(policy(env))
    head, oldest = buffer.head, buffer.oldest
    assert oldest == head - buffer.capacity > 7
    resumed = cursor.read_raw(10)
    assert resumed.missed == oldest - 7
    np.testing.assert_array_equal(resumed.sequence, np.arange(oldest, oldest + 10))
    assert resumed.next_sequence == cursor.position == oldest + 10
    rest = read_all(cursor, raw=True)
    assert rest.missed == 0
    np.testing.assert_array_equal(rest.sequence, np.arange(oldest + 10, head))
    assert cursor.total_missed == oldest - 7
    stats = buffer.stats()
    assert stats["total_overwritten"] == head - buffer.capacity
    assert stats["resident"] == buffer.capacity
    # what survived is intact: it decodes like the decoded read of another cursor
    np.testing.assert_array_equal(
        bits(rest.decode().state), bits(read_all(buffer.cursor(start=oldest + 10)).state)
    )


# ---------------------------------------------------------------------------
# block policy: lossless with concurrent readers, closable, never a hang


def test_block_policy_loses_nothing_with_concurrent_readers():
    num_envs, players, steps = 8, 2, 150
    capacity = 3 * num_envs * players  # producers wait on the readers most of the time
    buffer = ExperienceBuffer(
        SIDE, SIDE, capacity=capacity, policy="block", state_capacity=6 * num_envs
    )
    env = small_env(buffer, num_envs=num_envs, players=players, seed=13, buffer_timeout=20.0)
    cursors = [buffer.cursor() for _ in range(3)]
    produced = threading.Event()
    alive_total, errors, max_lag = [0], [], [0]
    received: list[list[np.ndarray]] = [[] for _ in cursors]
    missed = [0] * len(cursors)

    def produce():
        try:
            policy = mixed_policy(13)
            _, info = env.reset()
            for _ in range(steps):
                alive_total[0] += int(info["alive"].sum())
                *_, info = env.step(policy(env))
        except (RuntimeError, ValueError) as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            produced.set()

    def consume(k: int):
        cursor, deadline = cursors[k], time.monotonic() + 30
        while time.monotonic() < deadline:
            if k == 0:  # decoded reads, small batches
                batch = cursor.read(5, timeout=0.05)
            else:
                batch = cursor.read_raw(17 + 40 * k, timeout=0.05)
                if k == 2:
                    time.sleep(0.001)  # a slow reader
            received[k].append(batch.sequence)
            missed[k] += batch.missed
            max_lag[0] = max([max_lag[0], *buffer.stats()["cursor_lag"]])
            if produced.is_set() and cursor.position == buffer.head:
                return

    threads = [threading.Thread(target=produce, daemon=True)]
    threads += [
        threading.Thread(target=consume, args=(k,), daemon=True) for k in range(len(cursors))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"
    assert not errors, errors
    assert buffer.head == alive_total[0]
    for k in range(len(cursors)):
        np.testing.assert_array_equal(
            np.concatenate(received[k]), np.arange(buffer.head), err_msg=f"cursor {k}"
        )
        assert missed[k] == 0
    assert max_lag[0] <= capacity
    assert buffer.stats()["total_overwritten"] > 0  # the ring went round many times


def test_closing_the_last_cursor_releases_a_blocked_producer():
    num_envs, players = 8, 2
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=2 * num_envs * players, policy="block")
    env = small_env(buffer, num_envs=num_envs, players=players, seed=3, buffer_timeout=20.0)
    reader, idle = buffer.cursor(), buffer.cursor()
    steps_done, errors = [0], []

    def produce():
        try:
            policy = mixed_policy(3)
            for _ in range(10):
                env.step(policy(env))
                steps_done[0] += 1
        except (RuntimeError, ValueError) as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    deadline = time.monotonic() + 10
    while steps_done[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert producer.is_alive() and steps_done[0] == 2, (
        "the producer should wait for the unread cursors"
    )
    reader.close()
    time.sleep(0.2)
    assert steps_done[0] == 2, "the idle cursor still holds the producer"
    idle.close()
    producer.join(timeout=10)
    assert not producer.is_alive() and not errors and steps_done[0] == 10
    assert reader.closed and buffer.stats()["cursor_lag"] == []
    # a closed cursor still hands out what it had not read, without waiting
    assert len(read_all(reader, raw=True)) == 2 * num_envs * players


def test_a_user_who_never_reads_gets_buffer_full_instead_of_a_hang():
    num_envs, players = 8, 2
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=3 * num_envs * players, policy="block")
    env = small_env(buffer, num_envs=num_envs, players=players, seed=4, buffer_timeout=0.2)
    policy = mixed_policy(4)
    cursor = buffer.cursor()
    _, info = env.reset()
    recorded, steps = 0, 0
    with pytest.raises(BufferFullError, match="full"):
        for steps in range(10):  # noqa: B007 (read after the loop: where it stopped)
            ticks, alive = info["tick"].copy(), int(info["alive"].sum())
            started = time.monotonic()
            *_, info = env.step(policy(env))
            recorded += alive
    assert steps == 3 and time.monotonic() - started >= 0.2
    np.testing.assert_array_equal(info["tick"], ticks)  # the failed step changed nothing
    batch = read_all(cursor)
    assert len(batch) == recorded and batch.missed == 0

    env.step(policy(env))  # room again: collection goes on where it stopped
    after = read_all(cursor)
    assert len(after) > 0 and after.sequence[0] == recorded
    both = concat_batches([batch, after])
    assert_games_are_complete_chains(both, np.unique(both.game_id[both.done]))


def test_env_reset_with_a_full_block_buffer_raises_instead_of_hanging():
    num_envs = 8
    buffer = ExperienceBuffer(
        SIDE, SIDE, capacity=1 << 12, policy="block", state_capacity=4 * num_envs
    )
    env = small_env(buffer, num_envs=num_envs, seed=8, buffer_timeout=0.2)
    policy = mixed_policy(8)
    cursor = buffer.cursor()
    outcome = []

    def fill_then_reset():
        try:
            for _ in range(20):
                env.step(policy(env))
        except BufferFullError:
            outcome.append("step full")
        for _ in range(3):  # the first resets may still find room for their states
            try:
                env.reset()
                outcome.append("reset")
            except BufferFullError:
                outcome.append("reset full")
                return

    thread = threading.Thread(target=fill_then_reset, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "reset hung on a full buffer"
    assert outcome[0] == "step full" and outcome[-1] == "reset full"
    read_all(cursor, raw=True)
    env.reset()  # room again
