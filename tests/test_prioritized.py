"""Prioritized replay in the buffer: sampling proportional to priority**alpha,
importance weights, priority updates, eviction, n-step returns, persistence and
argument checks; and the player filter of uniform sampling."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
from generals_rl import ExperienceBuffer
from generals_rl.experience import RawBatch
from test_buffer import SIDE, filled, synthetic_batch
from test_experience import bits, mixed_policy, read_all, small_env


def prioritized_buffer(
    n: int = 200, seed: int = 0
) -> tuple[ExperienceBuffer, np.ndarray, np.ndarray]:
    """A buffer holding ``n`` experiences (sequences 0..n-1) with random priorities,
    a tenth of them 0; returns it, the sequences and the priorities."""
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=256, policy="overwrite")
    buffer.append_raw(synthetic_batch(n, game_id=5, seed=seed))
    rng = np.random.default_rng(seed)
    priorities = rng.uniform(0.05, 5.0, n)
    priorities[rng.permutation(n)[: n // 10]] = 0.0
    sequences = np.arange(n, dtype=np.uint64)
    assert buffer.update_priorities(sequences, priorities) == 0
    return buffer, sequences, priorities


def test_sampled_frequencies_match_priority_to_the_alpha_over_the_sum():
    buffer, _, priorities = prioritized_buffer()
    alpha, draws = 0.7, 200_000
    sample = buffer.sample_raw(draws, seed=11, prioritized=True, alpha=alpha)
    assert len(sample) == draws
    counts = np.bincount(sample.sequence.astype(np.int64), minlength=len(priorities))
    assert counts[priorities == 0].sum() == 0  # priority 0: never sampled
    expected = draws * priorities**alpha / np.sum(priorities**alpha)
    positive = priorities > 0
    chi2 = np.sum((counts[positive] - expected[positive]) ** 2 / expected[positive])
    dof = positive.sum() - 1
    # chi-square with `dof` degrees of freedom: mean dof, sd sqrt(2 dof); 5 sd is far out.
    assert chi2 < dof + 5 * np.sqrt(2 * dof), chi2
    # the same draws against plain priorities (alpha ignored) would be far off
    wrong = draws * priorities / priorities.sum()
    assert np.sum((counts[positive] - wrong[positive]) ** 2 / wrong[positive]) > 10 * dof

    # another alpha recomputes the trees
    flat = buffer.sample_raw(draws, seed=12, prioritized=True, alpha=0.0)
    counts = np.bincount(flat.sequence.astype(np.int64), minlength=len(priorities))
    expected = draws / positive.sum()
    assert counts[~positive].sum() == 0
    assert np.sum((counts[positive] - expected) ** 2 / expected) < dof + 5 * np.sqrt(2 * dof)


def test_importance_weights_match_the_formula():
    buffer, _, priorities = prioritized_buffer()
    alpha, beta = 0.6, 0.4
    batch = buffer.sample(256, seed=3, prioritized=True, alpha=alpha, beta=beta)
    p = priorities**alpha
    probability = p / p.sum()
    n = np.count_nonzero(priorities)  # experiences that can be drawn
    weights = (n * probability[priorities > 0]) ** -beta
    expected = (n * probability[batch.sequence.astype(np.int64)]) ** -beta / weights.max()
    np.testing.assert_allclose(batch.weight, expected, rtol=1e-5)
    assert batch.weight.dtype == np.float32 and batch.weight.max() <= 1.0
    assert batch.state.shape == (256, 9, SIDE, SIDE)

    uniform = buffer.sample(16, seed=3)
    assert uniform.weight is None and uniform.nstep_reward is None


def test_updated_priorities_take_effect_and_new_experiences_enter_at_the_maximum():
    buffer, sequences, _ = prioritized_buffer()
    priorities = np.full(len(sequences), 1e-3)
    priorities[17] = 1e3
    buffer.update_priorities(sequences, priorities)
    sample = buffer.sample_raw(2000, seed=5, prioritized=True, alpha=1.0)
    assert np.mean(sample.sequence == 17) > 0.99
    np.testing.assert_allclose(
        buffer.priorities(sequences[15:19]), [1e-3, 1e-3, 1e3, 1e-3], rtol=1e-6
    )

    buffer.update_priorities([17], [0.0])
    sample = buffer.sample_raw(2000, seed=6, prioritized=True, alpha=1.0)
    assert not np.any(sample.sequence == 17) and len(np.unique(sample.sequence)) > 150

    first = buffer.append_raw(synthetic_batch(10, game_id=9))
    new = first + np.arange(10, dtype=np.uint64)
    np.testing.assert_array_equal(buffer.priorities(new), np.full(10, 1e3, np.float32))
    stats = buffer.stats()["priorities"]
    assert stats["enabled"] and stats["max_priority"] == pytest.approx(1e3)
    assert stats["producer_sections"] >= 1 and stats["updates"] == 2 * len(sequences) + 1


def test_trees_built_on_first_use_hold_what_was_appended_before():
    buffer, _ = filled(capacity=100, batches=3)  # 150 appended, 50..149 resident
    assert not buffer.stats()["priorities"]["enabled"]
    np.testing.assert_array_equal(buffer.priorities([60]), [-1])
    sample = buffer.sample_raw(5000, seed=1, prioritized=True)
    assert sample.sequence.min() >= 50 and len(np.unique(sample.sequence)) == 100
    np.testing.assert_array_equal(sample.weight, 1.0)  # all at the same (maximum) priority


def test_evicted_experiences_are_never_returned_and_their_updates_are_ignored():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=100, policy="overwrite")
    buffer.append_raw(synthetic_batch(100, game_id=1))
    old = np.arange(100, dtype=np.uint64)
    buffer.update_priorities(old, np.full(100, 50.0))
    buffer.update_priorities(old[:10], np.full(10, 1e6))  # the evicted ones would dominate
    for g in range(3):
        buffer.append_raw(synthetic_batch(30, game_id=2 + g, seed=g))  # 90 evicted
    assert buffer.oldest == 90
    sample = buffer.sample_raw(5000, seed=2, prioritized=True, alpha=1.0)
    assert sample.sequence.min() >= 90 and len(sample) == 5000
    assert set(np.unique(sample.sequence)) == set(range(100, 190))  # new ones at 1e6, old at 50
    every = buffer.sample_raw(5000, seed=3, prioritized=True, alpha=0.0)
    assert set(np.unique(every.sequence)) == set(range(90, 190))
    assert buffer.update_priorities(old, np.ones(100)) == 90
    assert buffer.stats()["priorities"]["updates_ignored"] == 90
    np.testing.assert_array_equal(buffer.priorities(old[85:95]) >= 0, [False] * 5 + [True] * 5)


def test_uniform_and_prioritized_sampling_filter_by_player():
    env_buffer = ExperienceBuffer(SIDE, SIDE, capacity=20_000)
    env = small_env(env_buffer, num_envs=4, players=3)
    env.reset()
    for _ in range(40):
        env.step(np.full((4, 3), -1, np.int32))
    records = read_all(env_buffer.cursor(), raw=True)
    for options in ({}, {"prioritized": True}):
        sample = env_buffer.sample_raw(3000, seed=4, player_ids=[1], **options)
        assert len(sample) == 3000 and set(np.unique(sample.player_id)) == {1}
        resident_of_1 = set(records.sequence[records.player_id == 1].tolist())
        assert set(np.unique(sample.sequence).tolist()) <= resident_of_1
        assert len(np.unique(sample.sequence)) > 0.9 * len(resident_of_1)
    both = env_buffer.sample(500, seed=4, player_ids=[0, 2])
    assert set(np.unique(both.player_id)) == {0, 2}


def nstep_reference(
    records: RawBatch, sequence: int, n: int, gamma: float
) -> tuple[float, int, bool, int]:
    """Slow reference: (discounted reward, length, done, row of the bootstrap experience)."""
    rows = records.rows_by_key  # (game, player, tick) -> row
    row = int(np.flatnonzero(records.sequence == sequence)[0])
    total, length = 0.0, 0
    while True:
        total += gamma**length * float(records.reward[row])
        length += 1
        if records.terminated[row] or records.truncated[row] or length == n:
            break
        key = (records.game_id[row], records.player_id[row], records.tick[row] + 1)
        if key not in rows:
            break
        row = rows[key]
    return total, length, bool(records.terminated[row]), row


def test_nstep_returns_equal_a_slow_reference():
    buffer = ExperienceBuffer(SIDE, SIDE, capacity=50_000)
    env = small_env(buffer, num_envs=6, players=2, max_ticks=100)
    policy = mixed_policy(0)
    env.reset()
    for _ in range(150):  # episodes ending by elimination or at the tick limit
        env.step(policy(env))
    records = read_all(buffer.cursor(), raw=True)
    assert records.terminated.sum() >= 5 and records.truncated.sum() >= 5
    records.rows_by_key = {
        key: i
        for i, key in enumerate(zip(records.game_id, records.player_id, records.tick, strict=False))
    }
    decoded = read_all(buffer.cursor())
    n, gamma = 4, 0.9
    sample = buffer.sample_raw(1000, seed=8, n_step=n, gamma=gamma)
    assert set(np.unique(sample.nstep_length)) == {1, 2, 3, 4}
    assert sample.nstep_done.any() and not sample.nstep_done.all()
    for i, seq in enumerate(sample.sequence):
        total, length, done, row = nstep_reference(records, int(seq), n, gamma)
        assert sample.nstep_reward[i] == pytest.approx(total, rel=1e-5, abs=1e-6), i
        assert (sample.nstep_length[i], sample.nstep_done[i]) == (length, done), i
        for table in ("state_kind", "state_owner", "state_army"):
            np.testing.assert_array_equal(
                getattr(sample, table)[sample.nstep_next_state_index[i]],
                getattr(records, table)[records.next_state_index[row]],
            )
    # decoded: the bootstrap observation is the next_state of the last experience
    batch = buffer.sample(400, seed=8, n_step=n, gamma=gamma, prioritized=True)
    position = {int(s): i for i, s in enumerate(decoded.sequence)}
    for i, seq in enumerate(batch.sequence):
        _, length, _, row = nstep_reference(records, int(seq), n, gamma)
        assert batch.nstep_length[i] == length
        np.testing.assert_array_equal(
            bits(batch.nstep_next_state[i]),
            bits(decoded.next_state[position[int(records.sequence[row])]]),
        )
    # a raw n-step sample decodes to the same tensors
    again = buffer.decode(buffer.sample_raw(400, seed=8, n_step=n, gamma=gamma, prioritized=True))
    np.testing.assert_array_equal(bits(again.nstep_next_state), bits(batch.nstep_next_state))


def test_save_load_keeps_priorities(tmp_path):
    buffer, sequences, _ = prioritized_buffer(n=150)
    buffer.update_priorities([3], [40.0])  # the maximum
    path = tmp_path / "prioritized.grlb"
    buffer.save(path)
    loaded = ExperienceBuffer.load(path)
    expected = buffer.priorities(sequences)
    np.testing.assert_array_equal(loaded.priorities(sequences), expected)
    assert expected[3] == 40.0
    a = buffer.sample_raw(300, seed=9, prioritized=True, alpha=0.8, beta=0.5)
    b = loaded.sample_raw(300, seed=9, prioritized=True, alpha=0.8, beta=0.5)
    np.testing.assert_array_equal(a.sequence, b.sequence)
    np.testing.assert_allclose(a.weight, b.weight, rtol=1e-6)
    first = loaded.append_raw(synthetic_batch(4, game_id=77))
    np.testing.assert_array_equal(loaded.priorities(first + np.arange(4, dtype=np.uint64)), 40.0)
    assert loaded.stats()["priorities"]["max_priority"] == 40.0


def test_files_without_priorities_and_of_the_previous_version_still_load(tmp_path):
    buffer, _ = filled(capacity=100, batches=2)
    path = tmp_path / "plain.grlb"
    buffer.save(path)
    data = path.read_bytes()
    _, version, header_len = struct.unpack_from("<8sII", data)
    header = json.loads(data[16 : 16 + header_len])
    assert version == 3 and "priority" not in [c[0] for c in header["columns"]]
    # the same contents as a version 2 file (no max_priority in its header)
    del header["max_priority"]
    header_bytes = json.dumps(header).encode()
    body = (
        struct.pack("<8sII", data[:8], 2, len(header_bytes))
        + header_bytes
        + data[16 + header_len : -32]
    )
    (tmp_path / "v2.grlb").write_bytes(body + hashlib.blake2b(body, digest_size=32).digest())
    for name in ("plain.grlb", "v2.grlb"):
        loaded = ExperienceBuffer.load(tmp_path / name)
        assert (loaded.oldest, loaded.head) == (0, 100)
        assert not loaded.stats()["priorities"]["enabled"]
        sample = loaded.sample_raw(1000, seed=1, prioritized=True)
        assert len(np.unique(sample.sequence)) == 100


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: b.sample(4, prioritized=True, alpha=-1), "alpha: must be finite and >= 0"),
        (
            lambda b: b.sample(4, prioritized=True, beta=float("nan")),
            "beta: must be finite and >= 0",
        ),
        (lambda b: b.sample(4, n_step=0), "n_step: must be an integer in 1..1000"),
        (lambda b: b.sample(4, n_step=2.5), "n_step: must be an integer"),
        (lambda b: b.sample(4, n_step=3, gamma=1.5), r"gamma: must be in \[0, 1\]"),
        (lambda b: b.sample(4, player_ids=[16]), r"player_ids: \[16\]"),
        (lambda b: b.sample_raw(0, prioritized=True), "count: must be at least 1"),
        (lambda b: b.update_priorities([0, 1], [1.0, float("nan")]), "priorities: index 1 is nan"),
        (lambda b: b.update_priorities([0, 1, 2], [1.0, 2.0, -0.5]), "priorities: index 2 is -0.5"),
        (lambda b: b.update_priorities([0], [float("inf")]), "priorities: index 0 is inf"),
        (lambda b: b.update_priorities([0, 1], [1.0]), "priorities: expected 2 elements, got 1"),
        (lambda b: b.update_priorities([-1], [1.0]), "sequences: values -1..-1 do not fit"),
        (lambda b: b.update_priorities([0.5], [1.0]), "sequences: expected integers"),
    ],
)
def test_bad_arguments_are_errors_naming_the_argument(call, message):
    buffer, _ = filled(capacity=100, batches=1)
    with pytest.raises(ValueError, match=message):
        call(buffer)
    assert buffer.stats()["priorities"]["updates"] == 0  # nothing was applied
