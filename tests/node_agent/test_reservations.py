"""Limits read from HostConfig and the sum that heartbeats report as reserved."""

import pytest

from node_agent.reservations import (
    Limits,
    ReservationTracker,
    limits_from_host_config,
    total,
)
from schemas.messages import ContainerInfo

MIB = 1024**2


@pytest.mark.parametrize(
    ("host_config", "cpus", "mem_bytes"),
    [
        ({}, 0.0, 0),
        ({"NanoCpus": 0, "CpuQuota": 0, "CpuPeriod": 0, "Memory": 0}, 0.0, 0),
        ({"NanoCpus": 500_000_000, "Memory": 64 * MIB}, 0.5, 64 * MIB),
        ({"CpuQuota": 50_000, "CpuPeriod": 100_000}, 0.5, 0),
        ({"CpuQuota": 150_000, "CpuPeriod": 0}, 1.5, 0),
        ({"CpuQuota": 30_000, "CpuPeriod": 20_000}, 1.5, 0),
        ({"CpuQuota": -1, "CpuPeriod": 100_000}, 0.0, 0),
        ({"NanoCpus": 2_000_000_000, "CpuQuota": 50_000}, 2.0, 0),
        ({"NanoCpus": None, "Memory": None}, 0.0, 0),
        ({"CpuShares": 512, "CpusetCpus": "0,1", "MemoryReservation": MIB}, 0.0, 0),
    ],
)
def test_limits_from_host_config(host_config, cpus, mem_bytes):
    limits = limits_from_host_config(host_config)

    assert limits.cpus == cpus
    assert limits.mem_bytes == mem_bytes


def test_total_stays_exact():
    tenths = [Limits(nano_cpus=100_000_000, mem_bytes=1)] * 3

    assert total(tenths).cpus == 0.3
    assert total(tenths).mem_bytes == 3
    assert total([]) == Limits()


def container(container_id: str, state: str) -> ContainerInfo:
    return ContainerInfo(
        id=container_id,
        name=container_id,
        job=container_id,
        node="node-1",
        image="busybox",
        state=state,
    )


class FakeEngine:
    """Limits per container id, and the ids read, in order.

    `during_read` runs inside each read, before it returns.
    """

    def __init__(self, limits: dict[str, Limits]) -> None:
        self.limits = limits
        self.reads: list[str] = []
        self.during_read = lambda container_id: None

    def read_limits(self, container_id: str) -> Limits | None:
        self.reads.append(container_id)
        limits = self.limits.get(container_id)
        self.during_read(container_id)
        return limits


HALF_CPU_64M = Limits(nano_cpus=500_000_000, mem_bytes=64 * MIB)


def test_reserving_states():
    states = ["running", "paused", "restarting", "created", "exited", "dead"]
    engine = FakeEngine({state: HALF_CPU_64M for state in states})
    tracker = ReservationTracker(engine.read_limits)

    reserved = tracker.reserved([container(state, state) for state in states])

    assert reserved.cpus == 1.5
    assert reserved.mem_bytes == 3 * 64 * MIB
    assert engine.reads == ["running", "paused", "restarting"]


def test_tracker_caches_limits():
    engine = FakeEngine({"a": HALF_CPU_64M})
    tracker = ReservationTracker(engine.read_limits)
    containers = [container("a", "running")]

    first = tracker.reserved(containers)
    second = tracker.reserved(containers)

    assert first == second == HALF_CPU_64M
    assert engine.reads == ["a"]


def test_forget_reads_limits_again():
    engine = FakeEngine({"a": HALF_CPU_64M})
    tracker = ReservationTracker(engine.read_limits)
    containers = [container("a", "running")]
    tracker.reserved(containers)

    engine.limits["a"] = Limits(nano_cpus=500_000_000, mem_bytes=32 * MIB)
    tracker.forget("a")
    updated = tracker.reserved(containers)

    assert updated.mem_bytes == 32 * MIB
    assert engine.reads == ["a", "a"]


def test_forget_during_sum_applies_next():
    engine = FakeEngine({"a": HALF_CPU_64M})
    tracker = ReservationTracker(engine.read_limits)
    containers = [container("a", "running")]

    # `docker update` lands after the first read took the old limits, and
    # its event arrives before that read returns.
    engine.during_read = tracker.forget
    before = tracker.reserved(containers)
    engine.during_read = lambda container_id: None
    engine.limits["a"] = Limits(mem_bytes=32 * MIB)
    after = tracker.reserved(containers)

    assert before == HALF_CPU_64M
    assert after == Limits(mem_bytes=32 * MIB)
    assert engine.reads == ["a", "a"]


def test_removed_container_reserves_nothing():
    engine = FakeEngine({})
    tracker = ReservationTracker(engine.read_limits)
    containers = [container("gone", "running")]

    assert tracker.reserved(containers) == Limits()
    assert tracker.reserved(containers) == Limits()
    assert engine.reads == ["gone", "gone"]


def test_unlisted_container_leaves_cache():
    engine = FakeEngine({"a": HALF_CPU_64M})
    tracker = ReservationTracker(engine.read_limits)
    tracker.reserved([container("a", "running")])

    tracker.reserved([])
    again = tracker.reserved([container("a", "running")])

    assert again == HALF_CPU_64M
    assert engine.reads == ["a", "a"]


def test_exited_container_stays_cached():
    engine = FakeEngine({"a": HALF_CPU_64M})
    tracker = ReservationTracker(engine.read_limits)
    tracker.reserved([container("a", "running")])

    stopped = tracker.reserved([container("a", "exited")])
    restarted = tracker.reserved([container("a", "running")])

    assert stopped == Limits()
    assert restarted == HALF_CPU_64M
    assert engine.reads == ["a"]


def test_driver_limits_of_removed_container(driver):
    assert driver.container_limits("0" * 64) is None
