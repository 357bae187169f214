"""Placement: choose the node a job runs on. Pure logic over registry records."""

from controller.errors import NodeOfflineError, NoMatchingNodeError, NotFoundError
from controller.registry import NodeRecord, NodeState
from schemas.job import Placement


def place(placement: Placement, nodes: list[NodeRecord]) -> NodeRecord:
    """Return the node for a job with this placement.

    A pinned node (`placement.node`) must be registered and online. Otherwise
    the least loaded online node that matches `device_type` (ignoring case)
    and every label wins: fewest running containers, then lowest CPU use, then name order.
    """
    if placement.node is not None:
        return _pinned(placement.node, nodes)

    candidates = [node for node in nodes if _matches(placement, node)]
    if not candidates:
        raise NoMatchingNodeError(_no_match_message(placement, nodes))
    return min(candidates, key=_load_key)


def _pinned(name: str, nodes: list[NodeRecord]) -> NodeRecord:
    node = next((node for node in nodes if node.name == name), None)
    if node is None:
        raise NotFoundError(
            f"node {name!r} is not registered; see `controller nodes` for the "
            "nodes whose agents send heartbeats"
        )
    if node.state is not NodeState.ONLINE:
        raise NodeOfflineError(
            f"node {name!r} is {node.state}: its agent sends no heartbeats; start "
            "node-agent on it, wait for it to return, or choose another node"
        )
    return node


def _matches(placement: Placement, node: NodeRecord) -> bool:
    if node.state is not NodeState.ONLINE:
        return False
    heartbeat = node.heartbeat
    expected_type = placement.device_type
    if expected_type and heartbeat.device_type.casefold() != expected_type.casefold():
        return False
    return all(
        heartbeat.labels.get(key) == value for key, value in placement.labels.items()
    )


def _load_key(node: NodeRecord) -> tuple[int, float, str]:
    return (node.running_containers, node.heartbeat.cpu_percent, node.name)


def _no_match_message(placement: Placement, nodes: list[NodeRecord]) -> str:
    constraints = []
    if placement.device_type:
        constraints.append(f"device_type {placement.device_type!r}")
    constraints += [f"label {key}={value!r}" for key, value in placement.labels.items()]
    constraints_text = " and ".join(constraints) or "no constraints"
    online = sum(1 for node in nodes if node.state is NodeState.ONLINE)
    return (
        f"no online node matches the placement ({constraints_text}); {online} of "
        f"{len(nodes)} registered nodes are online; see `controller nodes` and "
        "change the job's placement or start a matching agent"
    )
