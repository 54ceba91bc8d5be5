"""The learning curve of a run directory as a PNG (matplotlib)."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no metrics yet")
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                parsed[key] = value
        out.append(parsed)
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Win rate (rolling, vs the training opponent), episode return, entropy and
    throughput against env steps and wall time; returns the PNG's path."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'generals-rl[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    out = Path(out) if out else run_dir / "learning_curve.png"
    steps = [r["env_steps"] for r in rows]
    minutes = [r["wall_time"] / 60 for r in rows]

    def column(name):
        return [r.get(name, math.nan) if isinstance(r.get(name), float) else math.nan for r in rows]

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0][0]
    ax.plot(steps, column("win_rate"), label="win")
    ax.plot(steps, column("loss_rate"), label="loss")
    ax.plot(steps, column("draw_rate"), label="draw (tick limit)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("env steps (agent moves)")
    ax.set_ylabel("rate over the last episodes")
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    top = ax.secondary_xaxis("top", functions=_steps_to_minutes(steps, minutes))
    top.set_xlabel("training wall time (min)")
    ax = axes[0][1]
    ax.plot(steps, column("episode_return"))
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax = axes[1][0]
    ax.plot(steps, column("entropy"), label="entropy")
    ax.plot(steps, column("value_loss"), label="value loss")
    ax.set_xlabel("env steps")
    ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[1][1]
    ax.plot(steps, column("steps_per_second"))
    ax.set_xlabel("env steps")
    ax.set_ylabel("env steps / s")
    ax.grid(alpha=0.3)
    for ax in (a for row in axes for a in row):
        ax.set_xlim(0, max(steps) * 1.02 or 1.0)
    fig.suptitle(title or f"PPO: {run_dir.name} (opponent {rows[-1].get('opponent', '?')})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _steps_to_minutes(steps, minutes):
    import numpy as np

    if len(steps) < 2:
        steps, minutes = [0.0, max(steps[0], 1.0)], [0.0, max(minutes[0], 1e-9)]
    xs, ys = np.asarray(steps, dtype=float), np.asarray(minutes, dtype=float)
    return (lambda s: np.interp(s, xs, ys), lambda m: np.interp(m, ys, xs))
