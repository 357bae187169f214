"""When a job's link thresholds have been missed long enough to move it."""

import msgspec

from controller.registry import NodeRegistry
from controller.rescheduler import LinkWatch
from controller.store import JobRecord
from schemas.job import JobSpec
from tests.controller.helpers import FakeClock, heartbeat

RULE = {"bandwidth_below": "1Mbit", "rtt_above": "10s", "for": "5s"}


def record(node="a", desired="running", migrate_when=RULE) -> JobRecord:
    spec = msgspec.convert(
        {"name": "web", "image": "img", "migrate_when": migrate_when}, JobSpec
    )
    return JobRecord(spec=spec, desired=desired, node=node)


def watch(rate_bps=None):
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("a", link_rate_bps=rate_bps, interval_s=100.0))
    return LinkWatch(registry), registry, clock


def test_slow_link_is_due_after_its_time():
    links, _, clock = watch(rate_bps=1e5)
    job = record()

    early = links.due(job)
    clock.advance(5.0)
    late = links.due(job)

    assert early is None
    node, trouble = late
    assert node.name == "a"
    assert trouble == "link rate 0.1 Mbit/s, below 1 Mbit/s for 5.0 s"


def test_recovery_restarts_the_count():
    links, registry, clock = watch(rate_bps=1e5)
    job = record()
    links.due(job)
    clock.advance(4.0)
    registry.record_rate("a", 5e6)
    links.due(job)
    registry.record_rate("a", 1e5)
    links.due(job)
    clock.advance(4.0)

    assert links.due(job) is None


def test_unanswered_pings_count_as_round_trip():
    links, registry, clock = watch()
    job = record()
    registry.ping_unanswered("a", clock.now)
    clock.advance(11.0)
    links.due(job)
    clock.advance(5.0)

    node, trouble = links.due(job)

    assert trouble.startswith("round trip 16 s, above 10 s")


def test_answer_clears_unanswered_pings():
    links, registry, clock = watch()
    registry.ping_unanswered("a", clock.now)
    clock.advance(30.0)
    registry.record_rtt("a", 40.0)

    assert links.due(record()) is None
    clock.advance(10.0)
    assert links.due(record()) is None


def test_jobs_without_rule_or_not_running_never_move():
    links, _, clock = watch(rate_bps=1e3)
    jobs = [record(migrate_when=None), record(desired="stopped")]
    for job in jobs:
        links.due(job)
    clock.advance(60.0)

    assert [links.due(job) for job in jobs] == [None, None]


def test_unshaped_link_without_pings_is_fine():
    links, _, clock = watch()
    links.due(record())
    clock.advance(60.0)

    assert links.due(record()) is None


def test_removed_jobs_are_forgotten():
    links, _, clock = watch(rate_bps=1e5)
    links.due(record())
    clock.advance(10.0)
    links.keep_only(set())

    assert links.due(record()) is None
