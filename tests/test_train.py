"""Trainers: the masked policy, GAE, checkpoints and bit-identical resume, evaluation
counts and intervals, and a short PPO wiring run against a passive opponent."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import asdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generals_rl import RewardConfig, VecEnv
from generals_rl.actions import from_gym_masks, to_gym_masks
from generals_rl.bots import RandomBot
from generals_rl.train import (
    CheckpointError,
    NetConfig,
    NetworkPolicy,
    PolicyValueNet,
    PPOConfig,
    PPOTrainer,
    compute_gae,
    full_mask,
    load_checkpoint,
    make_opponent,
    sample,
    save_checkpoint,
)
from generals_rl.train.evaluate import evaluate, tally, wilson_interval
from generals_rl.train.features import MEMORY_CHANNELS, FogMemory, observed_compass
from generals_rl.train.model import entropy, log_probs, native_bfloat16
from generals_rl.train.policy import net_from_checkpoint, seat_views
from generals_rl.vec_env import OBSERVATION_CHANNELS

torch.set_num_threads(1)


def tiny_config(**changes) -> PPOConfig:
    values = {
        "height": 6,
        "width": 6,
        "max_ticks": 60,
        "opponent": "random",
        "num_envs": 8,
        "rollout_steps": 16,
        "total_env_steps": 8 * 16 * 4,
        "minibatches": 2,
        "epochs": 2,
        "channels": 8,
        "blocks": 1,
        "checkpoint_every": 1,
        "seed": 3,
    }
    values.update(changes)
    return PPOConfig(**values)


# ---- the masked policy -------------------------------------------------------------------


@pytest.mark.parametrize("action_head", ["joint", "factorised"])
def test_masked_sampling_never_picks_an_illegal_action(action_head):
    net = PolicyValueNet(NetConfig(channels=8, blocks=1, action_head=action_head))
    with torch.no_grad():  # make the moves (and tiles) the network likes most the illegal ones
        net.move_head.bias.fill_(30.0)
        net.pass_head.bias.fill_(-30.0)
        if action_head == "factorised":
            net.source_head.bias.fill_(30.0)
    rng = np.random.default_rng(0)
    h, w = 5, 4
    obs = torch.from_numpy(rng.random((64, 9, h, w), dtype=np.float32))
    moves = torch.from_numpy(rng.random((64, h * w * 4)) < 0.05)
    moves[:8] = False  # only the pass is legal here
    mask = full_mask(moves)
    logits, value = net(obs, mask)
    assert logits.shape == (64, h * w * 8 + 1) and value.shape == (64,)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        actions, logp = sample(logits, generator)
        assert mask[torch.arange(64), actions].all()
        assert torch.isfinite(logp).all()
    greedy, _ = sample(logits, greedy=True)
    assert mask[torch.arange(64), greedy].all()
    assert (greedy[:8] == h * w * 8).all()
    probs = torch.softmax(logits, dim=1)
    assert (probs[~mask] == 0).all()
    assert torch.allclose(probs.sum(dim=1), torch.ones(64))


def slow_factorised_log_prob(net, obs, mask, game, action):
    """log p(source tile) + log p(move | tile) of one action, from the head's pieces."""
    h, w = obs.shape[-2:]
    with torch.no_grad():
        x = net.blocks(torch.relu(net.stem(obs[game : game + 1])))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        source = (net.source_head(x) + net.source_input_head(obs[game : game + 1]))[0, 0]
        moves = (net.move_head(x) + net.input_head(obs[game : game + 1]))[0]  # (half*4+d, y, x)
        pass_logit = float(net.pass_head(pooled)[0, 0])
    legal = mask[game]

    def move_legal(y, x, k):
        return bool(legal[(k // 4) * h * w * 4 + (y * w + x) * 4 + k % 4])

    tiles = [
        (y, x) for y in range(h) for x in range(w) if any(move_legal(y, x, k) for k in range(8))
    ]
    source_total = math.exp(pass_logit) + sum(math.exp(float(source[y, x])) for y, x in tiles)
    if action == h * w * 8:
        return math.log(math.exp(pass_logit) / source_total)
    half, rest = divmod(action, h * w * 4)
    cell, direction = divmod(rest, 4)
    y, x = divmod(cell, w)
    move_total = sum(math.exp(float(moves[k, y, x])) for k in range(8) if move_legal(y, x, k))
    p_source = math.exp(float(source[y, x])) / source_total
    p_move = math.exp(float(moves[half * 4 + direction, y, x])) / move_total
    return math.log(p_source * p_move)


@pytest.mark.parametrize("half_moves", [True, False])
def test_the_factorised_joint_log_probability_and_entropy_equal_a_slow_reference(half_moves):
    torch.manual_seed(4)
    net = PolicyValueNet(
        NetConfig(channels=8, blocks=1, action_head="factorised", stack_preference=2.0)
    )
    with torch.no_grad():  # a policy far from uniform
        for head in (net.move_head, net.source_head, net.pass_head):
            head.weight.normal_(std=0.5)
            head.bias.normal_(std=0.5)
    rng = np.random.default_rng(2)
    h, w = 4, 3
    obs = torch.from_numpy(rng.random((6, 9, h, w), dtype=np.float32))
    mask = full_mask(torch.from_numpy(rng.random((6, h * w * 4)) < 0.3), half_moves)
    with torch.no_grad():
        logits, _ = net(obs, mask)
    logp = log_probs(logits)
    for game in range(6):
        legal = torch.nonzero(mask[game]).squeeze(1).tolist()
        reference = [slow_factorised_log_prob(net, obs, mask, game, a) for a in legal]
        assert np.allclose(logp[game, legal].detach().numpy(), reference, atol=1e-5)
        assert math.isclose(
            float(entropy(logits)[game]),
            -sum(math.exp(lp) * lp for lp in reference),
            abs_tol=1e-5,
        )


def test_a_bfloat16_trunk_keeps_float32_outputs_close_to_the_float32_network():
    torch.manual_seed(6)
    exact = PolicyValueNet(NetConfig(channels=8, blocks=2, stack_preference=4.0))
    fast = PolicyValueNet(
        NetConfig(channels=8, blocks=2, stack_preference=4.0, bfloat16_trunk=True)
    )
    # bfloat16 only where the CPU computes it natively; the numbers are checked either way.
    assert fast._bfloat16 == native_bfloat16()
    fast._bfloat16 = True
    fast.load_state_dict(exact.state_dict())
    with torch.no_grad():  # a policy far from uniform, so the trunk matters
        exact.move_head.weight.normal_(std=0.5)
        fast.move_head.weight.copy_(exact.move_head.weight)
    rng = np.random.default_rng(3)
    obs = torch.from_numpy(rng.random((16, 9, 6, 5), dtype=np.float32))
    mask = full_mask(torch.from_numpy(rng.random((16, 6 * 5 * 4)) < 0.2))
    with torch.no_grad():
        (logits, value), (fast_logits, fast_value) = exact(obs, mask), fast(obs, mask)
    assert fast_logits.dtype == torch.float32 and fast_value.dtype == torch.float32
    assert (torch.softmax(fast_logits, dim=1)[~mask] == 0).all()
    legal_logp = log_probs(logits)[mask]
    assert not torch.equal(log_probs(fast_logits)[mask], legal_logp)  # bfloat16 was used
    assert torch.allclose(log_probs(fast_logits)[mask], legal_logp, atol=0.05)
    assert torch.allclose(fast_value, value, atol=0.02)


def _move_logits(net, obs):
    """The move logits (B, half*4 + direction, H, W) before the mask."""
    h, w = obs.shape[-2:]
    with torch.no_grad():
        logits, _ = net(obs)
    return logits[:, :-1].view(obs.shape[0], 2, h, w, 4).permute(0, 1, 4, 2, 3).flatten(1, 2)


@pytest.mark.parametrize("view", [1, 3])
def test_a_moves_logit_reads_the_tiles_within_its_view_and_no_further(view):
    # Without blocks the trunk (the stem) reads one tile around the source; a view of 3
    # reads one more, so the tile two to the right reaches the source's logits only then.
    torch.manual_seed(8)
    net = PolicyValueNet(NetConfig(channels=4, blocks=0, move_view=view))
    with torch.no_grad():
        net.move_head.weight.normal_(std=0.5)
        net.input_head.weight.normal_(std=0.5)
    obs = torch.from_numpy(np.random.default_rng(4).random((1, 9, 5, 6), dtype=np.float32))
    changed = obs.clone()
    changed[0, :, 2, 4] += 1.0  # two to the right of (2, 2)
    difference = (_move_logits(net, changed) - _move_logits(net, obs)).abs()[0, :, 2, :]
    assert (difference[:, 1] == 0).all()  # three tiles away: out of reach either way
    assert (difference[:, 2] > 0).any() == (view == 3)
    assert (difference[:, 3] > 0).all()  # the stem's neighbour


def test_a_wider_move_view_starts_with_the_same_preferences_from_the_source_tile():
    config = dict(channels=4, blocks=1, compass=True, stack_preference=4.0, heading_preference=2.0)
    narrow = PolicyValueNet(NetConfig(**config))
    wide = PolicyValueNet(NetConfig(**config, move_view=3))
    obs = torch.from_numpy(np.random.default_rng(5).random((3, 9, 4, 5), dtype=np.float32))
    planes = torch.cat([obs, observed_compass(obs)], dim=1)
    with torch.no_grad():
        assert torch.equal(wide.input_head(planes), narrow.input_head(planes))
        own_army = planes[:, OBSERVATION_CHANNELS.index("own_army")]
        assert torch.allclose(wide.input_head(planes)[:, 0], 4.0 * own_army - 2.0 * planes[:, 9])
    assert wide.input_head.weight.shape[-2:] == (3, 3)


@pytest.mark.parametrize("view", [0, 2, -1, 5, 10**9, "3"])
def test_a_move_view_other_than_the_source_or_its_neighbours_is_refused(view):
    message = re.escape(f"move_view: expected one of (1, 3), got {view!r}")
    with pytest.raises(ValueError, match=message):
        NetConfig(move_view=view)


def test_a_checkpoint_written_before_move_view_loads_as_the_source_tile_view(tmp_path):
    net = PolicyValueNet(NetConfig(channels=4, blocks=1))
    config = net.config.to_dict()
    del config["move_view"]  # a configuration written before the option existed
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"model": net.state_dict(), "net_config": config})
    restored = net_from_checkpoint(path)
    assert restored.config.move_view == 1
    obs = torch.from_numpy(np.random.default_rng(6).random((2, 9, 4, 4), dtype=np.float32))
    with torch.no_grad():
        assert torch.equal(restored(obs)[0], net.eval()(obs)[0])


def test_a_policy_without_half_moves_only_moves_whole_armies():
    env = VecEnv(8, 2, 6, 6, seed=4, max_ticks=40)
    env.reset()
    net = PolicyValueNet(NetConfig(channels=8, blocks=1, half_moves=False))
    with torch.no_grad():  # the half moves are the ones the network likes most
        net.move_head.bias[4:].fill_(30.0)
    policy = NetworkPolicy(net, seed=2)
    seats = np.zeros(8, dtype=np.int64)
    moves = []
    for _ in range(20):
        obs, masks = seat_views(env, seats)
        chosen = policy.actions(obs, masks)
        moves.extend(chosen[chosen >= 0])
        actions = np.full((8, 2), -1, dtype=np.int32)
        actions[:, 0] = chosen
        env.step(actions)
    assert len(moves) > 20 and (np.array(moves) < 6 * 6 * 4).all()  # full moves only


def test_network_policy_plays_only_legal_moves_in_a_vec_env():
    env = VecEnv(16, 2, 6, 6, seed=5, max_ticks=80, num_threads=1)
    env.reset()
    net = PolicyValueNet(NetConfig(channels=8, blocks=1))
    with torch.no_grad():
        net.move_head.bias.copy_(torch.linspace(-20, 20, 8))
    policy = NetworkPolicy(net, seed=0, epsilon=0.3)
    seats = np.arange(16) % 2
    # The other seat passes: a move made first by an opponent could make ours illegal.
    actions = np.full((16, 2), -1, dtype=np.int32)
    for _ in range(120):
        obs, masks = seat_views(env, seats)
        chosen = policy.actions(obs, masks)
        moves = chosen >= 0
        base = np.where(chosen >= 6 * 6 * 4, chosen - 6 * 6 * 4, chosen)
        assert masks[np.flatnonzero(moves), base[moves]].all()
        actions[np.arange(16), seats] = chosen
        _, _, _, _, info = env.step(actions)
        assert not info["illegal"][np.arange(16), seats].any()


def test_a_low_temperature_plays_like_greedy_and_a_high_one_spreads_the_choice():
    env = VecEnv(64, 2, 6, 6, seed=9, max_ticks=80, num_threads=1)
    env.reset()
    for _ in range(4):  # the generals grow an army to move
        env.step(np.full((64, 2), -1, dtype=np.int32))
    obs, masks = seat_views(env, np.zeros(64, dtype=np.int64))
    assert masks.any(axis=1).all()
    net = PolicyValueNet(NetConfig(channels=8, blocks=1))
    greedy = NetworkPolicy(net, greedy=True).actions(obs, masks)
    sharp = NetworkPolicy(net, seed=1, temperature=1e-6).actions(obs, masks)
    np.testing.assert_array_equal(sharp, greedy)
    with torch.no_grad():
        net.move_head.bias.copy_(torch.linspace(-4, 4, 8))  # far from uniform
    policies = {t: NetworkPolicy(net, seed=2, temperature=t) for t in (0.5, 50.0)}
    distinct = {  # actions seen per game over 20 draws, summed over the games
        t: sum(len(set(game)) for game in np.stack([p.actions(obs, masks) for _ in range(20)]).T)
        for t, p in policies.items()
    }
    assert distinct[50.0] > distinct[0.5]
    with pytest.raises(ValueError, match="temperature"):
        NetworkPolicy(net, temperature=0.0)


def test_action_and_mask_conversions_round_trip():
    from generals_rl.actions import from_gym_actions, to_gym_actions

    h, w = 3, 4
    index = np.array([-1, 0, 5, h * w * 4, h * w * 8 - 1])
    gym = to_gym_actions(index, h, w)
    assert gym.tolist() == [h * w * 8, 0, 5, h * w * 4, h * w * 8 - 1]
    assert from_gym_actions(gym, h, w).tolist() == index.tolist()
    with pytest.raises(ValueError):
        from_gym_actions([h * w * 8 + 1], h, w)
    with pytest.raises(ValueError):
        to_gym_actions([-2], h, w)
    masks = np.random.default_rng(0).random((2, 3, h * w * 4)) < 0.3
    gym_masks = to_gym_masks(masks)
    assert gym_masks.shape == (2, 3, h * w * 8 + 1) and gym_masks.dtype == np.int8
    assert (gym_masks[..., -1] == 1).all()
    assert (gym_masks[..., h * w * 4 : -1] == masks).all()
    assert (from_gym_masks(gym_masks) == masks).all()


def test_gym_mask_conversion_matches_the_gymnasium_env():
    pytest.importorskip("gymnasium")
    from generals_rl.envs.gymnasium_env import player_observation

    env = VecEnv(1, 2, 5, 5, seed=2, num_threads=1)
    obs, info = env.reset()
    mask = info["action_masks"][0, 0]
    expected = player_observation(obs[0, 0], mask)["action_mask"]
    assert (to_gym_masks(mask) == expected).all()


# ---- GAE ---------------------------------------------------------------------------------


def slow_gae(rewards, values, dones, last_value, gamma, lam):
    """Per game: A_t = sum_k (gamma lam)^k delta_{t+k} over the rest of the episode."""
    steps, games = rewards.shape
    out = np.zeros((steps, games))
    for n in range(games):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                ends = dones[k, n] > 0
                next_value = 0.0 if ends else (values[k + 1, n] if k + 1 < steps else last_value[n])
                total += discount * (rewards[k, n] + gamma * next_value - values[k, n])
                if ends:
                    break
                discount *= gamma * lam
            out[t, n] = total
    return out


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_gae_equals_a_slow_reference(gamma, lam):
    rng = np.random.default_rng(7)
    rewards = rng.normal(size=(23, 5)).astype(np.float32)
    values = rng.normal(size=(23, 5)).astype(np.float32)
    dones = (rng.random((23, 5)) < 0.15).astype(np.float32)
    dones[-1, 0] = 1
    last = rng.normal(size=5).astype(np.float32)
    advantages, returns = compute_gae(rewards, values, dones, last, gamma, lam)
    expected = slow_gae(rewards, values, dones, last, gamma, lam)
    np.testing.assert_allclose(advantages, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-4, atol=1e-4)


# ---- checkpoints and resume --------------------------------------------------------------


def test_checkpoint_round_trips(tmp_path):
    net = PolicyValueNet(NetConfig(channels=8, blocks=1))
    payload = {"model": net.state_dict(), "config": {"a": 1}, "counters": {"update": 3}}
    path = save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(path)
    assert loaded["config"] == {"a": 1} and loaded["counters"] == {"update": 3}
    for key, value in net.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "foreign.pt")


def _metric_rows(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["wall_time"], row["cpu_time"], row["steps_per_second"]
    return rows


def test_resume_is_bit_identical(tmp_path):
    config = tiny_config()
    straight = PPOTrainer(config, tmp_path / "straight")
    straight.train()
    assert straight.update == 4

    first = PPOTrainer(config, tmp_path / "split")
    first.train(updates=2)
    del first
    resumed = PPOTrainer(PPOConfig(), tmp_path / "split", resume=True)
    assert resumed.config == config and resumed.update == 2
    resumed.train()

    assert resumed.update == straight.update and resumed.env_steps == straight.env_steps
    assert resumed.episodes == straight.episodes
    for key, value in straight.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[key], value), key
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in a:
        assert torch.equal(a[key]["exp_avg"], b[key]["exp_avg"])
    assert _metric_rows(tmp_path / "straight") == _metric_rows(tmp_path / "split")
    saved = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")
    assert saved["counters"]["update"] == 4 and saved["counters"]["env_steps"] == 4 * 8 * 16


def test_a_new_run_refuses_a_directory_holding_one(tmp_path):
    PPOTrainer(tiny_config(total_env_steps=8 * 16), tmp_path).train()
    with pytest.raises(FileExistsError):
        PPOTrainer(tiny_config(), tmp_path)


def test_a_time_budget_spans_the_schedules_and_ends_the_run(tmp_path):
    config = tiny_config(total_env_steps=8 * 16 * 100, time_budget=100.0, lr=1e-3)
    trainer = PPOTrainer(config, tmp_path)
    trainer.wall_time = 60.0  # trained for 60 s: past the 0.0 of the steps' schedule
    assert trainer.progress() == pytest.approx(0.6)
    assert trainer.train(updates=1)["lr"] == pytest.approx(1e-3 * 0.4)
    trainer.wall_time = 100.0  # the budget spent: one more segment at the final rate
    row = trainer.train()
    assert trainer.update == 2 and row["lr"] == pytest.approx(1e-3 * 0.1)
    # Without the time budget reached, the steps set the schedule.
    steps = PPOTrainer(tiny_config(time_budget=1e6, lr=1e-3), tmp_path / "steps")
    steps.train(updates=3)
    assert steps.progress() == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="time_budget: must be positive seconds, got -1"):
        tiny_config(time_budget=-1.0)


def test_pool_opponent_plays_past_checkpoints(tmp_path):
    trainer = PPOTrainer(tiny_config(opponent="pool", total_env_steps=8 * 16 * 3), tmp_path)
    trainer.train()
    names = [row["opponent"] for row in csv.DictReader((tmp_path / "metrics.csv").open())]
    assert names[0] == "pool:self"
    assert all(name.startswith("pool:ckpt_") for name in names[1:])


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown PPO options: bogus"):
        PPOConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="unknown reward fields: nope"):
        PPOConfig.from_dict({"reward": {"nope": 1.0}})
    assert PPOConfig.from_dict({"reward": {"land_gained": 0.5}}).reward["land_gained"] == 0.5
    with pytest.raises(ValueError, match="opponent"):
        PPOConfig(opponent="chess")


# ---- evaluation --------------------------------------------------------------------------


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    low, high = wilson_interval(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_tally_counts_results():
    result = tally([1, 1, 0, -1, 1, -1, 0, 1])
    assert (result.wins, result.draws, result.losses, result.games) == (4, 2, 2, 8)
    assert result.win_rate == 0.5
    assert "8 games: 4 wins, 2 draws, 2 losses" in result.format()
    assert result.to_dict()["win_rate_ci95"] == list(wilson_interval(4, 8))


def test_results_within_a_shorter_tick_limit_count_later_decisions_as_draws():
    result = tally([1, -1, 1, 0, 1], [120, 700, 1500, 2000, 1000])
    within = result.within(1000)
    assert (within.wins, within.draws, within.losses) == (2, 2, 1)
    assert within.lengths == [120, 700, 1000, 1000, 1000]
    assert result.within(2000).to_dict() == result.to_dict()
    with pytest.raises(ValueError, match="played to 2000 ticks"):
        result.within(2001)
    with pytest.raises(ValueError, match="lengths"):
        tally([1, 0], [10])


@pytest.mark.parametrize("games,num_envs", [(7, 3), (10, 64)])
def test_evaluate_plays_exactly_the_games_asked(games, num_envs):
    net = PolicyValueNet(NetConfig(channels=8, blocks=1))
    result = evaluate(
        NetworkPolicy(net),
        make_opponent("passive"),
        games,
        5,
        5,
        max_ticks=30,
        num_envs=num_envs,
        record=True,
    )
    assert result.games == games == len(result.lengths) == len(result.outcomes)
    assert result.outcomes.count(1) == result.wins and result.outcomes.count(0) == result.draws
    assert result.to_dict(per_game=True)["lengths"] == result.lengths
    assert all(1 <= n <= 30 for n in result.lengths)
    assert result.frames and result.frames[0]["tick"] == 0
    assert [f["tick"] for f in result.frames] == list(range(len(result.frames)))


def test_evaluate_counts_the_winner_in_either_seat():
    """A random policy against an opponent that never moves cannot lose; every game it
    does not win is a draw at the tick limit."""
    net = PolicyValueNet(NetConfig(channels=8, blocks=1))
    result = evaluate(
        NetworkPolicy(net), make_opponent("passive"), 20, 4, 4, max_ticks=200, num_envs=4
    )
    assert result.losses == 0 and result.games == 20
    flipped = evaluate(
        NetworkPolicy(net), make_opponent("passive"), 20, 4, 4, max_ticks=200, num_envs=4
    )
    assert flipped.wins == result.wins  # same seeds, same games


# ---- learning (a wiring test, bounded in updates, not in time) --------------------------


def test_ppo_learns_to_beat_the_random_bot_on_a_tiny_board(tmp_path):
    """About 100k agent moves on 3x3 boards: the policy goes from mostly draws to mostly
    wins. (A never-moving opponent is no easier under these rules: its general grows as
    fast as ours and every move leaves an army behind, so beating it takes gathering
    land over 50-tick bonuses; the random bot drains its own general.)"""
    reward = {"win": 1.0, "loss": -1.0, "army_advantage": 0.0, "land_gained": 0.02}
    config = PPOConfig(
        height=3,
        width=3,
        max_ticks=60,
        opponent="random",
        num_envs=32,
        rollout_steps=32,
        total_env_steps=100_000,
        minibatches=4,
        epochs=4,
        channels=16,
        blocks=1,
        lr=2e-3,
        entropy_coef=0.003,
        checkpoint_every=10,
        seed=0,
        mountain_fraction=0.0,
        cities=0,
        half_moves=False,
        stack_preference=8.0,
        draw_reward=-1.0,
        reward={**asdict(RewardConfig()), **reward},
    )
    opponent = make_opponent("random", seed=5)
    untrained = NetworkPolicy(PolicyValueNet(config.net_config()), seed=9)
    before = evaluate(
        untrained,
        opponent,
        128,
        3,
        3,
        seed=99,
        max_ticks=60,
        num_envs=64,
        map_config=config.map_config(),
    )
    trainer = PPOTrainer(config, tmp_path)
    trainer.train()
    after = evaluate(
        NetworkPolicy(trainer.net, seed=9),
        opponent,
        128,
        3,
        3,
        seed=99,
        max_ticks=60,
        num_envs=64,
        map_config=config.map_config(),
    )
    assert after.win_rate > 0.5, (before.format(), after.format())
    assert after.win_rate > before.win_rate + 0.3, (before.format(), after.format())
    assert float(_metric_rows(tmp_path)[-1]["win_rate"]) > 0.4


def test_draw_reward_ends_a_truncated_game_without_bootstrap(tmp_path):
    zero = {name: 0.0 for name in asdict(RewardConfig())}
    config = tiny_config(
        max_ticks=5, opponent="passive", reward=zero, draw_reward=-1.0, tick_reward=0.0
    )
    trainer = PPOTrainer(config, tmp_path)
    trainer._start_segment()
    batch, finished = trainer._rollout()
    assert finished and all(result == 0 for result, _, _ in finished)  # every game a draw
    returns = batch["returns"].view(config.rollout_steps, config.num_envs)
    done = np.zeros((config.rollout_steps, config.num_envs), dtype=bool)
    done[4::5] = True  # games last 5 ticks
    torch.testing.assert_close(
        returns[torch.from_numpy(done)], torch.full((int(done.sum()),), -1.0)
    )
    assert (returns[torch.from_numpy(~done)] > -1.0).all()


# ---- observations with memory ------------------------------------------------------------


def _observation(height=4, width=5) -> np.ndarray:
    """One game's bare observation: everything visible, nothing on the board."""
    obs = np.zeros((1, len(OBSERVATION_CHANNELS), height, width), dtype=np.float32)
    obs[0, OBSERVATION_CHANNELS.index("visible")] = 1
    return obs


def _memory_planes(memory: FogMemory, observation: np.ndarray, tick: int) -> dict:
    """The memory planes of game 0 by name, after ``observation`` at ``tick``."""
    planes = memory.update(observation, np.array([tick]))[0, len(OBSERVATION_CHANNELS) :]
    return dict(zip(MEMORY_CHANNELS, planes, strict=True))


def test_fog_memory_keeps_the_enemy_seen_under_fog_and_points_at_its_general():
    channel = OBSERVATION_CHANNELS.index
    memory = FogMemory(1, 4, 5)
    first = _observation()
    first[0, channel("enemy_land"), 1, 3] = 1
    first[0, channel("enemy_army"), 1, 3] = 0.5
    first[0, channel("cities_and_generals"), 1, 3] = 1
    planes = memory.update(first, np.array([0]))
    assert planes.shape == (1, len(OBSERVATION_CHANNELS) + len(MEMORY_CHANNELS), 4, 5)
    fogged = _observation()
    fogged[0, channel("visible")] = 0
    fogged[0, channel("fog")] = 1
    later = memory.update(fogged, np.array([75]))[0, len(OBSERVATION_CHANNELS) :]
    plane = dict(zip(MEMORY_CHANNELS, later, strict=True))
    assert plane["seen"].all()  # seen at tick 0, remembered under fog
    assert plane["enemy_land_seen"][1, 3] == 1 and plane["enemy_land_seen"].sum() == 1
    assert plane["enemy_army_seen"][1, 3] == 0.5
    assert plane["enemy_general_seen"][1, 3] == 1
    # the compass: from tile (3, 0) the general is 2 rows up and 3 columns right
    assert plane["enemy_dy"][3, 0] == pytest.approx(-2 / 5)
    assert plane["enemy_dx"][3, 0] == pytest.approx(3 / 5)
    assert plane["enemy_dy"][1, 3] == 0 and plane["enemy_dx"][1, 3] == 0
    assert plane["land_bonus_phase"][0, 0] == pytest.approx(25 / 50)
    # seen again and ours (a city taken), the tile stops being a target
    taken = _observation()
    taken[0, channel("own_land"), 1, 3] = 1
    taken[0, channel("cities_and_generals"), 1, 3] = 1
    plane = _memory_planes(memory, taken, 76)
    assert not plane["enemy_general_seen"].any() and not plane["enemy_dy"].any()
    # a new game (tick 0) forgets everything; with nothing seen the compass points at
    # the centre of the board
    fresh = memory.update(fogged, np.array([0]))[0, len(OBSERVATION_CHANNELS) :]
    assert not fresh[:5].any()
    plane = dict(zip(MEMORY_CHANNELS, fresh, strict=True))
    assert plane["enemy_dy"][0, 0] == pytest.approx(1.5 / 5)
    assert plane["enemy_dx"][0, 0] == pytest.approx(2 / 5)


def test_fog_memory_points_at_the_unexplored_tiles_until_an_enemy_is_seen():
    channel = OBSERVATION_CHANNELS.index
    memory = FogMemory(1, 4, 5)
    left = _observation()
    left[0, channel("visible"), :, 2:] = 0  # columns 2-4 never seen: centre (1.5, 3)
    plane = _memory_planes(memory, left, 1)
    assert plane["enemy_dy"][0, 0] == pytest.approx(1.5 / 5)
    assert plane["enemy_dx"][0, 0] == pytest.approx(3 / 5)
    assert plane["enemy_dx"][0, 4] == pytest.approx(-1 / 5)
    # enemy land seen (at (3, 4)) takes over from the unexplored tiles
    left[0, channel("visible"), 3, 4] = 1
    left[0, channel("enemy_land"), 3, 4] = 1
    plane = _memory_planes(memory, left, 2)
    assert plane["enemy_dy"][0, 0] == pytest.approx(3 / 5)
    assert plane["enemy_dx"][0, 0] == pytest.approx(4 / 5)
    # the whole board seen and no enemy: no direction
    plane = _memory_planes(FogMemory(1, 4, 5), _observation(), 1)
    assert not plane["enemy_dy"].any() and not plane["enemy_dx"].any()


def test_fog_memory_rejects_observations_and_ticks_of_another_shape():
    with pytest.raises(ValueError, match="observations"):
        FogMemory(2, 4, 5).update(_observation(), np.array([0, 0]))
    with pytest.raises(ValueError, match="ticks"):
        FogMemory(1, 4, 5).update(_observation(), np.array([0, 0]))


def test_a_network_with_memory_needs_the_ticks_and_plays_legal_moves():
    env = VecEnv(4, 2, 6, 6, seed=2, max_ticks=30)
    env.reset()
    policy = NetworkPolicy(PolicyValueNet(NetConfig(channels=8, blocks=1, memory=True)), seed=1)
    obs, masks = seat_views(env, np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="ticks"):
        policy.actions(obs, masks)
    result = evaluate(policy, make_opponent("random"), 8, 6, 6, seed=5, max_ticks=30, num_envs=4)
    assert result.games == 8


def test_curriculum_moves_to_larger_boards_once_the_win_rate_passes_the_threshold(tmp_path):
    config = tiny_config(min_side=4, max_side=6, curriculum_win_rate=0.75, window=8)
    trainer = PPOTrainer(config, tmp_path)
    trainer.outcomes.extend([(1, 0.0, 10)] * 5 + [(0, 0.0, 60)] * 3)  # 5 of 8: below
    trainer._advance_curriculum()
    assert trainer.min_side == 4 and len(trainer.outcomes) == 8
    trainer.outcomes.extend([(1, 0.0, 10)] * 8)
    trainer._advance_curriculum()
    assert trainer.min_side == 5 and not trainer.outcomes  # a fresh window on the new sides
    trainer.outcomes.extend([(1, 0.0, 10)] * 8)
    trainer._advance_curriculum()
    trainer.outcomes.extend([(1, 0.0, 10)] * 8)
    trainer._advance_curriculum()
    assert trainer.min_side == 6  # never past max_side
    trainer.save()
    resumed = PPOTrainer(PPOConfig(), tmp_path, resume=True)
    assert resumed.min_side == 6


def _slow_compass(observation: np.ndarray) -> np.ndarray:
    """One observation ``(9, H, W)``: the target tiles by the documented order, their
    centre, every tile's offset to it scaled by the longer side."""
    c = {name: i for i, name in enumerate(OBSERVATION_CHANNELS)}
    _, h, w = observation.shape
    enemy = observation[c["enemy_land"]] > 0
    general = enemy & (observation[c["cities_and_generals"]] > 0)
    fog = observation[c["fog"]] > 0
    target = general if general.any() else enemy if enemy.any() else fog
    out = np.zeros((2, h, w))
    if target.any():
        ty, tx = np.argwhere(target).mean(axis=0)
        for y in range(h):
            for x in range(w):
                out[:, y, x] = (ty - y) / max(h, w), (tx - x) / max(h, w)
    return out


def test_the_observed_compass_equals_a_slow_reference_and_steers_the_first_moves():
    env = VecEnv(8, 2, 7, 9, seed=11, max_ticks=400, num_threads=1)
    env.reset()
    bot = RandomBot(seed=3)
    seen = set()
    for t in range(300):
        obs = np.array(env.observations[:, 0])
        got = observed_compass(torch.from_numpy(obs)).numpy()
        for game in range(8):
            assert np.allclose(got[game], _slow_compass(obs[game]), atol=1e-6), (t, game)
            enemy = obs[game, OBSERVATION_CHANNELS.index("enemy_land")] > 0
            seen.add("enemy" if enemy.any() else "fog")
        env.step(bot.act(env))
    assert seen == {"enemy", "fog"}  # both kinds of target were met
    # The heading preference alone: from a lone stack, the best move heads for the target.
    config = NetConfig(4, 1, compass=True, heading_preference=4.0, half_moves=False)
    net = PolicyValueNet(config)
    assert config.in_channels == len(OBSERVATION_CHANNELS) + 2 and config.input_channels == 9
    obs = np.zeros((1, 9, 5, 5), dtype=np.float32)
    obs[0, OBSERVATION_CHANNELS.index("fog")] = 1.0
    obs[0, OBSERVATION_CHANNELS.index("fog"), :, :3] = 0.0  # in fog: the two right columns
    with torch.no_grad():
        logits, _ = net(torch.from_numpy(obs))
    moves = logits[0, : 5 * 5 * 4].view(5, 5, 4)  # direction: up, down, left, right
    assert (moves[2, 0].argmax() == 3).item()  # the centre of the fog is to the right
