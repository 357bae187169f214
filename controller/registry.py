"""The node registry: which nodes exist, their latest heartbeat, online or offline.

Pure logic fed by heartbeats. Time comes from an injected clock (Unix seconds),
so tests move time without sleeping.
"""

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas.messages import ContainerInfo, Heartbeat, NodeView

DEFAULT_MISSED_HEARTBEATS = 3


class NodeState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass
class NodeRecord:
    """A node as the registry last saw it."""

    name: str
    heartbeat: Heartbeat
    last_seen: float
    state: NodeState = NodeState.ONLINE

    @property
    def running_containers(self) -> int:
        return sum(1 for info in self.heartbeat.containers if info.state == "running")

    def container(self, job: str) -> ContainerInfo | None:
        return next((c for c in self.heartbeat.containers if c.job == job), None)

    def view(self) -> NodeView:
        heartbeat = self.heartbeat
        return NodeView(
            name=self.name,
            state=self.state.value,
            device_type=heartbeat.device_type,
            last_seen=self.last_seen,
            labels=heartbeat.labels,
            cpu_percent=heartbeat.cpu_percent,
            mem_used_bytes=heartbeat.mem_used_bytes,
            mem_total_bytes=heartbeat.mem_total_bytes,
            containers=len(heartbeat.containers),
        )


@dataclass(frozen=True)
class Transition:
    """A node that changed state, as returned by `observe` and `sweep`."""

    node: str
    state: NodeState
    message: str


class NodeRegistry:
    """Nodes by name, marked offline after `missed` heartbeat intervals of silence."""

    def __init__(
        self,
        missed: int = DEFAULT_MISSED_HEARTBEATS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if missed < 1:
            raise ValueError(
                f"invalid missed heartbeat count {missed!r}: use 1 or more"
            )
        self.missed = missed
        self._clock = clock
        self._nodes: dict[str, NodeRecord] = {}

    def observe(self, heartbeat: Heartbeat) -> Transition | None:
        """Record a heartbeat; return the transition if the node came online."""
        now = self._clock()
        record = self._nodes.get(heartbeat.node)
        if record is None:
            self._nodes[heartbeat.node] = NodeRecord(heartbeat.node, heartbeat, now)
            return Transition(heartbeat.node, NodeState.ONLINE, "first heartbeat")

        if heartbeat.seq < record.heartbeat.seq and not self._restarted(
            record, heartbeat
        ):
            return None
        record.heartbeat = heartbeat
        record.last_seen = now
        if record.state is NodeState.ONLINE:
            return None
        record.state = NodeState.ONLINE
        return Transition(heartbeat.node, NodeState.ONLINE, "heartbeats resumed")

    def sweep(self) -> list[Transition]:
        """Mark silent nodes offline; return the nodes that just went offline."""
        now = self._clock()
        transitions = []
        for record in self._nodes.values():
            silence_s = now - record.last_seen
            limit_s = self.missed * record.heartbeat.interval_s
            if record.state is NodeState.ONLINE and silence_s > limit_s:
                record.state = NodeState.OFFLINE
                message = f"no heartbeat for {silence_s:.1f} s (limit {limit_s:.1f} s)"
                transitions.append(Transition(record.name, NodeState.OFFLINE, message))
        return transitions

    def get(self, name: str) -> NodeRecord | None:
        return self._nodes.get(name)

    def nodes(self) -> list[NodeRecord]:
        return sorted(self._nodes.values(), key=lambda record: record.name)

    def online(self) -> list[NodeRecord]:
        return [node for node in self.nodes() if node.state is NodeState.ONLINE]

    @staticmethod
    def _restarted(record: NodeRecord, heartbeat: Heartbeat) -> bool:
        # A restarted agent counts from 0 again, and its new start time sets
        # it apart from a heartbeat that arrives late.
        return heartbeat.agent_started_at != record.heartbeat.agent_started_at
