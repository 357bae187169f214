import pytest

from controller.registry import NodeRegistry, NodeState
from tests.controller.helpers import FakeClock, heartbeat


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


def test_node_goes_offline_after_missed_intervals():
    clock = FakeClock()
    registry = NodeRegistry(missed=3, clock=clock)
    registry.observe(heartbeat("n1", interval_s=2.0))

    clock.advance(6.1)
    transitions = registry.sweep()

    assert [(t.node, t.state) for t in transitions] == [("n1", NodeState.OFFLINE)]
    assert registry.get("n1").state is NodeState.OFFLINE
    assert registry.online() == []


def test_offline_reported_only_once():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("n1"))
    clock.advance(5.0)
    registry.sweep()

    clock.advance(5.0)
    transitions = registry.sweep()

    assert transitions == []


def test_heartbeat_brings_offline_node_back():
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


def test_missed_count_below_one_rejected():
    with pytest.raises(ValueError, match="missed heartbeat count 0"):
        NodeRegistry(missed=0)
