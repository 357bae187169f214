from controller.orphans import is_stray
from controller.placement import PlacementConfig
from controller.registry import NodeRegistry
from controller.rescheduler import move_target
from controller.scheduler import Scheduler
from controller.store import JobRecord
from schemas.job import JobSpec, Placement
from tests.controller.helpers import FakeClock, heartbeat, link_down

LABELS = {"zone": "lab"}


def job(
    node="a",
    desired="running",
    reschedule_after="10s",
    **placement,
):
    spec = JobSpec(
        name="web",
        image="img",
        reschedule_after=reschedule_after,
        placement=Placement(**placement),
    )
    return JobRecord(spec=spec, desired=desired, node=node)


def target_of(record, registry):
    return move_target(record, registry, Scheduler(registry, PlacementConfig()))


def fleet(clock, *names, labels=LABELS):
    registry = NodeRegistry(missed=1, clock=clock)
    for name in names:
        registry.observe(heartbeat(name, labels=labels, interval_s=1.0))
    return registry


def lose(registry, clock, node, silent_s):
    """Let `node` stay silent for `silent_s` while the others keep reporting."""
    clock.advance(silent_s)
    for record in registry.nodes():
        if record.name != node:
            registry.observe(heartbeat(record.name, seq=2, labels=LABELS))
    registry.sweep()


def test_job_moves_after_reschedule_after():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    lose(registry, clock, "a", 11.5)

    target = target_of(job(labels=LABELS), registry)

    assert target == "b"


def test_job_stays_within_reschedule_after():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    lose(registry, clock, "a", 9.5)

    target = target_of(job(), registry)

    assert target is None


def test_job_stays_while_node_online():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")

    target = target_of(job(), registry)

    assert target is None


def test_job_without_reschedule_after_stays():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    lose(registry, clock, "a", 60.0)

    target = target_of(job(reschedule_after=None), registry)

    assert target is None


def test_stopped_job_stays():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    lose(registry, clock, "a", 60.0)

    target = target_of(job(desired="stopped"), registry)

    assert target is None


def test_move_needs_matching_labels():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    lose(registry, clock, "a", 60.0)

    target = target_of(job(labels={"zone": "elsewhere"}), registry)

    assert target is None


def test_move_never_targets_old_node():
    clock = FakeClock()
    registry = fleet(clock, "a")
    lose(registry, clock, "a", 60.0)

    target = target_of(job(), registry)

    assert target is None


def test_offline_node_counts_as_down():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    registry.link_down(link_down("a", planned_return=clock.now + 300))
    clock.advance(11.0)
    registry.observe(heartbeat("b", seq=2, labels=LABELS))

    target = target_of(job(), registry)

    assert target == "b"


def test_container_of_unrecorded_job_is_stray():
    assert is_stray("a", None)


def test_container_on_other_node_is_stale():
    assert is_stray("a", job(node="b"))


def test_container_on_record_node_is_kept():
    assert not is_stray("a", job(node="a"))


def test_record_without_node_claims_nothing():
    assert not is_stray("a", job(node=None))


def test_controller_outage_moves_no_job():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    registry.controller_disconnected()
    clock.advance(30.0)
    registry.sweep()
    registry.controller_reconnected()
    registry.observe(heartbeat("b", seq=2, labels=LABELS))

    clock.advance(0.5)
    registry.sweep()
    target = target_of(job(labels=LABELS), registry)

    assert target is None


def test_node_silent_after_outage_moves_later():
    clock = FakeClock()
    registry = fleet(clock, "a", "b")
    registry.controller_disconnected()
    clock.advance(30.0)
    registry.controller_reconnected()
    lose(registry, clock, "a", 9.5)
    early = target_of(job(labels=LABELS), registry)

    lose(registry, clock, "a", 1.0)
    late = target_of(job(labels=LABELS), registry)

    assert early is None
    assert late == "b"
