"""Self-play farms across a Ray cluster (the ``ray`` extra: ``pip install
'generals-rl[ray]'``): ``SelfPlayActor`` runs one farm (``generals_rl.farm``) in
a Ray actor, ``Farm`` places, watches and restarts many, ``farm_addresses``
lets an ``ExperienceConsumer`` (or a learner) follow them, and ``LearnerActor``
runs the DQN learner (``generals_rl.train.dqn``) on the cluster. See
docs/scaling.md."""

from ._ray import FARM_NAME, NAMESPACE
from .actor import SelfPlayActor, actor_config, actor_key
from .farm import ActorResources, Farm, FarmDirectory, Restart, farm_addresses, farm_state
from .learner import LearnerActor

__all__ = [
    "FARM_NAME",
    "NAMESPACE",
    "ActorResources",
    "Farm",
    "FarmDirectory",
    "LearnerActor",
    "Restart",
    "SelfPlayActor",
    "actor_config",
    "actor_key",
    "farm_addresses",
    "farm_state",
]
