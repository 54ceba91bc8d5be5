"""The distributed learner's benchmark: double DQN against RandomBot on 10x10, the learner
and two actor farms (and a demonstrator farm) in separate processes talking gRPC on
loopback.

    python bench/bench_dqn.py --minutes 30 [--demonstrator heuristic|none]

Starts ``generals-rl train dqn`` (a Q-network with memory: FogMemory's planes, rebuilt
by the learner for each sample; the learner writes its initial weights first), then
``--actors`` farms (``generals-rl selfplay --config``), each playing the published weights
with its own temperature (Boltzmann exploration over its Q-values) and epsilon against
RandomBot and serving both seats' experiences; the learner
reads seat 0 (the network's) at a fixed replay ratio, which holds the farms back (block
mode) while it trains. With ``--demonstrator heuristic`` (the default) a third farm plays
HeuristicBot against RandomBot, and the learner reads ``demo-capacity`` of its seat-0
experiences as demonstrations (DQfD: a share of every minibatch and a large-margin loss);
that farm plays just enough games for them and then waits, idle. After ``--minutes`` of
wall time from the learner's start, every process is stopped with SIGINT (the learner
publishes its last weights), and the final weights are evaluated over ``--eval-games``
games on 10x10 with 500 ticks: sampled at temperature 0.3 (the headline), greedily and
epsilon-greedily; and over 32 of their games, the Q-values of the moves they play are set
beside the discounted returns that followed (their overestimation), and the games still
open at the tick limit are described (whether the enemy general had been seen, the
shares of land and army), as are the states where one move would take the enemy general.
``--curve-points`` earlier published versions are evaluated too (fewer games each), for
the learning curve PNG. Target: >= 80% wins within 30 minutes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_learning import CONFIG as PPO_BENCHMARK
from generals_rl.actions import capturing_moves, to_gym_actions
from generals_rl.train import NetworkPolicy, make_opponent
from generals_rl.train.checkpoint import load_checkpoint
from generals_rl.train.dqn import DQNConfig, q_values, shaping
from generals_rl.train.evaluate import evaluate
from generals_rl.train.features import GENERAL_SEEN_PLANE, FogMemory
from generals_rl.train.model import full_mask
from generals_rl.train.policy import seat_views
from generals_rl.vec_env import RewardConfig, VecEnv

TARGET = 0.80
EVAL_MAX_TICKS = 500
# The learner's settings (``generals-rl train dqn`` flags).
LEARNER = {
    "batch-size": 256,
    "lr": 5e-4,
    # A shorter horizon than PPO's: every n-step target bootstraps, and a bias in the
    # values compounds over about 1 / (1 - gamma^n) targets (3.6 at 0.97, 11.5 at 0.99).
    "gamma": 0.97,
    "n-step": 8,
    "capacity": 200_000,
    "learning-starts": 5_000,
    "target-every": 250,
    "publish-every": 200,
    "channels": 16,
    # A move's value reads the tile it enters: whether the enemy general is there, and
    # what army holds it.
    "move-view": 3,
    "blocks": 2,
    "stack-preference": 4.0,
    "replay-ratio": 8.0,
    "tick-reward": -0.002,
    "enemy-land-reward": 0.05,
    "torch-threads": 2,
}
# With a demonstrator: its demonstrations, their share of a minibatch and the margin.
DEMONSTRATIONS = {
    "demo-capacity": 50_000,
    "demo-fraction": 0.25,
    "margin": 0.8,
    "margin-weight": 1.0,
}
LEARNER.update(DEMONSTRATIONS)
# The demonstrator plays enough games for demo-capacity of its seat's experiences (a
# HeuristicBot game against RandomBot on 10x10 lasts about 220 ticks, at most 500), then
# waits, idle, until the learner has read them or the run ends.
DEMONSTRATED_GAME = 200
DRAIN_TIMEOUT = 3600.0
LEARNER_FLAGS = ("whole-army-moves", "bfloat16-trunk", "memory")
# The farms' rewards are the PPO benchmark's: the outcome, cities, and a little for every
# tile gained, so that expanding pays before a first win (the learner adds a cost per tick
# and more for enemy tiles taken); the outcome worth 10, so that taking the general
# outweighs the values of going on.
REWARDS = {**PPO_BENCHMARK["reward"], "win": 10.0, "loss": -10.0}
ACTOR_ENVS = 32
ACTOR_BUFFER = 16_384  # small, so that a learner holding back its reading holds the farm back


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def farm_config(
    run: Path, name: str, bots: list[str], seed: int, port: int, games: int = 0
) -> Path:
    """A farm of ``bots`` serving on ``port``: ``games`` games then waiting (up to the
    run's end) for its experiences to be read, or playing until stopped (0)."""
    config = {
        "log_level": "warning",
        "collection": {
            "games": games,
            "envs": ACTOR_ENVS,
            "threads": 1,
            "board": {"height": 10, "width": 10},
            "bots": bots,
            "max_ticks": EVAL_MAX_TICKS,
            "seed": seed,
            "buffer_size": ACTOR_BUFFER,
            "buffer_policy": "block",
            "wait_for_consumers": 1,  # the learner: nothing is played before it reads
        },
        "streaming": {
            "address": f"127.0.0.1:{port}",
            "drain_timeout": DRAIN_TIMEOUT if games else 0,
        },
        "storage": {"enabled": False},
        "rewards": REWARDS,
    }
    path = run / f"{name}.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def stop(process: subprocess.Popen, timeout: float = 60.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# The final weights are evaluated sampling softmax(Q / 0.3) (the headline: a greedy
# policy can repeat itself forever), greedily, and epsilon-greedily, as DQN agents
# usually are. The earlier versions of the curve are played as the headline.
HEADLINE = "temperature_0.3"
EVAL_POLICIES = {
    HEADLINE: {"temperature": 0.3},
    "greedy": {},
    "epsilon_0.05": {"epsilon": 0.05},
}


def evaluate_weights(path: Path, games: int, seed: int = 10_000_019, **policy_options) -> dict:
    policy = NetworkPolicy.from_checkpoint(path, seed=777, **policy_options)
    result = evaluate(
        policy,
        make_opponent("random", seed=4242),
        games,
        10,
        10,
        seed=seed,
        max_ticks=EVAL_MAX_TICKS,
        num_envs=64,
        num_threads=1,
    )
    return result.to_dict()


def final_games(path: Path, games: int = 32) -> dict:
    """The weights' first ``games`` games at the headline temperature against RandomBot,
    each to its end, for two figures. ``value_calibration``: the Q-values of the actions
    played beside the discounted returns that followed, with the farms' rewards and the
    learner's shaping (its config, saved with the weights; a draw at the tick limit ends
    its return there); their gap is the values' overestimation. ``open_games``: the
    games still open at the tick limit, with whether the network's memory held the
    enemy general and its share of the land and army there. ``captures``: the states
    where one of the network's full moves would take the enemy general (and win), how
    often it played one, and the Q-value of the best such move beside the best of all."""
    policy = NetworkPolicy.from_checkpoint(path, seed=777, **EVAL_POLICIES[HEADLINE])
    net = policy.net
    config = DQNConfig(**load_checkpoint(path)["config"])
    env = VecEnv(
        games,
        2,
        10,
        10,
        seed=30_000_001,
        max_ticks=EVAL_MAX_TICKS,
        num_threads=1,
        reward_config=RewardConfig(**REWARDS),
        army_scaling=net.config.army_scaling,
        army_scale=net.config.army_scale,
    )
    env.reset()
    opponent = make_opponent("random", seed=4242)
    seats = np.zeros(games, dtype=np.int64)  # the network plays seat 0
    memory = FogMemory(games, 10, 10) if net.config.memory else None
    general_seen = np.full(games, -1)  # the tick the memory first held the enemy general
    open_at_limit = []
    actions = np.full((games, 2), -1, dtype=np.int32)
    values, rewards, ended = [], [], np.zeros(games, dtype=bool)
    captures = []  # (played, Q of the best capture, best Q) where one move takes the general
    obs, masks = seat_views(env, seats)
    planes = memory.update(obs, env.ticks) if memory is not None else obs
    while not ended.all():
        ticks = torch.from_numpy(env.ticks.astype(np.int64))
        if memory is not None:
            held = planes[:, GENERAL_SEEN_PLANE]
            first = (held.reshape(games, -1).max(axis=1) > 0) & (general_seen < 0)
            general_seen[first] = env.ticks[first]
        for game in np.flatnonzero(~ended & (env.ticks == EVAL_MAX_TICKS - 1)):
            open_at_limit.append(_standing(env.game_state(game), int(general_seen[game])))
        opponent.act(env, seats, actions)
        actions[:, 0] = policy.actions(obs, masks, env.ticks)
        with torch.no_grad():
            legal = full_mask(torch.from_numpy(masks.astype(bool)), net.config.half_moves)
            q = q_values(net, torch.from_numpy(planes), ticks=ticks, mask=legal)
            played = torch.from_numpy(to_gym_actions(actions[:, 0], 10, 10).astype(np.int64))
            values.append(np.where(ended, np.nan, q.gather(1, played[:, None])[:, 0].numpy()))
            best = q.masked_fill(~legal, -np.inf).amax(dim=1)
        for game in np.flatnonzero(~ended):
            state = env.game_state(game)
            moves = capturing_moves(state["owner"], state["army"], state["generals"][1], 0, 10, 10)
            if moves:
                q_capture = float(q[game, moves].max())
                captures.append((int(played[game]) in moves, q_capture, float(best[game])))
        _, reward, _, _, info = env.step(actions)
        done = info["episode_done"]
        # The next states with their memory, as the learner shapes its samples.
        next_obs, masks = seat_views(env, seats)
        next_planes = memory.update(next_obs, env.ticks) if memory is not None else next_obs
        shaped = reward[:, 0] + np.asarray(
            shaping(
                config,
                torch.from_numpy(planes),
                torch.from_numpy(next_planes),
                torch.ones(games),  # one tick
                torch.tensor(done),  # a copy: the env's array is read-only
            )
        )
        rewards.append(np.where(ended, 0.0, shaped))
        ended |= done
        obs, planes = next_obs, next_planes
    returns, following = [], np.zeros(games)
    for reward in reversed(rewards):
        following = reward + config.gamma * following
        returns.append(following)
    q_played = np.concatenate(values)
    g = np.concatenate(returns[::-1])[~np.isnan(q_played)]
    q_played = q_played[~np.isnan(q_played)]

    def mean(values) -> float | None:
        return round(float(np.mean(values)), 3) if len(values) else None

    def open_mean(key: str) -> float | None:
        return mean([o[key] for o in open_at_limit])

    seen = [o["general_seen_at"] for o in open_at_limit if o["general_seen_at"] >= 0]
    played_capture, q_capture, q_best = np.array(captures, dtype=float).reshape(-1, 3).T
    return {
        "value_calibration": {
            "games": games,
            "mean_q_played": mean(q_played),
            "mean_return": mean(g),
        },
        "open_games": {
            "games": games,
            "open_at_limit": len(open_at_limit),
            "general_seen": len(seen) if memory is not None else None,
            "median_tick_general_first_seen": int(np.median(seen)) if seen else None,
            "mean_land_share": open_mean("land_share"),
            "mean_army_share": open_mean("army_share"),
            "mean_largest_army": open_mean("largest_army"),
            "mean_enemy_general_army": open_mean("enemy_general_army"),
            "games_at_limit": open_at_limit,
        },
        "captures": {
            "states": len(captures),
            "played": int(played_capture.sum()),
            "valued_best": int((q_capture >= q_best).sum()),
            "mean_q_capture": mean(q_capture),
            "mean_q_best": mean(q_best),
        },
    }


def _standing(state: dict, general_seen_at: int) -> dict:
    """Seat 0's share of the players' land and army on ``state``'s board, its largest
    army on one tile and the army on the enemy general (what that tile must beat)."""
    owner, army = np.asarray(state["owner"]), np.asarray(state["army"])
    land = [int((owner == p).sum()) for p in (0, 1)]
    armies = [int(army[owner == p].sum()) for p in (0, 1)]
    return {
        "largest_army": int(army[owner == 0].max()),
        "enemy_general_army": int(army.flat[state["generals"][1]]),
        "land": land,
        "army": armies,
        "land_share": round(land[0] / max(1, sum(land)), 3),
        "army_share": round(armies[0] / max(1, sum(armies)), 3),
        "general_seen_at": general_seen_at,
    }


def version_times(run: Path) -> dict[int, float]:
    """Wall time (s since the first step) at each logged step of the learner."""
    with (run / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["wall_time"]) for r in csv.DictReader(f)}


def plot_curve(points: list[dict], run: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (run / "metrics.csv").open() as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    minutes = [p["minutes"] for p in points]
    ax.errorbar(
        minutes,
        [p["win_rate"] for p in points],
        yerr=[
            [p["win_rate"] - p["win_rate_ci95"][0] for p in points],
            [p["win_rate_ci95"][1] - p["win_rate"] for p in points],
        ],
        marker="o",
        capsize=3,
    )
    ax.axhline(TARGET, color="grey", linestyle="--", label=f"target {TARGET:.0%}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("learner wall time (min)")
    ax.set_ylabel(f"win rate vs RandomBot, 10x10 ({HEADLINE.replace('_', ' ')})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax = axes[1]
    t = [r["wall_time"] / 60 for r in rows]
    ax.plot(t, [r["mean_q"] for r in rows], label="mean Q of the batch")
    ax.plot(t, [r["mean_target"] for r in rows], label="mean TD target of the batch")
    demonstrated = any(r["demonstrations"] for r in rows)
    ax.plot(t, [r["loss"] for r in rows], label="loss (TD + margin)" if demonstrated else "TD loss")
    if demonstrated:
        ax.plot(t, [r["margin_loss"] for r in rows], label="margin loss (demonstrations)")
    ax.set_xlabel("learner wall time (min)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    farms = "2 actor farms" + (" + a HeuristicBot demonstrator" if demonstrated else "")
    fig.suptitle(f"Distributed double DQN vs RandomBot (learner + {farms} over gRPC)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--run-dir", default="runs/bench-dqn")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument(
        "--epsilons", default="0.02,0.02", help="each actor's epsilon, comma-separated"
    )
    parser.add_argument(
        "--temperatures",
        default="0.3,0.5",
        help="each actor's Boltzmann temperature over its Q-values, comma-separated "
        "('greedy': the argmax)",
    )
    parser.add_argument(
        "--demonstrator",
        default="heuristic",
        choices=("heuristic", "none"),
        help="a third farm whose seat 0 (this bot, against RandomBot) gives the learner "
        "demonstrations (DQfD); 'none' learns from the actors alone",
    )
    parser.add_argument("--eval-games", type=int, default=400)
    parser.add_argument("--curve-points", type=int, default=5)
    parser.add_argument("--curve-games", type=int, default=100)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="override a learner flag, e.g. --set n-step=3 (VALUE 'on' gives a switch such "
        "as --clock, 'off' drops a flag)",
    )
    parser.add_argument(
        "--reward",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a farm reward weight, e.g. --reward land_gained=0",
    )
    parser.add_argument("--plot", default=None, help="curve PNG (default: RUN_DIR/curve.png)")
    args = parser.parse_args(argv)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    temperatures = [None if t == "greedy" else float(t) for t in args.temperatures.split(",")]
    for name, values in (("epsilons", epsilons), ("temperatures", temperatures)):
        if len(values) != args.actors:
            parser.error(f"--{name}: give {args.actors} values, got {len(values)}")
    learner_options: dict = {**LEARNER, **{flag: True for flag in LEARNER_FLAGS}}
    for item in args.set:
        name, _, value = item.partition("=")
        learner_options[name] = True if value == "on" else value
    learner_options = {k: v for k, v in learner_options.items() if v != "off"}
    for item in args.reward:
        name, _, value = item.partition("=")
        if name not in REWARDS:
            parser.error(f"--reward: unknown weight {name!r}; one of {', '.join(REWARDS)}")
        REWARDS[name] = float(value)

    run = Path(args.run_dir)
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    farms = {}
    for i, (epsilon, temperature) in enumerate(zip(epsilons, temperatures, strict=True)):
        options = f"epsilon={epsilon}" + (
            f":temperature={temperature}" if temperature is not None else ""
        )
        farms[f"actor{i}"] = ([f"checkpoint:{run / 'weights'}@{options}", "random"], 1000 + i, 0)
    ports = {name: free_port() for name in farms}
    if args.demonstrator != "none":
        games = int(learner_options["demo-capacity"]) // DEMONSTRATED_GAME + ACTOR_ENVS
        farms["demonstrator"] = ([args.demonstrator, "random"], 2000, games)
        ports["demonstrator"] = free_port()
        learner_options["demonstrations-from"] = f"127.0.0.1:{ports['demonstrator']}"
    else:
        learner_options = {k: v for k, v in learner_options.items() if k not in DEMONSTRATIONS}
    cli = [sys.executable, "-m", "generals_rl.cli"]
    learner_cmd = [
        *cli,
        "train",
        "dqn",
        "--from",
        ",".join(f"127.0.0.1:{ports[name]}" for name in farms if name.startswith("actor")),
        "--size",
        "10x10",
        "--run-dir",
        str(run),
        "--steps",
        "100000000",
        "--player-ids",
        "0",
        "--log-every",
        "200",
    ]
    for name, value in learner_options.items():
        learner_cmd += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    load_at_start = os.getloadavg()
    learner_log = (run / "learner.log").open("w")
    learner = subprocess.Popen(learner_cmd, stdout=learner_log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    actors: dict[str, subprocess.Popen] = {}
    try:
        while not (run / "weights" / "latest.pt").exists():
            if learner.poll() is not None:
                raise SystemExit(f"the learner exited with {learner.returncode}: see {run}")
            time.sleep(0.1)
        for name, (bots, seed, games) in farms.items():
            config = farm_config(run, name, bots, seed, ports[name], games)
            actors[name] = subprocess.Popen(
                [*cli, "selfplay", "--config", str(config)],
                stdout=(run / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        deadline = started + args.minutes * 60
        while time.monotonic() < deadline:
            if learner.poll() is not None:
                raise SystemExit(f"the learner exited with {learner.returncode}: see {run}")
            time.sleep(1.0)
    finally:
        codes = {"learner": stop(learner)}
        for name, actor in actors.items():
            codes[name] = stop(actor)
    wall = time.monotonic() - started
    load_at_end = os.getloadavg()

    torch.set_num_threads(2)
    final = run / "weights" / "latest.pt"
    payload = load_checkpoint(final)
    counters = payload["counters"]
    with (run / "metrics.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    evaluations = {
        name: evaluate_weights(final, args.eval_games, **options)
        for name, options in EVAL_POLICIES.items()
    }
    evaluation = evaluations[HEADLINE]
    played = final_games(final)
    times = version_times(run)
    versions = sorted(run.glob("weights/weights_*.pt"))
    picks = [
        versions[round(k * (len(versions) - 1) / args.curve_points)]
        for k in range(args.curve_points)
    ]
    curve = []
    for path in picks:
        step = load_checkpoint(path)["counters"]["step"]
        logged = [s for s in times if s <= step]
        point = evaluate_weights(path, args.curve_games, seed=20_000_003, **EVAL_POLICIES[HEADLINE])
        curve.append(
            {
                "version": path.name,
                "step": step,
                "minutes": times[max(logged)] / 60 if logged else 0.0,
                **point,
            }
        )
    curve.append(
        {
            "version": "final",
            "step": counters["step"],
            "minutes": float(last["wall_time"]) / 60,
            **evaluation,
        }
    )
    plot = plot_curve(curve, run, Path(args.plot) if args.plot else run / "curve.png")
    print(
        json.dumps(
            {
                "benchmark": "dqn_distributed_vs_random_10x10",
                "learner": learner_options,
                "rewards": REWARDS,
                "actors": {
                    "count": args.actors,
                    "epsilons": epsilons,
                    "temperatures": temperatures,
                    "envs": ACTOR_ENVS,
                },
                "headline": HEADLINE,
                "demonstrator": args.demonstrator,
                "demonstrations": counters.get("demonstrations", 0),
                "wall_time_s": round(wall, 1),
                "gradient_steps": counters["step"],
                "experiences_consumed": counters["consumed"],
                "learner_samples_per_second": float(last["samples_per_second"]),
                "experiences_consumed_per_second": round(counters["consumed"] / wall, 1),
                "replay_ratio": float(last["replay_ratio"]),
                "published_versions": payload["version"],
                "exit_codes": codes,
                "evaluation": evaluations,
                **played,
                "target_met": evaluation["win_rate"] >= TARGET,
                "curve": curve,
                "curve_png": str(plot),
                "load_average": {"start": load_at_start, "end": load_at_end},
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
