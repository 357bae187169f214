import msgspec
import pytest

from controller.registry import NodeRegistry, NodeState
from schemas.messages import Accelerator
from tests.controller.helpers import FakeClock, heartbeat, link_down


def test_first_heartbeat_registers_node_online():
    registry = NodeRegistry(clock=FakeClock())

    transition = registry.observe(heartbeat("n1"))

    assert transition is not None
    assert transition.state is NodeState.ONLINE
    assert registry.get("n1").state is NodeState.ONLINE


def test_node_stays_online_within_limit():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))

    clock.advance(3.0)
    transitions = registry.sweep()

    assert transitions == []
    assert registry.get("n1").state is NodeState.ONLINE


def test_node_lost_after_missed_intervals():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=2.0))

    clock.advance(6.1)
    transitions = registry.sweep()

    assert [(t.node, t.state) for t in transitions] == [("n1", NodeState.LOST)]
    assert registry.get("n1").state is NodeState.LOST
    assert registry.get("n1").down_since == clock.now - 6.1
    assert registry.online() == []


def test_lost_reported_only_once():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1"))
    clock.advance(5.0)
    registry.sweep()

    clock.advance(5.0)
    transitions = registry.sweep()

    assert transitions == []


def test_heartbeat_brings_lost_node_back():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1", seq=1))
    clock.advance(5.0)
    registry.sweep()

    transition = registry.observe(heartbeat("n1", seq=2))

    assert transition is not None
    assert transition.state is NodeState.ONLINE
    assert registry.get("n1").last_seen == clock.now


def test_repeated_heartbeat_reports_no_transition():
    registry = NodeRegistry(clock=FakeClock())
    registry.observe(heartbeat("n1", seq=1))

    transition = registry.observe(heartbeat("n1", seq=2))

    assert transition is None


def test_late_heartbeat_is_ignored():
    registry = NodeRegistry(clock=FakeClock())
    registry.observe(heartbeat("n1", seq=5, running=2))

    registry.observe(heartbeat("n1", seq=4, running=0))

    assert registry.get("n1").heartbeat.seq == 5
    assert registry.get("n1").running_containers == 2


def test_restarted_agent_resets_sequence():
    registry = NodeRegistry(clock=FakeClock())
    registry.observe(heartbeat("n1", seq=50, agent_started_at=100.0))

    registry.observe(heartbeat("n1", seq=1, agent_started_at=200.0))

    assert registry.get("n1").heartbeat.seq == 1


def test_nodes_sorted_by_name():
    registry = NodeRegistry(clock=FakeClock())
    for name in ("c", "a", "b"):
        registry.observe(heartbeat(name))

    names = [node.name for node in registry.nodes()]

    assert names == ["a", "b", "c"]


def test_view_reports_state_and_load():
    clock = FakeClock(now=1234.0)
    registry = NodeRegistry(clock=clock)
    registry.observe(heartbeat("n1", device_type="RK3588", running=2, cpu_percent=7))

    view = registry.get("n1").view()

    assert view.name == "n1"
    assert view.state == "online"
    assert view.device_type == "RK3588"
    assert view.last_seen == 1234.0
    assert view.containers == 2
    assert view.cpu_percent == 7


def test_view_reports_capacity_and_accelerators():
    registry = NodeRegistry(clock=FakeClock(now=1234.0))
    npu = Accelerator(kind="npu", index=0, name="910B", util_percent=42.0)
    beat = msgspec.structs.replace(
        heartbeat("n1", device_type="ATLAS_I"),
        load_avg=[0.5, 0.25, 0.1],
        cpu_allocatable=3.5,
        mem_allocatable_bytes=8 * 1024**3,
        accelerators=[npu],
    )
    registry.observe(beat)

    view = registry.get("n1").view()

    assert view.load_avg == [0.5, 0.25, 0.1]
    assert view.cpu_allocatable == 3.5
    assert view.mem_allocatable_bytes == 8 * 1024**3
    assert view.accelerators == [npu]


def test_missed_count_below_one_rejected():
    with pytest.raises(ValueError, match="missed heartbeat count 0"):
        NodeRegistry(missed=0)


def test_link_down_marks_node_offline():
    clock = FakeClock()
    registry = NodeRegistry(clock=clock)
    registry.observe(heartbeat("n1"))

    transition = registry.link_down(link_down("n1", planned_return=clock.now + 20))

    assert transition is not None
    assert transition.state is NodeState.OFFLINE
    assert "planned return at" in transition.message
    record = registry.get("n1")
    assert record.state is NodeState.OFFLINE
    assert record.planned_return == clock.now + 20
    assert record.down_since == clock.now
    assert registry.online() == []


def test_offline_node_not_lost_before_return():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    registry.link_down(link_down("n1", planned_return=clock.now + 20))

    clock.advance(23.0)
    transitions = registry.sweep()

    assert transitions == []
    assert registry.get("n1").state is NodeState.OFFLINE


def test_offline_node_lost_after_late_return():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    registry.link_down(link_down("n1", planned_return=clock.now + 20))

    clock.advance(23.1)
    transitions = registry.sweep()

    assert [(t.node, t.state) for t in transitions] == [("n1", NodeState.LOST)]
    assert "after its planned return" in transitions[0].message
    assert registry.get("n1").down_since == clock.now - 23.1


def test_heartbeat_after_link_down_brings_node_online():
    clock = FakeClock()
    registry = NodeRegistry(clock=clock)
    registry.observe(heartbeat("n1", seq=1, sent_at=10.0))
    registry.link_down(link_down("n1", planned_return=clock.now + 5, time=11.0))

    clock.advance(5.0)
    transition = registry.observe(heartbeat("n1", seq=2, sent_at=16.0))

    assert transition is not None
    assert transition.state is NodeState.ONLINE
    record = registry.get("n1")
    assert record.planned_return is None
    assert record.down_since is None


def test_heartbeat_sent_before_link_down_keeps_offline():
    registry = NodeRegistry(clock=FakeClock())
    registry.observe(heartbeat("n1", seq=1, sent_at=10.0))
    registry.link_down(link_down("n1", planned_return=50.0, time=11.0))

    transition = registry.observe(heartbeat("n1", seq=2, sent_at=10.9))

    assert transition is None
    assert registry.get("n1").state is NodeState.OFFLINE


def test_link_down_of_unknown_node_ignored():
    registry = NodeRegistry(clock=FakeClock())

    transition = registry.link_down(link_down("n1", planned_return=50.0))

    assert transition is None
    assert registry.get("n1") is None


def test_view_reports_link_fields():
    clock = FakeClock()
    registry = NodeRegistry(clock=clock)
    registry.observe(heartbeat("n1", link_rate_bps=20e6, interval_s=0.5))
    registry.record_rtt("n1", 3.5)
    registry.link_down(link_down("n1", planned_return=clock.now + 9))

    view = registry.get("n1").view()

    assert view.state == "offline"
    assert view.planned_return == clock.now + 9
    assert view.down_since == clock.now
    assert view.rtt_ms == 3.5
    assert view.link_rate_bps == 20e6
    assert view.heartbeat_interval_s == 0.5


def test_rate_event_updates_link_rate():
    registry = NodeRegistry(clock=FakeClock())
    registry.observe(heartbeat("n1", link_rate_bps=20e6))

    registry.record_rate("n1", 5e6)

    assert registry.get("n1").view().link_rate_bps == 5e6


def test_down_for_counts_since_lost():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    clock.advance(2.0)
    registry.sweep()

    clock.advance(3.0)
    down_s = registry.down_for_s(registry.get("n1"))

    assert down_s == 5.0


def disconnect_controller(registry, clock, outage_s):
    """Let the controller lose NATS for `outage_s`, sweeping as the service does."""
    registry.controller_disconnected()
    clock.advance(outage_s)
    transitions = registry.sweep()
    registry.controller_reconnected()
    return transitions


def test_no_node_lost_while_controller_disconnected():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))

    transitions = disconnect_controller(registry, clock, 30.0)

    assert transitions == []
    assert registry.get("n1").state is NodeState.ONLINE


def test_reconnect_grants_missed_heartbeat_grace():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    disconnect_controller(registry, clock, 30.0)

    clock.advance(2.9)
    transitions = registry.sweep()

    assert transitions == []
    assert registry.get("n1").state is NodeState.ONLINE


def test_node_silent_after_reconnect_lost():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    disconnect_controller(registry, clock, 30.0)

    clock.advance(3.1)
    transitions = registry.sweep()

    assert [(t.node, t.state) for t in transitions] == [("n1", NodeState.LOST)]
    assert transitions[0].message.startswith("no heartbeat for 33.1 s (limit 3.0 s,")
    assert "counted from the controller's reconnect" in transitions[0].message
    assert registry.down_for_s(registry.get("n1")) == pytest.approx(3.1)


def test_offline_node_grace_after_reconnect():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    registry.link_down(link_down("n1", planned_return=clock.now + 5))
    disconnect_controller(registry, clock, 30.0)

    clock.advance(2.9)
    transitions = registry.sweep()

    assert transitions == []
    assert registry.get("n1").state is NodeState.OFFLINE


def test_outage_not_counted_as_down_time():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    clock.advance(2.0)
    registry.sweep()
    disconnect_controller(registry, clock, 30.0)

    clock.advance(4.0)
    down_s = registry.down_for_s(registry.get("n1"))

    assert down_s == pytest.approx(6.0)
    assert registry.get("n1").down_since == clock.now - 36.0


def test_down_time_frozen_while_disconnected():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1", interval_s=1.0))
    clock.advance(2.0)
    registry.sweep()

    registry.controller_disconnected()
    clock.advance(30.0)
    down_s = registry.down_for_s(registry.get("n1"))

    assert down_s == pytest.approx(2.0)


def test_heartbeat_after_outage_clears_unseen_time():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1", seq=1, interval_s=1.0))
    disconnect_controller(registry, clock, 30.0)
    registry.observe(heartbeat("n1", seq=2, interval_s=1.0))

    clock.advance(5.0)
    registry.sweep()
    down_s = registry.down_for_s(registry.get("n1"))

    assert registry.get("n1").state is NodeState.LOST
    assert down_s == pytest.approx(5.0)
