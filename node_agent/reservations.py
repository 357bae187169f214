"""CPU and memory that the node's containers reserve through their Docker limits.

The list endpoint of the Engine API (`GET /containers/json`) returns no
limits in `HostConfig` (Docker 20.10 returns only `NetworkMode`), so the
limits come from one inspect per container. A container's limits change
only through `docker update`, so the tracker caches them by container id.
It inspects a container again only after an `update` event, and drops the
limits of containers that are no longer listed.
"""

import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from schemas.messages import ContainerInfo

NANO_CPUS_PER_CPU = 1_000_000_000
# The CFS period the kernel applies when a container sets a quota but no
# period: 100 ms.
DEFAULT_CPU_PERIOD_US = 100_000
# A paused container keeps its cgroup and limits, and a restarting one gets
# them back after Docker's restart delay, so both keep their reservation.
# Created, exited and dead containers reserve nothing.
RESERVING_STATES = frozenset(("running", "paused", "restarting"))
# The Docker event action sent when `docker update` changes a container.
LIMITS_CHANGED_ACTION = "update"


class Limits(NamedTuple):
    """CPU and memory limits, or their sum over several containers.

    CPU is counted in nano-CPUs, as Docker's `NanoCpus` is, so that sums
    stay exact integers until `cpus` converts them.
    """

    nano_cpus: int = 0
    mem_bytes: int = 0

    @property
    def cpus(self) -> float:
        return self.nano_cpus / NANO_CPUS_PER_CPU


def limits_from_host_config(host_config: dict[str, Any]) -> Limits:
    """Read the CPU and memory limits of an inspect payload's `HostConfig`.

    `NanoCpus` is the CPU limit of `docker run --cpus`. `CpuQuota` with
    `CpuPeriod` is the older form of `--cpu-quota` and `--cpu-period`.
    Docker 20.10 rejects a create or update that sets both forms, so
    `NanoCpus` wins if both appear. CPU shares and cpusets cap no CPU time,
    so they count as no limit, and so does zero or a negative value.
    """
    return Limits(nano_cpus=_nano_cpus(host_config), mem_bytes=_mem_bytes(host_config))


def _nano_cpus(host_config: dict[str, Any]) -> int:
    nano_cpus = host_config.get("NanoCpus") or 0
    if nano_cpus > 0:
        return nano_cpus
    quota_us = host_config.get("CpuQuota") or 0
    if quota_us <= 0:
        return 0
    period_us = host_config.get("CpuPeriod") or 0
    if period_us <= 0:
        period_us = DEFAULT_CPU_PERIOD_US

    return round(quota_us * NANO_CPUS_PER_CPU / period_us)


def _mem_bytes(host_config: dict[str, Any]) -> int:
    mem_bytes = host_config.get("Memory") or 0

    return max(mem_bytes, 0)


def total(limits: Iterable[Limits]) -> Limits:
    """Add up limits field by field."""
    nano_cpus = 0
    mem_bytes = 0
    for limit in limits:
        nano_cpus += limit.nano_cpus
        mem_bytes += limit.mem_bytes

    return Limits(nano_cpus=nano_cpus, mem_bytes=mem_bytes)


# Reads one container's limits from the Engine, or returns None when the
# container no longer exists.
ReadLimits = Callable[[str], Limits | None]


class ReservationTracker:
    """Sum the limits of a node's reserving containers, caching them by id.

    `reserved()` runs in a worker thread and `forget()` on the event loop.
    A `forget()` that arrives while `reserved()` runs takes effect in the
    next `reserved()`, so an inspect that started before the update cannot
    leave the old limits in the cache.
    """

    def __init__(self, read_limits: ReadLimits) -> None:
        self._read_limits = read_limits
        self._cached: dict[str, Limits] = {}
        self._stale: set[str] = set()
        self._stale_lock = threading.Lock()

    def reserved(self, containers: list[ContainerInfo]) -> Limits:
        """Return what the running, paused and restarting containers reserve.

        Inspects each such container whose limits are not cached yet. Raises
        AgentError when an inspect fails, except for a container removed
        since the list, which reserves nothing.
        """
        self._drop_stale()
        listed = {container.id for container in containers}
        for container_id in self._cached.keys() - listed:
            del self._cached[container_id]
        reserving = [
            container.id
            for container in containers
            if container.state in RESERVING_STATES
        ]

        return total(self._limits_of(container_id) for container_id in reserving)

    def forget(self, container_id: str) -> None:
        """Read the container's limits from the Engine again at the next sum."""
        with self._stale_lock:
            self._stale.add(container_id)

    def _drop_stale(self) -> None:
        with self._stale_lock:
            stale, self._stale = self._stale, set()
        for container_id in stale:
            self._cached.pop(container_id, None)

    def _limits_of(self, container_id: str) -> Limits:
        cached = self._cached.get(container_id)
        if cached is not None:
            return cached
        limits = self._read_limits(container_id)
        if limits is None:
            return Limits()
        self._cached[container_id] = limits

        return limits
