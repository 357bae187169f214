import pytest

from controller.errors import NodeOfflineError, NoMatchingNodeError, NotFoundError
from controller.registry import NodeRegistry
from controller.scheduler import place
from schemas.job import Placement
from tests.controller.helpers import FakeClock, heartbeat


def fleet(*heartbeats):
    registry = NodeRegistry(clock=FakeClock())
    for beat in heartbeats:
        registry.observe(beat)
    return registry.nodes()


def test_pinned_node_is_chosen():
    nodes = fleet(heartbeat("a"), heartbeat("b", running=5))

    node = place(Placement(node="b"), nodes)

    assert node.name == "b"


def test_pinned_unknown_node_not_found():
    nodes = fleet(heartbeat("a"))

    with pytest.raises(NotFoundError) as caught:
        place(Placement(node="x"), nodes)

    assert "node 'x' is not registered" in str(caught.value)
    assert "controller nodes" in str(caught.value)


def test_pinned_lost_node_rejected():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("a"))
    clock.advance(10.0)
    registry.sweep()

    with pytest.raises(NodeOfflineError, match="node 'a' is lost"):
        place(Placement(node="a"), registry.nodes())


def test_fewest_running_containers_wins():
    nodes = fleet(heartbeat("a", running=3), heartbeat("b", running=1))

    node = place(Placement(), nodes)

    assert node.name == "b"


def test_lower_cpu_breaks_container_tie():
    nodes = fleet(
        heartbeat("a", running=1, cpu_percent=50.0),
        heartbeat("b", running=1, cpu_percent=10.0),
    )

    node = place(Placement(), nodes)

    assert node.name == "b"


def test_name_breaks_full_tie():
    nodes = fleet(heartbeat("b"), heartbeat("a"), heartbeat("c"))

    node = place(Placement(), nodes)

    assert node.name == "a"


def test_device_type_filters_nodes():
    nodes = fleet(heartbeat("a", device_type="X86"), heartbeat("b", device_type="RK"))

    node = place(Placement(device_type="RK"), nodes)

    assert node.name == "b"


def test_all_labels_must_match():
    nodes = fleet(
        heartbeat("a", labels={"zone": "east"}),
        heartbeat("b", labels={"zone": "east", "gpu": "yes"}, running=4),
    )

    node = place(Placement(labels={"zone": "east", "gpu": "yes"}), nodes)

    assert node.name == "b"


def test_offline_nodes_are_skipped():
    clock = FakeClock()
    registry = NodeRegistry(missed=1, clock=clock)
    registry.observe(heartbeat("a"))
    clock.advance(10.0)
    registry.sweep()
    registry.observe(heartbeat("b", running=9))

    node = place(Placement(), registry.nodes())

    assert node.name == "b"


def test_empty_fleet_names_constraints():
    with pytest.raises(NoMatchingNodeError) as caught:
        place(Placement(), [])

    message = str(caught.value)
    assert "no online node matches the placement" in message
    assert "0 of 0 registered nodes are online" in message


def test_no_match_names_each_constraint():
    nodes = fleet(heartbeat("a", device_type="X86"))

    with pytest.raises(NoMatchingNodeError) as caught:
        place(Placement(device_type="ATLAS_I", labels={"zone": "east"}), nodes)

    message = str(caught.value)
    assert "device_type 'ATLAS_I'" in message
    assert "label zone='east'" in message
    assert "1 of 1 registered nodes are online" in message


@pytest.mark.parametrize(
    ("requested", "reported"), [("x86", "X86"), ("X86", "x86"), ("Atlas_I", "ATLAS_I")]
)
def test_device_type_ignores_case(requested, reported):
    nodes = fleet(heartbeat("a", device_type=reported))

    node = place(Placement(device_type=requested), nodes)

    assert node.name == "a"
