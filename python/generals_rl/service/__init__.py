"""The gRPC experience service: a server over an ``ExperienceBuffer`` and the
consumer that streams from it (see docs/service.md)."""

from .consumer import ConsumerError, ExperienceConsumer, StreamPosition
from .packing import PackedBatchError, pack_message, unpack
from .server import DEFAULT_ADDRESS, ExperienceServer

__all__ = [
    "DEFAULT_ADDRESS",
    "ConsumerError",
    "ExperienceConsumer",
    "ExperienceServer",
    "PackedBatchError",
    "StreamPosition",
    "pack_message",
    "unpack",
]
