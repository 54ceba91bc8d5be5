"""The distributed learner: masks from observations, double DQN n-step targets against a
slow reference, and a short run consuming a served stream and publishing weights."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generals_rl import ExperienceBuffer, ExperienceServer, VecEnv
from generals_rl.bots import HeuristicBot, RandomBot
from generals_rl.train import NetConfig, PolicyValueNet, load_checkpoint, save_checkpoint
from generals_rl.train.dqn import (
    DQNConfig,
    DQNLearner,
    dqn_targets,
    margin_loss,
    masks_from_observations,
    q_values,
    shaping,
)
from generals_rl.train.features import GENERAL_SEEN_PLANE, MEMORY_CHANNELS, general_distance
from generals_rl.train.model import MASKED_LOGIT, full_mask
from generals_rl.train.policy import CheckpointBot, NetworkPolicy


@pytest.mark.parametrize("scaling", ["log", "linear"])
def test_masks_from_observations_equal_the_env_masks(scaling):
    env = VecEnv(16, 2, 7, 6, seed=3, max_ticks=300, num_threads=1, army_scaling=scaling)
    env.reset()
    bot = RandomBot(seed=2)
    for t in range(150):
        obs = torch.from_numpy(np.array(env.observations).reshape(-1, 9, 7, 6))
        masks = masks_from_observations(obs, scaling).numpy()
        assert (masks == env.action_masks.reshape(-1, 7 * 6 * 4)).all(), t
        env.step(bot.act(env))


@pytest.mark.parametrize(
    "compass, clock, head, temperature",
    [
        (False, False, "joint", None),
        (True, False, "joint", None),
        (True, True, "joint", None),
        (True, False, "factorised", None),
        (False, False, "joint", 0.3),
        (True, True, "factorised", 2.0),
    ],
)
def test_nstep_targets_equal_a_slow_reference(compass, clock, head, temperature):
    """Double DQN's bootstrap (the online network's best legal action, valued by the
    target network) or, with a temperature, Expected SARSA's."""
    torch.manual_seed(0)
    net_config = NetConfig(4, 1, compass=compass, clock=clock, action_head=head)
    online, target = PolicyValueNet(net_config), PolicyValueNet(net_config)
    obs = torch.rand(6, 9, 3, 4)
    moves = torch.rand(6, 3 * 4 * 4) < 0.3
    mask = full_mask(moves)
    reward = torch.randn(6)
    length = torch.tensor([1, 2, 3, 3, 1, 2])
    done = torch.tensor([False, True, False, False, True, False])
    ticks = torch.tensor([0, 7, 49, 50, 101, 12]) if clock else None
    got = dqn_targets(online, target, obs, mask, reward, length, done, 0.9, ticks, temperature)
    q_online = q_values(online, obs, ticks=ticks, mask=mask).detach()
    q_target = q_values(target, obs, ticks=ticks, mask=mask).detach()
    for i in range(6):
        legal = [a for a in range(mask.shape[1]) if mask[i, a]]
        if temperature is None:
            best = max(legal, key=lambda a: float(q_online[i, a]))
            bootstrap = float(q_target[i, best])
        else:
            top = max(float(q_online[i, a]) for a in legal)
            odds = {a: np.exp((float(q_online[i, a]) - top) / temperature) for a in legal}
            bootstrap = sum(p * float(q_target[i, a]) for a, p in odds.items())
            bootstrap /= sum(odds.values())
        expected = float(reward[i]) + (0.0 if done[i] else 0.9 ** int(length[i]) * bootstrap)
        assert got[i].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_expected_sarsa_targets_lie_below_double_dqns_where_the_networks_agree():
    """With one network as both, the max is an upper bound of every expectation, and a
    cold softmax tends to it."""
    torch.manual_seed(3)
    net = PolicyValueNet(NetConfig(4, 1))
    obs, mask = torch.rand(8, 9, 3, 4), full_mask(torch.rand(8, 3 * 4 * 4) < 0.3)
    args = (torch.zeros(8), torch.ones(8, dtype=torch.int64), torch.zeros(8, dtype=torch.bool))
    greedy = dqn_targets(net, net, obs, mask, *args, 1.0)
    warm = dqn_targets(net, net, obs, mask, *args, 1.0, temperature=1.0)
    assert (warm < greedy - 1e-4).all()
    for cold in (1e-4, 1e-45):  # the second overflows Q / T unless Q is shifted first
        targets = dqn_targets(net, net, obs, mask, *args, 1.0, temperature=cold)
        assert torch.allclose(targets, greedy, atol=1e-4), cold


def test_factorised_q_values_are_the_actors_log_probabilities_centred_on_the_legal():
    torch.manual_seed(1)
    net = PolicyValueNet(NetConfig(4, 1, action_head="factorised", stack_preference=2.0))
    obs = torch.rand(5, 9, 3, 4)
    mask = full_mask(torch.rand(5, 3 * 4 * 4) < 0.4)
    q = q_values(net, obs, mask=mask).detach()
    logits, value = net(obs, mask)  # what a CheckpointBot samples from
    for i in range(5):
        legal = mask[i].nonzero().squeeze(1)
        # softmax(Q / T) is the actors' softmax(logits / T): a constant apart on the legal
        offset = q[i, legal] - logits[i, legal].detach()
        assert torch.allclose(offset, offset[0].expand_as(offset), atol=1e-4)
        assert q[i, legal].mean().item() == pytest.approx(value[i].item(), abs=1e-4)
        assert (q[i, ~mask[i]] == MASKED_LOGIT).all()
    with pytest.raises(ValueError, match="mask: a factorised network"):
        q_values(net, obs)


def test_a_factorised_learner_values_the_actions_taken_and_publishes_its_head(tmp_path):
    config = _small_config(action_head="factorised", half_moves=False)
    learner = DQNLearner(config, [], tmp_path)
    env = VecEnv(8, 2, 6, 6, seed=1, max_ticks=60, buffer=learner.buffer, num_threads=1)
    bot = RandomBot(seed=0)
    env.reset()
    for _ in range(100):
        actions = bot.act(env)
        actions[1::2][actions[1::2] >= 0] += 6 * 6 * 4  # half games split their armies
        env.step(actions)
    for _ in range(5):
        # Half moves, which this learner's mask leaves out, are valued where taken.
        stats = learner.train_step()
        assert np.isfinite(stats["loss"]) and abs(stats["mean_q"]) < 10, stats
    learner.publish()
    policy = NetworkPolicy.from_checkpoint(tmp_path / "weights" / "latest.pt")
    assert policy.net.config.action_head == "factorised" and policy.greedy


def test_clock_planes_hold_the_land_bonus_phase_and_the_parity():
    from generals_rl.train.features import clock_planes

    planes = clock_planes(torch.tensor([0, 1, 49, 50, 75]), 2, 3)
    assert planes.shape == (5, 2, 2, 3) and planes.dtype == torch.float32
    assert planes[:, 0, 1, 2].tolist() == pytest.approx([0.0, 0.02, 0.98, 0.0, 0.5])
    assert planes[:, 1, 0, 0].tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert (planes == planes[:, :, :1, :1]).all()  # one value a plane


def test_a_network_with_a_clock_values_by_the_tick_and_needs_it():
    torch.manual_seed(0)
    net = PolicyValueNet(NetConfig(4, 1, clock=True))
    assert net.config.in_channels == 9 + 2
    obs = torch.rand(1, 9, 3, 4).expand(4, -1, -1, -1)  # one board, four ticks
    q = q_values(net, obs, ticks=torch.tensor([10, 11, 12, 60])).detach()
    assert not torch.allclose(q[0], q[1])  # the parity
    assert torch.equal(q[0], q[3])  # ticks 10 and 60: the same phase and parity
    with pytest.raises(ValueError, match="ticks: a network with a clock needs the games' ticks"):
        q_values(net, obs)
    with pytest.raises(ValueError, match=r"ticks: expected shape \(4,\), got \(3,\)"):
        q_values(net, obs, ticks=torch.tensor([1, 2, 3]))
    policy = NetworkPolicy(net, greedy=True)
    masks = np.ones((4, 3 * 4 * 4), dtype=bool)
    with pytest.raises(ValueError, match="ticks: a network with a clock needs"):
        policy.actions(obs.numpy(), masks)
    assert policy.actions(obs.numpy(), masks, ticks=np.array([10, 11, 12, 60])).shape == (4,)


def test_a_learner_with_a_clock_trains_on_the_samples_ticks(tmp_path):
    server = _serve_random_play()
    try:
        learner = DQNLearner(_small_config(steps=5, clock=True), [server.address], tmp_path)
        seen = _record_forward(learner, lambda obs, ticks: ticks)
        learner.train(log_every=10)
        assert learner.step == 5
        # Each step: the online network on the next states, then on the states; the
        # next states' ticks are the states' plus the n steps taken.
        for next_ticks, ticks in zip(seen[0::2], seen[1::2], strict=True):
            assert ticks is not None and ((next_ticks - ticks) >= 1).all()
            assert ((next_ticks - ticks) <= learner.config.n_step).all()
        payload = load_checkpoint(tmp_path / "weights" / "latest.pt")
        assert payload["net_config"]["clock"]
    finally:
        learner.stop()
        server.stop()


def _record_forward(learner: DQNLearner, what) -> list:
    """Records ``what(obs, ticks)`` of every forward pass of the learner's network."""
    seen: list = []
    forward = learner.net.forward

    def recording(obs, full_mask=None, compass=None, ticks=None):
        seen.append(what(obs, ticks))
        return forward(obs, full_mask, compass, ticks)

    learner.net.forward = recording
    return seen


def test_learner_consumes_trains_and_publishes(tmp_path):
    server = _serve_random_play()
    try:
        config = _small_config(steps=30, n_step=3)
        learner = DQNLearner(config, [server.address], tmp_path)
        row = learner.train(log_every=10)
        assert learner.step == 30 and learner.version == 3
        assert learner.consumed >= 500 and row["replay_ratio"] > 0
        assert np.isfinite(row["loss"])
        stats = learner.buffer.stats()["priorities"]
        assert stats["enabled"] and stats["updates"] == 30 * 32  # one priority update per sample
        latest = load_checkpoint(tmp_path / "weights" / "latest.pt")
        assert latest["version"] == 3 and latest["kind"] == "dqn"
        assert sorted(p.name for p in (tmp_path / "weights").glob("weights_*.pt")) == [
            "weights_000001.pt",
            "weights_000002.pt",
            "weights_000003.pt",
        ]
        actor = CheckpointBot(
            tmp_path / "weights", greedy=True
        )  # actors play the published weights
        assert actor.version == 3
        assert (tmp_path / "metrics.csv").read_text().count("\n") == 4
    finally:
        learner.stop()
        server.stop()


def _serve_random_play(ticks: int = 200, first_seat=None) -> ExperienceServer:
    """A server of ``ticks`` of 8 games on 6x6: RandomBot in both seats, or ``first_seat``
    in seat 0."""
    buffer = ExperienceBuffer(6, 6, capacity=50_000, policy="overwrite")
    env = VecEnv(8, 2, 6, 6, seed=1, max_ticks=60, buffer=buffer, num_threads=1)
    bot = RandomBot(seed=0)
    env.reset()
    actions = np.full((8, 2), -1, dtype=np.int32)
    for _ in range(ticks):
        bot.act(env, out=actions)
        if first_seat is not None:
            first_seat.act(env, [0], actions)
        env.step(actions)
    return ExperienceServer(buffer, "127.0.0.1:0").start()


def _learner_on_random_play(tmp_path, **overrides) -> DQNLearner:
    """A learner (no farm) whose buffer holds 100 ticks of 8 RandomBot games on 6x6."""
    learner = DQNLearner(_small_config(**overrides), [], tmp_path)
    env = VecEnv(8, 2, 6, 6, seed=1, max_ticks=60, buffer=learner.buffer, num_threads=1)
    bot = RandomBot(seed=0)
    env.reset()
    for _ in range(100):
        env.step(bot.act(env))
    return learner


def test_importance_weights_divided_by_the_batch_largest_scale_the_td_loss(tmp_path):
    # The same network, buffer and samples at every step (so the same TD errors and
    # priorities): only what the weights are divided by differs.
    by_buffer = _learner_on_random_play(tmp_path / "buffer")
    by_batch = _learner_on_random_play(tmp_path / "batch", importance_weights="batch")
    for _ in range(3):  # priorities updated, so the weights spread
        by_batch.net.load_state_dict(by_buffer.net.state_dict())
        a, b = by_buffer.train_step(), by_batch.train_step()
    assert a["mean_weight"] < b["mean_weight"] <= 1.0
    # loss = mean(w * huber): the ratio of the losses is the ratio of the weights.
    assert b["loss"] / a["loss"] == pytest.approx(b["mean_weight"] / a["mean_weight"], rel=1e-4)


def test_a_learner_with_a_target_temperature_trains_on_expected_sarsa_targets(
    tmp_path, monkeypatch
):
    import generals_rl.train.dqn as dqn

    temperatures, targets = [], []

    def recorded(*args):
        temperatures.append(args[-1])
        targets.append(dqn_targets(*args))
        return targets[-1]

    monkeypatch.setattr(dqn, "dqn_targets", recorded)
    for temperature in (None, 0.3):
        learner = _learner_on_random_play(
            tmp_path / str(temperature), target_temperature=temperature
        )
        stats = learner.train_step()
        assert np.isfinite(stats["loss"])
        # The metrics report the targets trained on; without demonstrations, no demo values.
        assert stats["mean_target"] == pytest.approx(targets[-1].mean().item())
        assert np.isnan(stats["demo_mean_q"]) and np.isnan(stats["demo_mean_target"])
    assert temperatures == [None, 0.3]


def test_published_weights_are_the_moving_average_of_the_online_weights(tmp_path):
    tau = 0.25
    learner = _learner_on_random_play(tmp_path, publish_average=tau, publish_every=3)
    average = None
    for _ in range(3):
        learner.train_step()
        online = {k: v.clone() for k, v in learner.net.state_dict().items()}
        average = (
            online
            if average is None
            else {k: (1 - tau) * average[k] + tau * online[k] for k in online}
        )
    published = load_checkpoint(tmp_path / "weights" / "latest.pt")["model"]
    assert published.keys() == online.keys()
    for key, value in published.items():
        assert torch.allclose(value, average[key], atol=1e-6), key
    assert any(not torch.equal(published[k], online[k]) for k in online)
    # Without averaging, the online weights are published.
    plain = _learner_on_random_play(tmp_path / "plain", publish_every=1)
    plain.train_step()
    published = load_checkpoint(tmp_path / "plain" / "weights" / "latest.pt")["model"]
    assert all(torch.equal(v, plain.net.state_dict()[k]) for k, v in published.items())


def _small_config(**overrides) -> DQNConfig:
    values = dict(
        height=6,
        width=6,
        capacity=20_000,
        batch_size=32,
        steps=20,
        learning_starts=500,
        publish_every=10,
        target_every=10,
        channels=4,
        blocks=1,
    )
    return DQNConfig(**{**values, **overrides})


def test_a_time_budget_decays_the_learning_rate_and_ends_the_run(tmp_path):
    server = _serve_random_play()
    try:
        config = _small_config(steps=10**6, time_budget=3.0, lr=1e-3, lr_final_fraction=0.1)
        learner = DQNLearner(config, [server.address], tmp_path)
        row = learner.train(log_every=5)
        assert learner.wall_time >= 3.0 and 5 < learner.step < 10**6
        rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
        rates = [float(r["lr"]) for r in rows]
        assert rates == sorted(rates, reverse=True) and rates[0] > 0.5e-3
        assert row["lr"] == pytest.approx(1e-4) and int(rows[-1]["step"]) == learner.step
        # Without a time budget, the steps set the schedule.
        by_steps = DQNLearner(_small_config(steps=8, lr_final_fraction=0.5), [], tmp_path / "s")
        by_steps.step = 6
        assert by_steps.progress() == pytest.approx(6 / 8)
    finally:
        server.stop()


def test_the_replay_ratio_holds_the_consumer_back_until_the_learner_trains(tmp_path):
    server = _serve_random_play()  # 3,200 experiences served
    ratio = 2.0
    learner = DQNLearner(
        _small_config(batch_size=64, replay_ratio=ratio), [server.address], tmp_path
    )
    try:
        learner.start()
        deadline = time.monotonic() + 30
        while learner.consumed < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # time to read everything, were it not held back
        held = learner.consumed
        # Without a step, one more batch of the stream past learning_starts at most.
        assert 500 <= held < 3_200
        for _ in range(20):
            learner.train_step()
        deadline = time.monotonic() + 30
        allowed = 500 + 20 * 64 / ratio
        while learner.consumed <= held and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert held < learner.consumed
        # Read in batches, so at most one batch beyond what the steps allow.
        assert learner.consumed - allowed <= 1_024
    finally:
        learner.stop()
        server.stop()


def test_an_interrupted_learner_publishes_its_last_steps(tmp_path, monkeypatch):
    server = _serve_random_play()
    learner = DQNLearner(_small_config(steps=1_000), [server.address], tmp_path)
    train_step = learner.train_step

    def interrupted_at_13():
        if learner.step == 13:
            raise KeyboardInterrupt
        return train_step()

    monkeypatch.setattr(learner, "train_step", interrupted_at_13)
    try:
        with pytest.raises(KeyboardInterrupt):
            learner.train(log_every=5)
        latest = load_checkpoint(tmp_path / "weights" / "latest.pt")
        assert latest["counters"]["step"] == 13 and latest["version"] == 2
        assert not learner._thread.is_alive()  # the consumer stopped with it
    finally:
        learner.stop()
        server.stop()


def test_dqn_checkpoints_play_greedily_with_whole_army_moves_and_a_wide_move_view(tmp_path):
    server = _serve_random_play()
    config = _small_config(steps=10, half_moves=False, stack_preference=2.0, move_view=3)
    learner = DQNLearner(config, [server.address], tmp_path)
    try:
        learner.train()
    finally:
        learner.stop()
        server.stop()
    assert not learner.net.config.half_moves and learner.net.config.stack_preference == 2.0
    latest = tmp_path / "weights" / "latest.pt"
    assert NetworkPolicy.from_checkpoint(latest).greedy  # a Q-network's argmax
    assert NetworkPolicy.from_checkpoint(latest).net.input_head.kernel_size == (3, 3)
    assert not NetworkPolicy.from_checkpoint(latest, greedy=False).greedy
    boltzmann = NetworkPolicy.from_checkpoint(latest, temperature=0.3)  # softmax(Q / 0.3)
    assert not boltzmann.greedy and boltzmann.temperature == 0.3
    assert not CheckpointBot(tmp_path / "weights", temperature=0.3).policy.greedy
    actor = CheckpointBot(tmp_path / "weights", seed=3)
    assert actor.policy.greedy
    env = VecEnv(16, 2, 6, 6, seed=5, max_ticks=100, num_threads=1)
    env.reset()
    cells = 6 * 6 * 4
    for _ in range(40):
        actions = actor.act(env, players=[0])
        legal = env.action_masks[:, 0].reshape(16, cells)
        for game, action in enumerate(actions[:, 0]):
            if action >= 0:  # a legal full move: VecEnv full moves come first
                assert action < cells and legal[game, action]
        env.step(actions)
    # A PPO checkpoint keeps sampling.
    ppo = PolicyValueNet(NetConfig(4, 1))
    payload = {"kind": "ppo", "net_config": ppo.config.to_dict(), "model": ppo.state_dict()}
    save_checkpoint(tmp_path / "ppo.pt", payload)
    assert not NetworkPolicy.from_checkpoint(tmp_path / "ppo.pt").greedy


def test_the_learners_shaping_equals_a_slow_reference():
    config = _small_config(gamma=0.9, tick_reward=-0.01, enemy_land_reward=0.5)
    rng = np.random.default_rng(4)
    obs = torch.zeros(5, 9, 6, 6)
    next_obs = torch.zeros(5, 9, 6, 6)
    obs[:, 3] = torch.from_numpy(rng.random((5, 6, 6)) < 0.3).float()  # enemy land
    next_obs[:, 2] = torch.from_numpy(rng.random((5, 6, 6)) < 0.5).float()  # own land
    length = torch.tensor([1, 2, 3, 3, 1])
    done = torch.tensor([False, False, True, False, False])
    got = shaping(config, obs, next_obs, length, done)
    for i in range(5):
        ticks = sum(0.9**k for k in range(int(length[i])))
        taken = sum(
            1
            for y in range(6)
            for x in range(6)
            if obs[i, 3, y, x] > 0 and next_obs[i, 2, y, x] > 0
        )
        expected = -0.01 * ticks + (0.0 if done[i] else 0.5 * taken)
        assert got[i].item() == pytest.approx(expected, abs=1e-6)


def _with_general(obs: torch.Tensor, rows, y: int, x: int, remembered: bool) -> torch.Tensor:
    """``obs`` with the enemy general at (y, x) in ``rows``: in FogMemory's plane for it
    (``obs`` carrying the memory planes), or in sight (enemy land with a general)."""
    if remembered:
        obs[rows, GENERAL_SEEN_PLANE, y, x] = 1
    else:
        obs[rows, 3, y, x] = 1
        obs[rows, 5, y, x] = 1
    return obs


@pytest.mark.parametrize("remembered", [True, False])
def test_the_general_distance_is_the_lands_nearest_over_the_span(remembered):
    channels = 9 + len(MEMORY_CHANNELS) if remembered else 9
    obs = torch.zeros(4, channels, 6, 8)
    obs[:, 2, 0, 0] = 1  # own land in every row
    obs[1, 2, 4, 6] = 1  # row 1 also owns a tile next to the general
    obs = _with_general(obs, [0, 1, 3], 4, 7, remembered)
    obs[3, 2] = 0  # row 3 owns nothing; row 2 has no general
    assert general_distance(obs).tolist() == pytest.approx([11 / 12, 1 / 12, 1.0, 1.0])


@pytest.mark.parametrize("remembered", [True, False])
def test_the_general_distance_from_the_army_is_the_largest_stacks(remembered):
    """From the tile holding the largest army, wherever the land's nearest tile is; an
    army seen on a tile not owned (the enemy's) does not count."""
    channels = 9 + len(MEMORY_CHANNELS) if remembered else 9
    obs = torch.zeros(3, channels, 6, 8)
    obs[:, 2, 0, 0] = obs[:, 2, 4, 6] = 1  # every row owns a far tile and a near one
    obs[:, 0, 0, 0], obs[:, 0, 4, 6] = 0.9, 0.2  # the far one holds the largest army
    obs[1, 0, 4, 6] = 0.95  # row 1's largest is the near one
    obs[2, 0, 0, 0] = 0.0
    obs[2, 0, 1, 1] = 0.99  # row 2: a larger army, but on a tile it does not own
    obs = _with_general(obs, [0, 1, 2], 4, 7, remembered)
    expected = [11 / 12, 1 / 12, 1 / 12]
    assert general_distance(obs, "army").tolist() == pytest.approx(expected)
    assert general_distance(obs, "land").tolist() == pytest.approx([1 / 12] * 3)
    with pytest.raises(ValueError, match="source: expected one of"):
        general_distance(obs, "cities")


@pytest.mark.parametrize("source", ["land", "army"])
def test_approach_shaping_telescopes_over_a_chain(source):
    """Potential-based: one step's shaping plus the next's, discounted, is the shaping of
    the two-step chain; a chain that ends the game drops the last potential. (Each state
    owns one tile: its land's nearest and its largest army's.)"""
    config = _small_config(gamma=0.9, approach_reward=0.6, approach_from=source)
    states = torch.zeros(3, 9 + len(MEMORY_CHANNELS), 6, 6)
    states = _with_general(states, [0, 1, 2], 5, 5, remembered=True)
    for i, (y, x) in enumerate([(0, 0), (2, 1), (5, 4)]):
        states[i, 2, y, x] = 1
    first, second, third = states[0:1], states[1:2], states[2:3]
    one, two, not_done = torch.tensor([1]), torch.tensor([2]), torch.tensor([False])
    a = shaping(config, first, second, one, not_done)
    b = shaping(config, second, third, one, not_done)
    assert (a + 0.9 * b).item() == pytest.approx(shaping(config, first, third, two, not_done))
    # Potentials -0.6 * (10, 7, 1) / 10: closing in pays.
    assert a.item() == pytest.approx(0.6 - 0.9 * 0.42) and b.item() > 0
    ended = shaping(config, first, third, two, torch.tensor([True]))
    assert ended.item() == pytest.approx(0.6)


def test_a_game_cut_at_the_tick_limit_ends_with_the_draw_reward(tmp_path):
    config = _small_config(gamma=0.9, draw_reward=-1.0, max_ticks=60)
    learner = DQNLearner(config, ["127.0.0.1:1"], tmp_path)  # never started
    reward = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    done = torch.tensor([False, False, True, False, False])
    ticks = torch.tensor([57, 55, 57, 10, 59])
    length = torch.tensor([3, 3, 3, 3, 1])  # next states at ticks 60, 58, 60, 13, 60
    got, ended = learner._end_draws(reward, done, ticks, length)
    # cut at 60: rows 0 and 4 (row 2 ended in a win or loss before), at the last step
    expected = [0.1 - 0.9**2, 0.2, 0.3, 0.4, 0.5 - 1.0]
    assert got.tolist() == pytest.approx(expected)
    assert ended.tolist() == [True, False, True, False, True]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--replay-ratio", "-1"], "replay_ratio: must be at least 0, got -1.0"),
        (["--gamma", "1.5"], "gamma: must be in (0, 1], got 1.5"),
        (["--demo-fraction", "1"], "demo_fraction: must be in (0, 1), got 1.0"),
        (["--margin", "-0.5"], "margin: must be at least 0, got -0.5"),
        (["--demo-capacity", "0"], "demo_capacity: must be at least 1, got 0"),
        (["--max-ticks", "0"], "max_ticks: must be at least 1, got 0"),
        (["--draw-reward", "nan"], "draw_reward: must be finite, got nan"),
        (["--tick-reward=-inf"], "tick_reward: must be finite, got -inf"),
        (["--lr", "0"], "lr: must be positive and finite, got 0.0"),
        (["--lr-final-fraction", "0"], "lr_final_fraction: must be in (0, 1], got 0.0"),
        (["--time-budget", "-5"], "time_budget: must be positive seconds, got -5.0"),
        (["--publish-average", "1"], "publish_average: must be in [0, 1), got 1.0"),
        (
            ["--target-temperature", "0"],
            "target_temperature: must be positive and finite, got 0.0",
        ),
        (
            ["--approach-reward", "-1"],
            "approach_reward: must be at least 0 and finite, got -1.0",
        ),
        (
            ["--approach-from", "cities"],
            "approach_from: expected one of ('land', 'army'), got 'cities'",
        ),
        (["--move-view", "2"], "move_view: expected one of (1, 3), got 2"),
        (
            ["--action-head", "diagonal"],
            "action_head: expected one of joint, factorised, got 'diagonal'",
        ),
        (
            ["--importance-weights", "max"],
            "importance_weights: expected one of ('buffer', 'batch'), got 'max'",
        ),
        (
            ["--from", "farm:f", "--demonstrations-from", "127.0.0.1:2"],
            "--demonstrations-from: not with --from farm:NAME; give host:port",
        ),
        (["--heading-preference", "2", "--clock"], None),  # implies --compass: accepted
    ],
)
def test_train_dqn_refuses_bad_options_in_one_line(tmp_path, capsys, option, message):
    from generals_rl.cli import main

    if message is None:  # accepted: the learner then waits for a farm that is not there
        args = ["--wait-timeout", "0.2", "--run-dir", str(tmp_path / "run")]
        code = main(["train", "dqn", "--from", "127.0.0.1:1", "--size", "6x6", *option, *args])
        assert code == 1 and "fewer than 2000 experiences" in capsys.readouterr().err
        payload = load_checkpoint(tmp_path / "run" / "weights" / "latest.pt")
        assert payload["net_config"]["compass"] and payload["net_config"]["heading_preference"] == 2
        assert payload["net_config"]["clock"]
        return
    code = main(["train", "dqn", "--from", "127.0.0.1:1", "--run-dir", str(tmp_path), *option])
    err = capsys.readouterr().err
    assert code == 2 and err == f"generals-rl train dqn: {message}\n"


def _start_and_read_demonstrations(learner: DQNLearner, count: int) -> None:
    learner.start()
    deadline = time.monotonic() + 30
    while learner.demonstrated < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_the_margin_loss_equals_a_slow_reference():
    torch.manual_seed(3)
    q = torch.randn(5, 7)
    legal = torch.rand(5, 7) < 0.5
    demonstrated = torch.tensor([0, 3, 6, 2, 2])
    legal[4] = False  # nothing else legal: only the demonstrated action counts
    got = margin_loss(q, demonstrated, legal, 0.8)
    for i in range(5):
        a = int(demonstrated[i])
        candidates = [b for b in range(7) if legal[i, b] or b == a]
        best = max(float(q[i, b]) + (0.0 if b == a else 0.8) for b in candidates)
        assert got[i].item() == pytest.approx(best - float(q[i, a]), abs=1e-6)
        assert got[i].item() >= 0
    assert got[4].item() == 0


def test_demonstrations_are_read_to_capacity_and_ranked_first(tmp_path):
    """A demonstrator serving HeuristicBot's games in seat 0: the learner reads
    ``demo_capacity`` of them and no more, takes a quarter of every minibatch there, and
    the margin loss teaches the network the demonstrated moves."""
    actors = _serve_random_play()
    demonstrator = _serve_random_play(400, first_seat=HeuristicBot())  # 3,200 of seat 0
    config = _small_config(
        steps=300,
        batch_size=32,
        lr=3e-3,
        player_ids=(0,),
        demo_capacity=1_500,
        demo_fraction=0.25,
        margin_weight=1.0,
        half_moves=False,
        channels=8,
    )
    learner = DQNLearner(config, [actors.address], tmp_path, demonstrations=[demonstrator.address])
    try:
        _start_and_read_demonstrations(learner, 1_500)
        demos = learner.demo_buffer.sample(1_000, seed=1, player_ids=(0,))
        obs = torch.from_numpy(np.ascontiguousarray(demos.state))
        demonstrated = np.asarray(demos.action)
        moved = demonstrated >= 0  # the heuristic's moves (not its passes)

        def agreement() -> float:
            with torch.no_grad():
                q = q_values(learner.net, obs)
            legal = full_mask(masks_from_observations(obs), half_moves=False)
            best = q.masked_fill(~legal, -1e9).argmax(dim=1).numpy()
            return float((best[moved] == demonstrated[moved]).mean())

        before = agreement()
        row = learner.train(log_every=100)
        after = agreement()
        assert 1_500 <= learner.demonstrated < 1_500 + 1_024  # read in batches, then stopped
        stats = learner.demo_buffer.stats()["priorities"]
        assert stats["updates"] == 300 * 8  # a quarter of each minibatch of 32
        assert learner.buffer.stats()["priorities"]["updates"] == 300 * 24
        assert row["demonstrations"] == learner.demonstrated and row["margin_loss"] >= 0
        assert np.isfinite([row["demo_mean_q"], row["demo_mean_target"]]).all(), row
        # Seeds 0-3 gained 0.17-0.29 over 0.11-0.20 (the float path moves it by a few points).
        assert after > before + 0.15, (before, after)
        latest = load_checkpoint(tmp_path / "weights" / "latest.pt")
        assert latest["counters"]["demonstrations"] == learner.demonstrated
    finally:
        learner.stop()
        actors.stop()
        demonstrator.stop()


def test_a_demonstrator_going_away_is_a_warning(tmp_path, caplog):
    """The demonstrator stops after 800 demonstrations: learning goes on from those, with
    a warning; a learner that needs more waits for them and times out saying so."""
    actors = _serve_random_play()
    demonstrator = _serve_random_play(100, first_seat=HeuristicBot())  # 800 of seat 0
    config = _small_config(steps=3, player_ids=(0,), demo_capacity=5_000)
    learner = DQNLearner(config, [actors.address], tmp_path, demonstrations=[demonstrator.address])
    try:
        _start_and_read_demonstrations(learner, 800)
        demonstrator.stop()
        learner._demo_thread.join(30)
        assert not learner._demo_thread.is_alive()
        assert "demonstrations: reading stopped after 800" in caplog.text
        learner.train()
        assert learner.step == 3 and learner.demonstrated == 800
    finally:
        learner.stop()
        demonstrator.stop()

    early = _serve_random_play(100, first_seat=HeuristicBot())
    config = _small_config(player_ids=(0,), learning_starts=2_000)  # needs 2,000
    learner = DQNLearner(
        config, [actors.address], tmp_path / "early", demonstrations=[early.address]
    )
    try:
        _start_and_read_demonstrations(learner, 800)
        early.stop()
        with pytest.raises(TimeoutError, match=r"fewer than 2000 experiences \(or demonstrations"):
            learner.train(wait_timeout=1.0)
    finally:
        learner.stop()
        early.stop()
        actors.stop()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_learner_process_stops_on_a_signal_even_with_sigint_ignored(tmp_path, sig):
    """Started as a shell's background job starts it (SIGINT ignored), or stopped as a pod
    is (SIGTERM), the learner still stops: exit 130, one line, its weights published."""
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    command = [sys.executable, "-m", "generals_rl.cli", "train", "dqn", "--from", "127.0.0.1:1"]
    learner = subprocess.Popen(
        [*command, "--size", "6x6", "--run-dir", str(run), "--wait-timeout", "60"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 60
        while not (run / "weights" / "latest.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (run / "weights" / "latest.pt").exists()
        learner.send_signal(getattr(signal, sig))
        _, err = learner.communicate(timeout=30)
    finally:
        learner.kill()
    assert learner.returncode == 130
    assert err.strip().splitlines()[-1] == "generals-rl train dqn: interrupted"


def _memories_in_play_order(buffer: ExperienceBuffer) -> dict:
    """The reference: each (game, player)'s FogMemory run over its experiences' states in
    tick order, then its last next state; the memory planes by (game, player, tick)."""
    from generals_rl.train.features import FogMemory

    every = buffer.cursor().read(100_000)
    rows: dict = {}
    for i in range(len(every)):
        key = (int(every.game_id[i]), int(every.player_id[i]))
        rows.setdefault(key, []).append(i)
    expected = {}
    for (game, player), indices in rows.items():
        indices.sort(key=lambda i: int(every.tick[i]))
        memory = FogMemory(1, buffer.height, buffer.width)
        steps = [(every.state[i], int(every.tick[i])) for i in indices]
        last = indices[-1]
        steps.append((every.next_state[last], int(every.tick[last]) + 1))
        for state, tick in steps:
            planes = memory.update(state[None], np.array([tick]))[0, 9:]
            expected[(game, player, tick)] = planes
    return expected


def test_replayed_memories_equal_the_memories_of_play(tmp_path):
    from generals_rl.train.replay_memory import ReplayMemory

    server = _serve_random_play(ticks=150)
    try:
        source = server.buffer
        expected = _memories_in_play_order(source)
        local = ExperienceBuffer(6, 6, capacity=20_000, policy="overwrite")
        memory = ReplayMemory(local, 20_000)
        cursor = source.cursor()
        while len(batch := cursor.read_raw(77)):  # batches cutting games mid-tick
            memory.append(batch)
        assert local.stats()["resident"] == len(source.cursor().read(100_000)) == 2400
        sample = local.sample(300, seed=5, n_step=3, gamma=0.9)
        ticks, lengths = sample.tick, sample.nstep_length
        states = memory.planes(sample)
        nexts = memory.planes(sample, np.asarray(sample.nstep_next_state))
        assert states.shape == nexts.shape == (300, 9, 6, 6)
        for i in range(300):
            key = (int(sample.game_id[i]), int(sample.player_id[i]))
            np.testing.assert_array_equal(states[i], expected[(*key, int(ticks[i]))])
            later = int(ticks[i] + lengths[i])
            np.testing.assert_array_equal(nexts[i], expected[(*key, later)])
        assert memory.misses == 0 and memory.partial == 0
        # Something to remember: the enemy seen and then lost from sight.
        assert any(((e[1] > 0) & (e[0] > 0)).any() for e in expected.values())
    finally:
        server.stop()


def test_replayed_memory_of_a_game_joined_late_is_partial_and_a_miss_is_the_state_alone():
    from generals_rl.train.features import memory_planes, remember
    from generals_rl.train.replay_memory import ReplayMemory

    server = _serve_random_play(ticks=40)
    try:
        local = ExperienceBuffer(6, 6, capacity=5_000, policy="overwrite")
        memory = ReplayMemory(local, 5_000)
        memory.append(server.buffer.cursor(min_tick=10).read_raw(100_000))
        assert memory.partial == 8 * 2  # every game's both players, from tick 10
        sample = local.sample(20, seed=1)
        memory._slots.clear()  # forgotten: each sample has its state alone
        planes = memory.planes(sample)
        assert memory.misses == 20
        state = np.asarray(sample.state)
        alone = remember(np.zeros((20, 5, 6, 6), np.float32), state)
        np.testing.assert_array_equal(planes, memory_planes(alone, np.asarray(sample.tick)))
    finally:
        server.stop()


def test_a_learner_with_memory_trains_on_the_memories_and_its_actors_keep_theirs(tmp_path):
    server = _serve_random_play()
    try:
        learner = DQNLearner(_small_config(steps=10, memory=True), [server.address], tmp_path)
        seen = _record_forward(learner, lambda obs, ticks: obs.shape[1])
        row = learner.train(log_every=5)
        assert learner.step == 10 and set(seen) == {9 + 9}
        assert row["memory_misses"] == 0 and np.isfinite(row["loss"])
        assert load_checkpoint(tmp_path / "weights" / "latest.pt")["net_config"]["memory"]
        env = VecEnv(4, 2, 6, 6, seed=4, max_ticks=30, num_threads=1)
        env.reset()
        actor = CheckpointBot(tmp_path / "weights", temperature=0.5)
        cells = 6 * 6 * 4
        moved = 0
        for _ in range(40):  # the actor's memory follows the games (it needs their ticks)
            actions = actor.act(env)
            legal = env.action_masks.reshape(4, 2, cells)
            for (game, seat), action in np.ndenumerate(actions):
                if action >= 0:  # a full move, or its half move (cells further)
                    assert legal[game, seat, action % cells]
                    moved += 1
            env.step(actions)
        assert moved > 0
    finally:
        learner.stop()
        server.stop()
