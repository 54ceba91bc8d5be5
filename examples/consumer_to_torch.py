"""A minimal custom training loop on the farm's stream: ExperienceConsumer batches
into torch tensors, one gradient step of a small Q-network per batch.

Start a farm first (``generals-rl selfplay --games 0 --output none``), then:

    python examples/consumer_to_torch.py --address 127.0.0.1:50051 --steps 200

With ``--local`` the example serves its own short self-play instead (no farm needed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from generals_rl import ExperienceConsumer
from generals_rl.actions import to_gym_actions
from generals_rl.train import NetConfig, PolicyValueNet, full_mask


def to_tensors(batch) -> dict[str, torch.Tensor]:
    """An ExperienceBatch as torch tensors (actions in the Gymnasium encoding: the pass last)."""
    h, w = batch.state.shape[-2:]
    return {
        "state": torch.from_numpy(np.ascontiguousarray(batch.state)),
        "next_state": torch.from_numpy(np.ascontiguousarray(batch.next_state)),
        "mask": full_mask(torch.from_numpy(np.ascontiguousarray(batch.action_mask, dtype=bool))),
        "action": torch.from_numpy(to_gym_actions(batch.action, h, w)),
        "reward": torch.from_numpy(np.asarray(batch.reward, dtype=np.float32)),
        "done": torch.from_numpy(np.asarray(batch.terminated | batch.truncated, dtype=np.float32)),
    }


def train(
    address: str, steps: int, batch_size: int = 256, gamma: float = 0.99, log=print
) -> list[float]:
    """One-step Q-learning on the policy logits (a toy loss: the point is the data path)."""
    net = PolicyValueNet(NetConfig(channels=16, blocks=1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    with ExperienceConsumer(address) as consumer:
        for batch in consumer.stream_experiences(batch_size=batch_size, follow=True):
            if len(batch) == 0:
                continue
            t = to_tensors(batch)
            q, _ = net(t["state"])  # the taken action's value, legal or not
            q_taken = q.gather(1, t["action"][:, None]).squeeze(1)
            with torch.no_grad():
                next_q, _ = net(t["next_state"])  # the stream carries no next-state mask
                target = t["reward"] + gamma * (1 - t["done"]) * next_q.max(dim=1).values.clamp(
                    -10, 10
                )
            loss = torch.nn.functional.smooth_l1_loss(q_taken, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) % 50 == 0:
                log(f"step {len(losses)}: loss {np.mean(losses[-50:]):.4f}, lag {consumer.lag}")
            if len(losses) >= steps:
                break
    return losses


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--local", action="store_true", help="serve a short self-play of our own")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.local:
        train(args.address, args.steps, args.batch_size)
        return 0
    from generals_rl import ExperienceBuffer, ExperienceServer, VecEnv
    from generals_rl.bots import RandomBot

    buffer = ExperienceBuffer(height=8, width=8, capacity=200_000, policy="overwrite")
    env = VecEnv(16, height=8, width=8, max_ticks=200, buffer=buffer, num_threads=1)
    bot = RandomBot(seed=0)
    env.reset()
    for _ in range(args.steps * args.batch_size // 32 + 1):
        env.step(bot.act(env))
    server = ExperienceServer(buffer, "127.0.0.1:0").start()
    try:
        losses = train(server.address, args.steps, args.batch_size)
    finally:
        server.stop()
    print(f"{len(losses)} steps, final loss {losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
