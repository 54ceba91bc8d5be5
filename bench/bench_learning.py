"""Learning benchmark: PPO from scratch, 1v1 on 10x10 boards against RandomBot (or
HeuristicBot: ``--set opponent='"heuristic"'``).

Trains for at most ``--minutes`` of training wall time (checked at checkpoints) with
fixed seeds, then plays ``--eval-games`` evaluation games of the final checkpoint
against the training opponent on fresh seeds (sampling from the policy at temperatures 1
and 0.5, the headline, and greedy) with the standard 500-tick limit, and the same number
once more (the headline policy) to 2,000 ticks, and prints one JSON document: the win
rates with their 95% Wilson intervals, every game's outcome and length (the tick it was
decided at, or the limit for a draw), the win rate of the 2,000-tick games within 500,
1,000 and 2,000 ticks, the training wall time, env-steps consumed per second (agent moves
per second of training, rollouts and updates together) and the machine. Target: >= 95%
wins over 400 games within 20 minutes, at 500 ticks (vs HeuristicBot, the moonshot: >=
50% within 60). The learning curve is written to ``--plot``.

    nice python bench/bench_learning.py [--minutes 20] [--run-dir runs/bench-ppo] \
        [--plot docs/ppo_random_10x10.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

import torch
from generals_rl.train import NetworkPolicy, PPOConfig, PPOTrainer, make_opponent
from generals_rl.train.evaluate import evaluate
from generals_rl.train.plot import plot_run

# The benchmark's settings: a small net (its convolutions in bfloat16) whose input carries a
# memory of what was seen under fog (FogMemory) and which chooses the tile to move first,
# then its move, starting out preferring large stacks heading for the enemy seen;
# whole-army moves only; shaped rewards (a little for land gained, more for enemy land
# taken, annealed away; a small cost per tick and a draw at the tick limit as bad as a
# loss, so games are won sooner); board sides from 4
# to 10 (padded to 10x10 with mountains), the smallest side rising with the win rate (a
# curriculum). Evaluation is on full 10x10 boards.
EVAL_MAX_TICKS = 500  # evaluation games end in a draw at the standard tick limit
# The final policy is evaluated three ways: sampling from it, from it sharpened by a
# temperature (the headline: closer to its best moves, still varied), and greedy.
EVAL_POLICIES = {
    "sampled": {},
    "temperature_0.5": {"temperature": 0.5},
    "greedy": {"greedy": True},
}
HEADLINE = "temperature_0.5"
# Tick limits of the second, reported-only evaluation (played once, to the longest).
LONGER_TICK_LIMITS = (500, 1000, 2000)
# Win rates to reach within the time budget: 95% vs RandomBot in 20 minutes, the moonshot
# of 50% vs HeuristicBot in 60.
TARGETS = {"random": 0.95, "heuristic": 0.5}
CONFIG = {
    "height": 10,
    "width": 10,
    "max_ticks": 500,
    "opponent": "random",
    "num_envs": 64,
    "rollout_steps": 64,
    "total_env_steps": 3_600_000,
    "seed": 1,
    "gamma": 0.995,
    "gae_lambda": 0.95,
    "lr": 3e-3,
    "lr_final_fraction": 0.1,
    "entropy_coef": 0.005,
    "epochs": 3,
    "minibatches": 4,
    "channels": 16,
    "blocks": 2,
    "memory": True,
    "half_moves": False,
    "stack_preference": 8.0,
    "heading_preference": 4.0,
    "action_head": "factorised",
    "bfloat16_trunk": True,
    "checkpoint_every": 20,
    "min_side": 4,
    "max_side": 10,
    "curriculum_win_rate": 0.6,
    "torch_threads": 2,
    "env_threads": 1,
    "reward": {
        "win": 1.0,
        "loss": -1.0,
        "city_captured": 0.05,
        "city_lost": -0.05,
        "army_advantage": 0.0,
        "land_gained": 0.005,
        "general_captured": 0.0,
    },
    "enemy_land_reward": 0.05,
    "draw_reward": -1.0,
    "tick_reward": -0.002,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--run-dir", default="runs/bench-ppo")
    parser.add_argument(
        "--plot", default=None, help="learning curve PNG (default: RUN_DIR/learning_curve.png)"
    )
    parser.add_argument("--eval-games", type=int, default=400)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="override a PPO setting, e.g. --set channels=16 --set 'reward={\"land_gained\":0.02}'",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    args = parser.parse_args(argv)

    # The schedules (the learning rate's decay, the shaping's anneal) span the minutes
    # asked, or the step budget if a fast machine gets there first: the 20-minute run's,
    # scaled to the minutes asked.
    budget = round(CONFIG["total_env_steps"] * args.minutes / 20)
    rollout = CONFIG["num_envs"] * CONFIG["rollout_steps"]
    config = {**CONFIG, "total_env_steps": max(budget, rollout), "time_budget": args.minutes * 60}
    for item in args.set:
        name, _, value = item.partition("=")
        value = json.loads(value)
        config[name] = {**config[name], **value} if isinstance(config.get(name), dict) else value
    if config["opponent"] not in TARGETS:
        parser.error(f"opponent: expected one of {sorted(TARGETS)}, got {config['opponent']!r}")
    if args.resume:
        trainer = PPOTrainer(PPOConfig(), args.run_dir, resume=True)
    else:
        shutil.rmtree(args.run_dir, ignore_errors=True)
        trainer = PPOTrainer(PPOConfig.from_dict(config), args.run_dir)
    c = trainer.config

    def log(row):
        if row["update"] % 10 == 0:
            print(
                f"update {row['update']} steps {row['env_steps']} t {row['wall_time']:.0f}s "
                f"{row['steps_per_second']:.0f}/s win {row['win_rate']:.3f} "
                f"draw {row['draw_rate']:.3f} "
                f"return {row['episode_return']:+.3f} entropy {row['entropy']:.3f}",
                file=sys.stderr,
                flush=True,
            )

    load_at_start = os.getloadavg()
    started = time.perf_counter()
    trainer.train(log=log)
    elapsed = time.perf_counter() - started
    opponent = {"random": "RandomBot", "heuristic": "HeuristicBot"}.get(c.opponent, c.opponent)
    plot = plot_run(
        args.run_dir, args.plot, title=f"PPO vs {opponent}, 10x10 ({c.channels}x{c.blocks} net)"
    )

    def evaluate_final(policy: dict, max_ticks: int):
        return evaluate(
            NetworkPolicy(trainer.net, seed=777, **policy),
            make_opponent(c.opponent, seed=4242),
            args.eval_games,
            c.height,
            c.width,
            seed=10_000_019,
            max_ticks=max_ticks,
            num_envs=64,
            num_threads=1,
        )

    results = {
        mode: evaluate_final(policy, EVAL_MAX_TICKS).to_dict(per_game=True)
        for mode, policy in EVAL_POLICIES.items()
    }
    # The headline policy without the tick limit: whether its draws are games it would
    # win later (finding the general) or not at all.
    longer = evaluate_final(EVAL_POLICIES[HEADLINE], max(LONGER_TICK_LIMITS))
    results[f"{HEADLINE}_longer_games"] = {
        **longer.to_dict(per_game=True),
        "win_rate_within": {ticks: longer.within(ticks).to_dict() for ticks in LONGER_TICK_LIMITS},
    }
    print(
        json.dumps(
            {
                "benchmark": f"ppo_vs_{c.opponent}_10x10",
                "config": c.to_dict(),
                "updates": trainer.update,
                "env_steps": trainer.env_steps,
                "training_wall_time_s": round(trainer.wall_time, 1),
                "env_steps_per_second": round(trainer.env_steps / trainer.wall_time, 1),
                "training_cpu_time_s": round(trainer.cpu_time, 1),
                "env_steps_per_cpu_second": round(trainer.env_steps / trainer.cpu_time, 1),
                "this_call_s": round(elapsed, 1),
                "episodes": trainer.episodes,
                f"evaluation_vs_{c.opponent}": results,
                "headline": HEADLINE,
                "target_met": results[HEADLINE]["win_rate"] >= TARGETS[c.opponent],
                "learning_curve": str(plot),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_avg_at_start": load_at_start,
                    "load_avg_at_end": os.getloadavg(),
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
