"""Actors: self-play with a network from a checkpoint, picking up new weights as they
are published."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generals_rl import VecEnv
from generals_rl.selfplay import SelfPlay, SelfPlayConfig
from generals_rl.train import NetConfig, PolicyValueNet, save_checkpoint
from generals_rl.train.policy import CheckpointBot


def publish(path, version: int, pass_bias: float, kind: str = "ppo") -> None:
    torch.manual_seed(version)
    net = PolicyValueNet(NetConfig(channels=4, blocks=1))
    with torch.no_grad():
        net.pass_head.bias.fill_(pass_bias)
    save_checkpoint(
        path,
        {
            "kind": kind,
            "net_config": net.config.to_dict(),
            "model": net.state_dict(),
            "version": version,
        },
    )


def test_actor_picks_up_new_weights(tmp_path):
    publish(tmp_path / "latest.pt", 1, pass_bias=100.0)  # passes always
    bot = CheckpointBot(tmp_path, check_every=0.0)
    assert bot.version == 1
    env = VecEnv(8, 2, 5, 5, seed=1, num_threads=1, army_scaling="log")
    env.reset()
    for _ in range(4):
        env.step(np.full((8, 2), -1, dtype=np.int32))  # generals grow: moves become legal
    assert (bot.act(env, players=[0])[:, 0] == -1).all()
    publish(tmp_path / "latest.pt", 2, pass_bias=-100.0)  # never passes while a move is legal
    actions = bot.act(env, players=[0])
    assert bot.version == 2 and bot.reloads == 2
    assert (actions[:, 0] >= 0).all()
    assert bot.reload() is False  # unchanged since


def test_epsilon_explores_with_legal_moves(tmp_path):
    publish(tmp_path / "w.pt", 1, pass_bias=100.0)
    bot = CheckpointBot.from_spec(f"{tmp_path / 'w.pt'}@1.0", seed=3)
    assert bot.epsilon == 1.0
    env = VecEnv(16, 2, 5, 5, seed=1, num_threads=1, army_scaling="log")
    env.reset()
    for _ in range(4):
        env.step(np.full((16, 2), -1, dtype=np.int32))
    actions = bot.act(env, players=[1])[:, 1]
    assert (actions != -1).any()  # uniform over legal actions: the pass is one of many
    with pytest.raises(ValueError):
        CheckpointBot.from_spec(str(tmp_path / "missing.pt"))


def test_a_spec_names_epsilon_and_temperature(tmp_path):
    publish(tmp_path / "w.pt", 1, pass_bias=0.0)
    path = tmp_path / "w.pt"
    bot = CheckpointBot.from_spec(f"{path}@epsilon=0.25:temperature=0.5")
    assert (bot.epsilon, bot.temperature) == (0.25, 0.5)
    assert (bot.policy.epsilon, bot.policy.temperature) == (0.25, 0.5)
    bot = CheckpointBot.from_spec(f"{path}@0.1")  # a bare number is the epsilon
    assert (bot.epsilon, bot.temperature) == (0.1, None)
    for options, problem in [
        ("lots", "'lots' is not a number"),
        ("temperature=hot", "'hot' is not a number"),
        ("heat=1", "expected PATH"),
        ("epsilon=0.1:epsilon=0.2", "expected PATH"),
        ("epsilon=1.5", "epsilon: must be in [0, 1], got 1.5"),
        ("temperature=0", "temperature: must be positive and finite, got 0.0"),
        ("temperature=-1", "temperature: must be positive and finite, got -1.0"),
        ("temperature=inf", "temperature: must be positive and finite, got inf"),
        ("temperature=nan", "temperature: must be positive and finite, got nan"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            CheckpointBot.from_spec(f"{path}@{options}")


def test_a_q_network_samples_its_values_at_a_temperature(tmp_path):
    publish(tmp_path / "q.pt", 1, pass_bias=0.0, kind="dqn")
    greedy = CheckpointBot.from_spec(str(tmp_path / "q.pt"), seed=3)
    boltzmann = CheckpointBot.from_spec(f"{tmp_path / 'q.pt'}@temperature=50", seed=3)
    assert greedy.policy.greedy and not boltzmann.policy.greedy
    env = VecEnv(32, 2, 5, 5, seed=1, num_threads=1, army_scaling="log")
    env.reset()
    for _ in range(4):
        env.step(np.full((32, 2), -1, dtype=np.int32))
    argmax = greedy.act(env, players=[0])[:, 0]
    assert (greedy.act(env, players=[0])[:, 0] == argmax).all()  # the argmax, every time
    sampled = np.stack([boltzmann.act(env, players=[0])[:, 0] for _ in range(4)])
    assert (sampled != argmax).any()  # a hot softmax leaves the argmax
    # However hot, the masked actions stay masked (not lifted to the legal ones).
    uniform = CheckpointBot.from_spec(f"{tmp_path / 'q.pt'}@temperature=1e12", seed=3)
    sampled = np.concatenate([sampled, [uniform.act(env, players=[0])[:, 0] for _ in range(4)]])
    legal = env.action_masks[:, 0].reshape(32, -1)  # full moves; half moves follow them
    cells = legal.shape[1]
    moves = sampled[sampled >= 0]
    games = np.nonzero(sampled >= 0)[1]
    assert (moves < 2 * cells).all() and legal[games, moves % cells].all()


def test_selfplay_with_a_checkpoint_policy(tmp_path):
    publish(tmp_path / "latest.pt", 5, pass_bias=0.0)
    config = SelfPlayConfig(
        policies=(f"checkpoint:{tmp_path}@0.1", "random"),
        games=4,
        num_envs=4,
        height=5,
        width=5,
        max_ticks=40,
        capacity=10_000,
    )
    play = SelfPlay(config)
    summary = play.run()
    assert summary.games >= 4 and summary.experiences > 0
    assert play.bots[0].version == 5
    with pytest.raises(ValueError, match="checkpoint:PATH"):
        SelfPlayConfig(policies=("chess", "random"))
