import msgspec
import pytest

from controller.errors import (
    ConflictError,
    InvalidRequestError,
    NodeOfflineError,
    NoMatchingNodeError,
    NotFoundError,
)
from controller.placement import PlacementConfig
from controller.registry import NodeRegistry
from controller.scheduler import Scheduler
from controller.store import JobRecord
from controller.submit import check_names_free
from schemas.job import JobSpec
from tests.controller.helpers import FakeClock, heartbeat


def spec(**fields) -> JobSpec:
    return msgspec.convert({"name": "web", "image": "busybox", **fields}, JobSpec)


def scheduler(*heartbeats, clock=None, strategy="load") -> Scheduler:
    registry = NodeRegistry(missed=1, clock=clock or FakeClock())
    for beat in heartbeats:
        registry.observe(beat)
    return Scheduler(registry, PlacementConfig(strategy=strategy))


def test_pinned_node_is_chosen():
    chosen = scheduler(heartbeat("a"), heartbeat("b", running=5)).place(
        spec(placement={"node": "b"}), []
    )

    assert chosen == ["b"]


def test_pinned_unknown_node_not_found():
    with pytest.raises(NotFoundError) as caught:
        scheduler(heartbeat("a")).place(spec(placement={"node": "x"}), [])

    assert "node 'x' is not registered" in str(caught.value)
    assert "controller nodes" in str(caught.value)


def test_pinned_lost_node_rejected():
    clock = FakeClock()
    placing = scheduler(heartbeat("a"), clock=clock)
    clock.advance(10.0)
    placing._registry.sweep()

    with pytest.raises(NodeOfflineError, match="node 'a' is lost"):
        placing.place(spec(placement={"node": "a"}), [])


def test_empty_fleet_says_to_start_an_agent():
    with pytest.raises(NoMatchingNodeError) as caught:
        scheduler().place(spec(), [])

    message = str(caught.value)
    assert "no node can take job web" in message
    assert "no node is registered; start node-agent" in message


def test_no_fit_counts_each_filter_with_an_example():
    placing = scheduler(
        heartbeat("a", device_type="X86"),
        heartbeat("b", device_type="X86"),
        heartbeat("c", device_type="RK3588", labels={"zone": "west"}),
    )
    job = spec(placement={"device_type": "RK3588", "labels": {"zone": "east"}})

    with pytest.raises(NoMatchingNodeError) as caught:
        placing.place(job, [])

    message = str(caught.value)
    assert (
        "device_type rules out 2 nodes (a: device type 'X86', not 'RK3588')" in message
    )
    assert "labels rules out 1 node (c: label zone='west', not 'east')" in message
    assert "controller submit --dry-run FILE" in message


def test_no_fit_counts_fitting_copies():
    placing = scheduler(heartbeat("a", cpu_count=2))

    with pytest.raises(NoMatchingNodeError) as caught:
        placing.place(spec(count=3, cpus=1), [])

    assert "(2 of 3 copies fit)" in str(caught.value)
    assert "cpu_fit rules out 1 node" in str(caught.value)


def test_copies_go_round_robin():
    placing = scheduler(heartbeat("a"), heartbeat("b"), strategy="round-robin")

    assert placing.place(spec(count=3), []) == ["a", "b", "a"]


def test_own_records_do_not_count_against_a_job():
    placing = scheduler(heartbeat("a", cpu_count=2))
    own = JobRecord(spec=spec(cpus=2), desired="running", node="a")
    other = JobRecord(spec=spec(name="db", cpus=2), desired="running", node="a")

    assert placing.place(spec(cpus=2), [own]) == ["a"]
    assert None in placing.plan(spec(cpus=2), [other]).chosen


def test_plan_uses_the_group_for_spread():
    placing = scheduler(
        heartbeat("a", labels={"zone": "x"}),
        heartbeat("b", labels={"zone": "y"}),
        strategy="load",
    )
    sibling = JobRecord(
        spec=spec(name="web-0"), desired="running", node="a", group="web"
    )
    job = spec(name="web-1", placement={"strategy": "spread", "spread_over": "zone"})

    assert placing.place(job, [sibling], group="web") == ["b"]


def test_spread_without_a_label_is_an_invalid_request():
    placing = scheduler(heartbeat("a"))

    with pytest.raises(InvalidRequestError, match="spread_over"):
        placing.plan(spec(placement={"strategy": "spread"}), [])


def test_existing_copies_are_named_in_the_conflict():
    records = [
        JobRecord(spec=spec(name=name), desired="running", node="a")
        for name in ("web-1", "web-2", "db")
    ]

    with pytest.raises(ConflictError) as caught:
        check_names_free(spec(count=3), records)

    assert "jobs 'web-1', 'web-2' already exist" in str(caught.value)
