"""The training commands of ``generals-rl``: ``train ppo``, ``evaluate``, ``render``, ``plot``.

Heavy dependencies (torch, matplotlib, Pillow: the ``train`` extra) are imported only
when a command runs. Errors print one line: exit code 2 for bad options, 1 for
failures at run time.

Longer than 400 lines: the parsers and runners of four commands that share
their option handling and error reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli import INTERRUPTED, RUNTIME_ERROR, USAGE_ERROR
from .defaults import MAX_TICKS
from .stop_signals import on_stop_signals

_EXTRA_HINT = "pip install 'generals-rl[train]'"


class UsageError(ValueError):
    """Bad options (exit code 2)."""


def _fail(command: str, message: str, code: int) -> int:
    print(f"generals-rl {command}: {message}", file=sys.stderr)
    return code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run(command: str, body, args) -> int:
    """Runs a command body, turning expected failures into one-line messages. SIGINT and
    SIGTERM interrupt it (a learner then publishes its last weights), also where SIGINT
    was ignored from the start (a background job of a shell) and when a pod is stopped."""
    restore = on_stop_signals(_interrupt)
    try:
        return body(args)
    except UsageError as exc:
        return _fail(command, str(exc), USAGE_ERROR)
    except ImportError as exc:
        missing = exc.name or str(exc)
        return _fail(command, f"needs {missing}: {_EXTRA_HINT}", RUNTIME_ERROR)
    except KeyboardInterrupt:
        return _fail(command, "interrupted", INTERRUPTED)
    except (OSError, ValueError, RuntimeError) as exc:
        return _fail(command, str(exc) or exc.__class__.__name__, RUNTIME_ERROR)
    finally:
        restore()


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 10x10), got {text!r}") from None
    if not (2 <= h <= 256 and 2 <= w <= 256):
        raise argparse.ArgumentTypeError(f"sides must be in 2..256, got {text!r}")
    return h, w


def _reward_item(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}") from None


# ---- train ppo -------------------------------------------------------------------------

# option -> PPOConfig field
_PPO_OPTIONS = {
    "opponent": "opponent",
    "num_envs": "num_envs",
    "rollout_steps": "rollout_steps",
    "total_steps": "total_env_steps",
    "time_budget": "time_budget",
    "seed": "seed",
    "max_ticks": "max_ticks",
    "lr": "lr",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "clip": "clip",
    "entropy_coef": "entropy_coef",
    "value_coef": "value_coef",
    "epochs": "epochs",
    "minibatches": "minibatches",
    "channels": "channels",
    "blocks": "blocks",
    "checkpoint_every": "checkpoint_every",
    "torch_threads": "torch_threads",
    "env_threads": "env_threads",
    "pool_size": "pool_size",
    "army_scaling": "army_scaling",
    "mountain_fraction": "mountain_fraction",
    "cities": "cities",
    "min_general_distance": "min_general_distance",
    "min_side": "min_side",
    "max_side": "max_side",
    "tick_reward": "tick_reward",
    "draw_reward": "draw_reward",
    "enemy_land_reward": "enemy_land_reward",
    "curriculum_win_rate": "curriculum_win_rate",
    "memory": "memory",
    "half_moves": "half_moves",
    "stack_preference": "stack_preference",
    "heading_preference": "heading_preference",
    "action_head": "action_head",
    "move_view": "move_view",
    "bfloat16_trunk": "bfloat16_trunk",
}


def _load_config_file(path: str) -> dict:
    text = Path(path).read_text()
    if path.endswith(".toml"):
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--config {path}: {exc}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config {path}: not JSON ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a JSON object")
    return values


def ppo_config_from_args(args: argparse.Namespace):
    from .train.ppo import PPOConfig

    values = _load_config_file(args.config) if args.config else {}
    for option, name in _PPO_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            values[name] = value
    if args.size is not None:
        values["height"], values["width"] = args.size
    if args.reward:
        values["reward"] = {**values.get("reward", {}), **dict(args.reward)}
    try:
        return PPOConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _train_ppo(args: argparse.Namespace) -> int:
    from .train.ppo import PPOConfig, PPOTrainer

    run_dir = Path(args.run_dir)
    if args.resume:
        trainer = PPOTrainer(PPOConfig(), run_dir, resume=True)
    else:
        config = ppo_config_from_args(args)
        try:
            trainer = PPOTrainer(config, run_dir)
        except FileExistsError as exc:
            raise UsageError(f"{exc}; --resume continues it") from None
    c = trainer.config
    if not args.quiet:
        print(
            f"PPO {c.height}x{c.width} vs {c.opponent}: {c.total_updates} updates of "
            f"{c.batch_size} steps, run in {run_dir} (from update {trainer.update})",
            flush=True,
        )

    def log(row: dict) -> None:
        if args.quiet or (row["update"] % args.log_every and row["update"] != c.total_updates):
            return
        print(
            f"update {row['update']:>5}  steps {row['env_steps']:>9}  "
            f"{row['steps_per_second']:>7.0f}/s  "
            f"win {row['win_rate']:.3f} draw {row['draw_rate']:.3f}  "
            f"return {row['episode_return']:+.3f}  "
            f"entropy {row['entropy']:.3f}  kl {row['approx_kl']:.4f}",
            flush=True,
        )

    row = trainer.train(time_limit=args.time_limit, log=log)
    if not args.quiet and row:
        print(
            f"checkpoint: {trainer.checkpoint_dir / 'latest.pt'} (update {trainer.update}, "
            f"{trainer.env_steps} env steps, {trainer.wall_time:.0f} s of training)"
        )
    return 0


# ---- train dqn -------------------------------------------------------------------------


def _addresses(text: str | None, flag: str, required: bool = True) -> list[str]:
    addresses = [a.strip() for a in (text or "").split(",") if a.strip()]
    if required and not addresses:
        raise UsageError(f"{flag}: give at least one host:port")
    return addresses


def learner_openmp_env() -> dict[str, str]:
    """The learner's OpenMP environment, given before torch loads: idle worker threads
    sleep instead of spinning. The learner shares its cores with actors, and spinning
    threads then hold a core another process needs (two torch threads beside one busy
    core: a step took 980 ms spinning, 112 ms passive). A value already set is kept."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def _train_dqn(args: argparse.Namespace) -> int:
    os.environ.update(learner_openmp_env())
    from .train.dqn import DQNConfig, DQNLearner

    h, w = args.size
    try:
        config = DQNConfig(
            height=h,
            width=w,
            capacity=args.capacity,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_final_fraction=args.lr_final_fraction,
            time_budget=args.time_budget,
            gamma=args.gamma,
            n_step=args.n_step,
            steps=args.steps,
            learning_starts=args.learning_starts,
            target_every=args.target_every,
            publish_every=args.publish_every,
            channels=args.channels,
            blocks=args.blocks,
            seed=args.seed,
            torch_threads=args.torch_threads,
            player_ids=tuple(args.player_ids) if args.player_ids else None,
            half_moves=not args.whole_army_moves,
            stack_preference=args.stack_preference,
            # The heading preference heads by the memory's compass when there is one.
            compass=args.compass or (bool(args.heading_preference) and not args.memory),
            heading_preference=args.heading_preference,
            action_head=args.action_head,
            move_view=args.move_view,
            clock=args.clock,
            memory=args.memory,
            bfloat16_trunk=args.bfloat16_trunk,
            replay_ratio=args.replay_ratio,
            tick_reward=args.tick_reward,
            enemy_land_reward=args.enemy_land_reward,
            approach_reward=args.approach_reward,
            approach_from=args.approach_from,
            draw_reward=args.draw_reward,
            max_ticks=args.max_ticks,
            demo_capacity=args.demo_capacity,
            demo_fraction=args.demo_fraction,
            margin=args.margin,
            margin_weight=args.margin_weight,
            importance_weights=args.importance_weights,
            publish_average=args.publish_average,
            target_temperature=args.target_temperature,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .cli_farm import FARM_PREFIX, train_dqn_on_farm

    demonstrators = _addresses(args.demonstrations, "--demonstrations-from", required=False)
    if args.sources.startswith(FARM_PREFIX):
        if demonstrators:
            raise UsageError("--demonstrations-from: not with --from farm:NAME; give host:port")
        return train_dqn_on_farm(args, config)
    learner = DQNLearner(
        config,
        _addresses(args.sources, "--from"),
        args.run_dir,
        consumer_options={"token": args.token},
        demonstrations=demonstrators,
    )

    def log(row: dict) -> None:
        if not args.quiet:
            print(
                f"step {row['step']:>7}  consumed {row['consumed']:>9}  "
                f"replay ratio {row['replay_ratio']:.2f}  "
                f"loss {row['loss']:.4f}  margin {row['margin_loss']:.4f}  "
                f"q {row['mean_q']:+.3f}  target {row['mean_target']:+.3f}  "
                f"version {row['published_version']}  "
                f"lag {row['consumer_lag']}",
                flush=True,
            )

    try:
        learner.train(log=log, log_every=args.log_every, wait_timeout=args.wait_timeout)
    finally:
        learner.stop()
    if not args.quiet:
        print(
            f"weights: {learner.publish_dir / 'latest.pt'} "
            f"(version {learner.version}, {learner.step} steps)"
        )
    return 0


# ---- evaluate --------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    from .train.checkpoint import CheckpointError
    from .train.evaluate import evaluate
    from .train.policy import NetworkPolicy, make_opponent

    if args.games < 1:
        raise UsageError(f"--games: must be at least 1, got {args.games}")
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint")
    try:
        policy = NetworkPolicy.from_checkpoint(
            args.checkpoint, greedy=args.greedy, seed=args.seed, temperature=args.temperature
        )
        opponent = make_opponent(args.opponent, seed=args.seed + 1)
    except CheckpointError as exc:
        raise RuntimeError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    h, w = args.size
    record = bool(args.gif or args.frames)
    result = evaluate(
        policy,
        opponent,
        args.games,
        h,
        w,
        seed=args.seed,
        max_ticks=args.max_ticks,
        num_envs=args.num_envs,
        record=record,
    )
    if record:
        from .render import draw_frames, save_animation

        player = None if args.no_fog else result.recorded_player
        images = draw_frames(result.frames, player=player, title=f"P{result.recorded_player}=agent")
        save_animation(images, args.gif or Path(args.frames) / "game.gif", frames_dir=args.frames)
    if args.json:
        print(json.dumps({"opponent": args.opponent, **result.to_dict()}))
    else:
        print(f"vs {args.opponent} on {h}x{w}: {result.format()}")
        if record:
            print(
                f"one game ({len(result.frames)} ticks) drawn to "
                f"{args.gif or Path(args.frames) / 'game.gif'}"
            )
    return 0


# ---- render ----------------------------------------------------------------------------


def _render(args: argparse.Namespace) -> int:
    from .render import draw_frames, replay_states, save_animation
    from .replay import ReplayError, load

    if args.every < 1:
        raise UsageError(f"--every: must be at least 1, got {args.every}")
    try:
        replay = load(args.replay)
    except ReplayError as exc:
        raise RuntimeError(str(exc)) from None
    states = replay_states(replay, every=args.every)
    if args.player is not None and not 0 <= args.player < replay.num_players:
        raise UsageError(f"--player: the replay has players 0..{replay.num_players - 1}")
    images = draw_frames(states, player=args.player, tile=args.tile, title=replay.id)
    out = save_animation(images, args.out, frames_dir=args.frames, frame_ms=args.frame_ms)
    print(f"{replay.id}: {len(images)} frames to {out}")
    return 0


# ---- plot ------------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> int:
    from .train.plot import plot_run

    if not (Path(args.run_dir) / "metrics.csv").exists():
        raise FileNotFoundError(f"{args.run_dir}: no metrics.csv (not a training run directory?)")
    out = plot_run(args.run_dir, args.out)
    print(f"learning curve: {out}")
    return 0


# ---- parsers ---------------------------------------------------------------------------


def add_commands(commands) -> None:
    """Adds ``train``, ``evaluate``, ``render`` and ``plot`` to the ``generals-rl`` parser."""
    train = commands.add_parser("train", help="train a network (needs the train extra)")
    algorithms = train.add_subparsers(dest="algorithm", required=True)
    ppo = algorithms.add_parser(
        "ppo",
        help="PPO in process on a VecEnv",
        description="PPO against a built-in bot or a pool of past checkpoints. Options override "
        "--config; a run directory holds config.json, metrics.csv and checkpoints/.",
    )
    option = ppo.add_argument
    option("--run-dir", default="runs/ppo", help="where the run lives (default: %(default)s)")
    option(
        "--config",
        metavar="FILE",
        help="PPO options as JSON (or .toml); options given here override it",
    )
    option(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest checkpoint",
    )
    option("--size", type=parse_size, metavar="HxW", help="board size (default 10x10)")
    option(
        "--opponent",
        choices=("random", "heuristic", "passive", "pool"),
        help="random, heuristic, passive, or pool (self-play against past checkpoints)",
    )
    option(
        "--total-steps",
        type=int,
        metavar="N",
        help="agent moves over the run (sets the LR schedule)",
    )
    option(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="training wall time the run is given: the LR schedule and the shaping's "
        "anneal span it (or --total-steps, whichever ends first) and training stops there",
    )
    option(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop at the first checkpoint after this long",
    )
    for name, kind in (
        ("num_envs", int),
        ("rollout_steps", int),
        ("seed", int),
        ("max_ticks", int),
        ("lr", float),
        ("gamma", float),
        ("gae_lambda", float),
        ("clip", float),
        ("entropy_coef", float),
        ("value_coef", float),
        ("epochs", int),
        ("minibatches", int),
        ("channels", int),
        ("blocks", int),
        ("move_view", int),
        ("checkpoint_every", int),
        ("torch_threads", int),
        ("env_threads", int),
        ("pool_size", int),
        ("mountain_fraction", float),
        ("cities", int),
        ("min_general_distance", int),
        ("min_side", int),
        ("max_side", int),
        ("tick_reward", float),
        ("draw_reward", float),
        ("enemy_land_reward", float),
        ("curriculum_win_rate", float),
        ("stack_preference", float),
        ("heading_preference", float),
    ):
        option("--" + name.replace("_", "-"), type=kind, dest=name)
    option(
        "--no-memory",
        dest="memory",
        action="store_const",
        const=False,
        help="feed the network the bare observation (no memory of what was seen under fog)",
    )
    option(
        "--half-moves",
        dest="half_moves",
        action=argparse.BooleanOptionalAction,
        help="whether the policy may split armies (default: yes)",
    )
    option(
        "--action-head",
        help="joint: one logit per move; factorised: the source tile, then its move "
        "(default joint)",
    )
    option(
        "--bfloat16-trunk",
        dest="bfloat16_trunk",
        action=argparse.BooleanOptionalAction,
        help="compute the network's convolutional trunk in bfloat16 (faster on CPUs with "
        "AVX512-BF16 or AMX; default no)",
    )
    option(
        "--army-scaling",
        choices=("log", "linear"),
        help="army encoding of the observations (default log)",
    )
    option(
        "--reward",
        type=_reward_item,
        action="append",
        metavar="NAME=VALUE",
        help="a RewardConfig weight, e.g. land_gained=0.01 (repeatable)",
    )
    option(
        "--log-every", type=int, default=5, metavar="UPDATES", help="print every so many updates"
    )
    option("--quiet", action="store_true")
    ppo.set_defaults(run=lambda a: _run("train ppo", _train_ppo, a))

    dqn = algorithms.add_parser(
        "dqn",
        help="the distributed learner: double DQN on experiences streamed from farms",
        description="Consumes experiences from one or more farms (generals-rl selfplay) into a "
        "local prioritized buffer, trains a dueling double DQN with n-step targets and publishes "
        "versioned weights to RUN_DIR/weights (play them with "
        "selfplay --policies checkpoint:RUN_DIR/weights@EPSILON, or "
        "@temperature=T for Boltzmann exploration).",
    )
    option = dqn.add_argument
    option(
        "--from",
        dest="sources",
        required=True,
        metavar="ADDR[,ADDR...]",
        help="farms to consume from: host:port, dns:///NAME:PORT (every record, followed), "
        "or farm:NAME (a Ray farm; the learner then runs as a Ray actor)",
    )
    option("--ray-address", default="auto", metavar="auto|HOST:PORT", help="with --from farm:NAME")
    from .cli_farm import add_ray_options

    add_ray_options(dqn)
    option("--run-dir", default="runs/dqn")
    option("--size", type=parse_size, default=(20, 20), metavar="HxW", help="the farms' board size")
    option("--steps", type=int, default=10_000, help="gradient steps (default: %(default)s)")
    option("--batch-size", type=int, default=256)
    option("--capacity", type=int, default=200_000, help="experiences the local buffer holds")
    option(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="training time (from the first gradient step) the run is given: it stops there, "
        "and the learning rate's decay spans it if it ends before --steps",
    )
    option("--lr", type=float, default=5e-4)
    option(
        "--lr-final-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="the learning rate decays linearly to this fraction of --lr over the run "
        "(default: %(default)s, constant)",
    )
    option("--gamma", type=float, default=0.99)
    option("--n-step", type=int, default=3)
    option(
        "--learning-starts",
        type=int,
        default=2_000,
        metavar="N",
        help="experiences before learning",
    )
    option("--target-every", type=int, default=500, metavar="STEPS")
    option("--publish-every", type=int, default=100, metavar="STEPS")
    option("--channels", type=int, default=16)
    option("--blocks", type=int, default=2)
    option(
        "--whole-army-moves",
        action="store_true",
        help="value only moves that carry the whole stack (no half moves)",
    )
    option(
        "--action-head",
        default="joint",
        help="joint: one advantage per move; factorised: the source tile's plus its move's "
        "(default: %(default)s)",
    )
    option(
        "--move-view",
        type=int,
        default=1,
        metavar="TILES",
        help="the side of the square around a move's source its value reads: 1, the source "
        "tile; 3, also the tile it enters (default: %(default)s)",
    )
    option(
        "--stack-preference",
        type=float,
        default=0.0,
        metavar="W",
        help="initial weight of a tile's army in its moves' values (default: %(default)s)",
    )
    option(
        "--compass",
        action="store_true",
        help="the network adds a compass from each observation: the offset to the enemy in "
        "sight, else to the tiles in fog",
    )
    option(
        "--heading-preference",
        type=float,
        default=0.0,
        metavar="W",
        help="initial weight of the compass in the values of moves heading its way "
        "(implies --compass without --memory; default: %(default)s)",
    )
    option(
        "--clock",
        action="store_true",
        help="the network adds clock planes from each sample's tick: the phase of the "
        "50-tick land bonus and the tick's parity",
    )
    option(
        "--memory",
        action="store_true",
        help="the network sees what its player remembers under fog (the enemy seen, its "
        "general, a compass toward it, the clock): the learner rebuilds it from each game's "
        "experiences in order, the actors keep theirs",
    )
    option("--bfloat16-trunk", action="store_true", help="the convolutions in bfloat16")
    option(
        "--replay-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="samples trained per experience consumed: the learner stops reading while behind, "
        "and farms in block mode wait (default: 0, read as fast as farms play)",
    )
    option(
        "--tick-reward",
        type=float,
        default=0.0,
        metavar="R",
        help="shaping added per tick (negative: hurry; default: %(default)s)",
    )
    option(
        "--enemy-land-reward",
        type=float,
        default=0.0,
        metavar="R",
        help="shaping added per enemy tile taken (default: %(default)s)",
    )
    option(
        "--approach-reward",
        type=float,
        default=0.0,
        metavar="R",
        help="potential-based shaping toward the enemy general as remembered: a state's "
        "potential is -R times the distance to the general over the board's span, from "
        "--approach-from (1 until seen; default: %(default)s)",
    )
    option(
        "--approach-from",
        default="land",
        metavar="land|army",
        help="what --approach-reward measures the distance from: the land's tile nearest "
        "the general, or the tile holding the largest army (default: %(default)s)",
    )
    option(
        "--draw-reward",
        type=float,
        default=None,
        metavar="R",
        help="a game the farms cut at their tick limit (--max-ticks) ends with this, as an "
        "outcome (default: none, the cut state is bootstrapped from)",
    )
    option(
        "--max-ticks",
        type=int,
        default=MAX_TICKS,
        metavar="N",
        help="the farms' tick limit, for --draw-reward (default: %(default)s)",
    )
    option(
        "--player-ids",
        type=int,
        nargs="+",
        metavar="ID",
        help="learn from these seats' experiences only (default: every seat)",
    )
    option(
        "--demonstrations-from",
        dest="demonstrations",
        default=None,
        metavar="ADDR[,ADDR...]",
        help="farms whose experiences are demonstrations (a built-in bot's seat, say): read "
        "into a buffer of their own, a share of every minibatch, ranked first by a "
        "large-margin loss (DQfD)",
    )
    option(
        "--demo-capacity",
        type=int,
        default=50_000,
        metavar="N",
        help="demonstrations read and kept (default: %(default)s)",
    )
    option(
        "--demo-fraction",
        type=float,
        default=0.25,
        metavar="F",
        help="share of each minibatch drawn from the demonstrations (default: %(default)s)",
    )
    option(
        "--margin",
        type=float,
        default=0.8,
        help="how far the demonstrated action's value should lead (default: %(default)s)",
    )
    option(
        "--margin-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="weight of the large-margin loss (default: %(default)s)",
    )
    option(
        "--publish-average",
        type=float,
        default=0.0,
        metavar="TAU",
        help="publish an exponential moving average of the weights, moved TAU of the way "
        "every step (Polyak averaging; default: %(default)s, the online weights)",
    )
    option(
        "--target-temperature",
        type=float,
        default=None,
        metavar="T",
        help="bootstrap from the expected value under softmax(Q / T) over the legal "
        "actions (Expected SARSA) instead of the best action's (double DQN, the default)",
    )
    option(
        "--importance-weights",
        default="buffer",
        metavar="NORM",
        help="what prioritized samples' importance weights are divided by: 'buffer' (the "
        "rarest sample's weight) or 'batch' (the minibatch's largest; default: %(default)s)",
    )
    option("--seed", type=int, default=0)
    option("--torch-threads", type=int, default=1)
    option("--token", default=None, help="bearer token for the farms")
    option(
        "--wait-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up when the first experiences take longer",
    )
    option("--log-every", type=int, default=100, metavar="STEPS")
    option("--quiet", action="store_true")
    dqn.set_defaults(run=lambda a: _run("train dqn", _train_dqn, a))

    evaluate = commands.add_parser(
        "evaluate",
        help="play a checkpoint against an opponent and count the results",
        description="Plays exactly --games games (the checkpoint in each seat half the time) "
        "and prints wins, draws (tick limit) and losses with the 95% Wilson interval of the "
        "win rate.",
    )
    option = evaluate.add_argument
    option("checkpoint", help="a checkpoint file (e.g. RUN_DIR/checkpoints/latest.pt)")
    option("--opponent", default="random", metavar="random|heuristic|passive|checkpoint:PATH")
    option("--games", type=int, default=100)
    option(
        "--size",
        type=parse_size,
        default=(10, 10),
        metavar="HxW",
        help="board size (default: 10x10)",
    )
    option(
        "--max-ticks",
        type=int,
        default=500,
        help="ticks before a game is a draw (default: %(default)s)",
    )
    option("--num-envs", type=int, default=64, help="games played at once")
    option("--seed", type=int, default=12345)
    option(
        "--greedy",
        action="store_true",
        default=None,
        help="the most probable action instead of sampling (a DQN checkpoint's, unless "
        "--temperature is given)",
    )
    option(
        "--temperature",
        type=float,
        default=None,
        help="sample from the policy sharpened by this (below 1: closer to greedy; default 1); "
        "a DQN checkpoint samples softmax(Q / T) (Boltzmann) instead of its argmax",
    )
    option(
        "--gif", metavar="OUT.gif", help="draw one game (the agent's fog) into this animated GIF"
    )
    option("--frames", metavar="DIR", help="and its frames as PNGs in DIR")
    option("--no-fog", action="store_true", help="draw the whole board, not the agent's view")
    option("--json", action="store_true")
    evaluate.set_defaults(run=lambda a: _run("evaluate", _evaluate, a))

    render = commands.add_parser("render", help="draw a replay as an animated GIF")
    option = render.add_argument
    option("replay", help="a .gioreplay or .gior file")
    option("--out", default="game.gif", help="the GIF to write (default: %(default)s)")
    option("--frames", metavar="DIR", help="also write one PNG per frame to DIR")
    option("--every", type=int, default=1, metavar="TICKS", help="one frame every so many ticks")
    option("--player", type=int, help="draw what this player sees (fog); default everything")
    option("--tile", type=int, default=24, help="pixels per tile (default: %(default)s)")
    option(
        "--frame-ms", type=int, default=100, help="milliseconds per frame (default: %(default)s)"
    )
    render.set_defaults(run=lambda a: _run("render", _render, a))

    plot = commands.add_parser("plot", help="write the learning curve PNG of a training run")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--out", help="the PNG (default: RUN_DIR/learning_curve.png)")
    plot.set_defaults(run=lambda a: _run("plot", _plot, a))
