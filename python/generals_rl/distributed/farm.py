"""A farm of self-play actors across a Ray cluster: placed with resources per
actor and spread over the nodes, published in a named directory actor (where
learners and ``generals-rl farm status`` find them), watched, restarted when
they die, grown and shrunk.

    import ray
    from generals_rl.config import load_config
    from generals_rl.distributed import Farm

    ray.init(address="auto", namespace="generals-rl")
    with Farm(load_config("farm.yaml"), actors=16) as farm:
        consumer = ExperienceConsumer(farm_addresses())   # follows the farm
        ...
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

from ..service.discovery import AddressSource
from ._ray import FARM_NAME, NAMESPACE, GetTimeoutError, RayActorError, ray
from .actor import READY_TIMEOUT, SelfPlayActor, actor_key

log = logging.getLogger("generals_rl.distributed")


@dataclass(frozen=True)
class ActorResources:
    """What Ray reserves for each actor: CPUs (self-play threads), memory in
    bytes (the buffer: see docs/scaling.md), custom resources; ``spread`` places
    the actors across the nodes instead of packing them."""

    num_cpus: float = 1.0
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    spread: bool = True

    def __post_init__(self) -> None:
        if not self.num_cpus >= 0:
            raise ValueError(f"num_cpus: must be >= 0, got {self.num_cpus}")
        if self.memory is not None and self.memory <= 0:
            raise ValueError(f"memory: must be > 0 bytes, got {self.memory}")

    def options(self) -> dict:
        options: dict = {"num_cpus": self.num_cpus, "max_restarts": 0}
        if self.memory is not None:
            options["memory"] = self.memory
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.spread:
            options["scheduling_strategy"] = "SPREAD"
        return options


@dataclass(frozen=True)
class Restart:
    """An actor died and was started again. ``durable_next``: the restarted
    actor continues numbering after what storage holds (everything below is
    durable). ``head_last_seen``: the dead actor's head when last watched.
    ``not_durable_at_least``: experiences the dead actor held only in memory,
    lost from the farm (consumers may have received some live, see
    ``ExperienceConsumer.switches``); at least, since its head may have moved
    after it was last watched."""

    key: str
    incarnation: int
    dead_pid: int
    died_at: float
    durable_next: int
    head_last_seen: int

    @property
    def not_durable_at_least(self) -> int:
        return max(0, self.head_last_seen - self.durable_next)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "not_durable_at_least": self.not_durable_at_least}


@ray.remote(num_cpus=0)
class FarmDirectory:
    """Where a farm's actors are, for learners and ``generals-rl farm status``."""

    def __init__(self) -> None:
        self._state: dict = {"actors": {}, "restarts": []}

    def publish(self, state: dict) -> None:
        self._state = state

    def state(self) -> dict:
        return self._state

    def addresses(self) -> dict[str, str]:
        return {key: actor["address"] for key, actor in self._state["actors"].items()}


def farm_addresses(name: str = FARM_NAME, namespace: str = NAMESPACE) -> AddressSource:
    """An address source for ``ExperienceConsumer``: the actors of the farm
    ``name`` as its directory lists them now (``actor key -> host:port``)."""

    def addresses() -> dict[str, str]:
        directory = ray.get_actor(name, namespace=namespace)
        return ray.get(directory.addresses.remote(), timeout=30)

    return addresses


def farm_state(name: str = FARM_NAME, namespace: str = NAMESPACE) -> dict:
    """The directory's view of the farm ``name``: its actors' last status and the restarts."""
    try:
        directory = ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise LookupError(f"no farm named {name!r} in the Ray namespace {namespace!r}") from None
    return ray.get(directory.state.remote(), timeout=30)


@dataclass
class _Slot:
    index: int
    incarnation: int
    handle: object
    status: dict


class Farm:
    """``actors`` self-play actors running ``config`` (a ``FarmConfig``) on the
    Ray cluster this process is connected to (``ray.init``). ``start`` places
    them and returns once each serves; a thread then watches them every
    ``watch_interval`` seconds and restarts any that died (see ``restarts``)."""

    def __init__(
        self,
        config,
        actors: int,
        *,
        resources: ActorResources | None = None,
        name: str = FARM_NAME,
        namespace: str = NAMESPACE,
        watch_interval: float = 0.5,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        if actors < 0:
            raise ValueError(f"actors: must be >= 0, got {actors}")
        if not watch_interval > 0:
            raise ValueError(f"watch_interval: must be > 0 seconds, got {watch_interval}")
        self.config = config
        self.name, self.namespace = name, namespace
        self.resources = resources or ActorResources()
        self.watch_interval = watch_interval
        self.ready_timeout = ready_timeout
        self.restarts: list[Restart] = []
        self.watch_error: str | None = None  # why the last watch round failed, if it did
        self._target = actors
        self._config_data = config.model_dump(mode="json")
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()  # the slots, between the watcher and scale()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._directory = None

    # ---- life ---------------------------------------------------------------------------

    def start(self) -> Farm:
        if not ray.is_initialized():
            raise RuntimeError("ray is not initialized: call ray.init(address=...) first")
        try:
            ray.get_actor(self.name, namespace=self.namespace)
        except ValueError:  # no such actor: the name is free
            pass
        else:
            raise RuntimeError(
                f"a farm named {self.name!r} is already running in the Ray namespace "
                f"{self.namespace!r}; give this one another name"
            )
        self._directory = FarmDirectory.options(name=self.name, namespace=self.namespace).remote()
        self.scale(self._target)
        self._watcher = threading.Thread(target=self._watch, name="farm-watcher", daemon=True)
        self._watcher.start()
        return self

    def stop(self, timeout: float = 60.0) -> dict[str, dict | None]:
        """Stops the watcher, then every actor (each drains its consumers and
        storage); what each stored."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        try:
            stored = _gather([s.handle.stop.remote(timeout) for s in slots], timeout + 30)
        finally:
            for slot in slots:
                ray.kill(slot.handle)
            if self._directory is not None:
                ray.kill(self._directory)
                self._directory = None
        return {actor_key(s.index): what for s, what in zip(slots, stored, strict=True)}

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def scale(self, actors: int) -> None:
        """Grows the farm to ``actors`` (new actors take the next indices) or
        shrinks it (the highest indices stop gracefully, draining their
        consumers and storage first)."""
        if actors < 0:
            raise ValueError(f"actors: must be >= 0, got {actors}")
        with self._lock:  # the watcher waits: it neither restarts a leaving actor nor races us
            self._target = actors
            current = sorted(s.index for s in self._slots.values())
            leaving = [self._slots[actor_key(i)] for i in current[actors:]]
            if leaving:  # stopped while still listed: consumers read what they hold first
                try:
                    _gather([s.handle.stop.remote() for s in leaving], self.ready_timeout)
                finally:
                    for slot in leaving:
                        ray.kill(slot.handle)
                        del self._slots[actor_key(slot.index)]
            joining = [i for i in range(actors) if actor_key(i) not in self._slots]
            for slot in self._spawn([(i, 0) for i in joining]):
                self._slots[actor_key(slot.index)] = slot
            self._publish()

    def _spawn(self, wanted: list[tuple[int, int]]) -> list[_Slot]:
        """Starts actors ``(index, incarnation)`` at once and waits until each serves."""
        handles = [
            SelfPlayActor.options(**self.resources.options()).remote(
                self._config_data, index, incarnation
            )
            for index, incarnation in wanted
        ]
        try:
            statuses = _gather([h.status.remote() for h in handles], self.ready_timeout)
        except BaseException:
            for handle in handles:  # none half-started is left behind
                ray.kill(handle)
            raise
        return [
            _Slot(index, incarnation, handle, status)
            for (index, incarnation), handle, status in zip(wanted, handles, statuses, strict=True)
        ]

    # ---- watching -------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(self.watch_interval):
            with self._lock:
                try:
                    self._check()
                    self.watch_error = None
                except Exception as exc:  # e.g. a replacement that did not start: next round
                    self.watch_error = f"{type(exc).__name__}: {exc}"
                    log.warning("farm %s: %s", self.name, self.watch_error)

    def _check(self) -> None:
        asked = {key: slot.handle.status.remote() for key, slot in self._slots.items()}
        dead = []
        for key, ref in asked.items():
            try:
                self._slots[key].status = ray.get(ref, timeout=max(5.0, self.watch_interval))
            except GetTimeoutError:
                continue  # busy, not dead: asked again next round
            except RayActorError:
                dead.append(self._slots[key])
        if dead:
            self._restart(dead)
        self._publish()

    def _restart(self, dead: list[_Slot]) -> None:
        died_at = time.time()
        for slot in dead:
            ray.kill(slot.handle)  # frees what Ray still holds for it
        for old, new in zip(
            dead, self._spawn([(s.index, s.incarnation + 1) for s in dead]), strict=True
        ):
            self._slots[actor_key(new.index)] = new
            self.restarts.append(
                Restart(
                    key=actor_key(new.index),
                    incarnation=new.incarnation,
                    dead_pid=old.status["pid"],
                    died_at=died_at,
                    durable_next=new.status["first_sequence"],
                    head_last_seen=old.status["head"],
                )
            )

    # ---- what it looks like -----------------------------------------------------------------

    def addresses(self) -> dict[str, str]:
        """``actor key -> host:port`` of every actor now."""
        with self._lock:
            return {key: slot.status["address"] for key, slot in self._slots.items()}

    def status(self) -> dict:
        with self._lock:
            return self._state()

    def _state(self) -> dict:
        return {
            "name": self.name,
            "target_actors": self._target,
            "actors": {key: dict(slot.status) for key, slot in sorted(self._slots.items())},
            "restarts": [r.to_dict() for r in self.restarts],
            "not_durable_at_least": sum(r.not_durable_at_least for r in self.restarts),
            "watch_error": self.watch_error,
        }

    def _publish(self) -> None:
        if self._directory is not None:
            ray.get(self._directory.publish.remote(self._state()), timeout=30)


def _gather(refs: list, timeout: float) -> list:
    """The results of ``refs``, or the first actor's error (with what it said)."""
    try:
        return ray.get(refs, timeout=timeout)
    except GetTimeoutError:
        raise TimeoutError(f"actors did not answer within {timeout:.0f} s") from None
