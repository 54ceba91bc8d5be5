"""The DQN learner (``generals_rl.train.dqn``) as a Ray actor that follows a farm:
its consumer streams from every actor the farm's directory lists, picks up
actors as the farm grows, drops them as it shrinks, and follows restarted ones."""

from __future__ import annotations

from ._ray import FARM_NAME, NAMESPACE, ray
from .farm import farm_addresses


@ray.remote(max_concurrency=2)  # progress answers while train runs
class LearnerActor:
    """``DQNLearner(DQNConfig(**config), farm_addresses(farm, namespace), run_dir)``."""

    def __init__(
        self,
        config: dict,
        run_dir: str,
        farm: str = FARM_NAME,
        namespace: str = NAMESPACE,
        consumer_options: dict | None = None,
    ) -> None:
        from ..train.dqn import DQNConfig, DQNLearner

        self.learner = DQNLearner(
            DQNConfig(**config), farm_addresses(farm, namespace), run_dir, consumer_options
        )

    def train(self, log_every: int = 100, wait_timeout: float = 600.0) -> dict:
        """Runs the configured gradient steps; the last metrics row."""
        try:
            return self.learner.train(log_every=log_every, wait_timeout=wait_timeout)
        finally:
            self.learner.stop()

    def progress(self) -> dict:
        learner = self.learner
        return {
            "step": learner.step,
            "consumed": learner.consumed,
            "published_version": learner.version,
            "consumer_lag": learner.consumer_lag,
            "weights": str(learner.publish_dir / "latest.pt"),
        }
