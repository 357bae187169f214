"""The node registry: which nodes exist, their latest heartbeat and their state.

A node is online while its heartbeats arrive. An announced disconnect (a link
event `down` with a planned return) makes it offline until heartbeats resume.
A node becomes lost after `missed` heartbeat intervals of silence, counted
from its last heartbeat, or from the planned return when it is offline.

While the controller itself has no NATS connection, no heartbeat can reach
it, so silence then is no sign that a node failed. No node becomes lost
then, and the time does not count as any node's down time. After the controller
reconnects, silence counts from the reconnect at the earliest.

Pure logic fed by heartbeats and link events. Time comes from an injected
clock (Unix seconds), so tests move time without sleeping.
"""

import datetime
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas.messages import ContainerInfo, Heartbeat, LinkEvent, NodeView

DEFAULT_MISSED_HEARTBEATS = 3


class NodeState(enum.StrEnum):
    ONLINE = "online"
    # Disconnected on purpose, with a planned return.
    OFFLINE = "offline"
    # Silent for longer than the missed-heartbeat limit.
    LOST = "lost"


@dataclass
class NodeRecord:
    """A node as the registry last saw it."""

    name: str
    heartbeat: Heartbeat
    last_seen: float
    state: NodeState = NodeState.ONLINE
    # Unix time at which the node stopped being online, None while online.
    down_since: float | None = None
    # Set while offline: when the agent plans to reconnect, in Unix seconds.
    planned_return: float | None = None
    # The agent's clock at its last link-down event; heartbeats sent before
    # it do not bring the node back.
    link_down_sent_at: float | None = None
    # Seconds since `down_since`, or since the last heartbeat while online,
    # during which the controller had no NATS connection.
    unseen_s: float = 0.0
    rtt_ms: float | None = None
    # When the oldest ping still without a reply was sent, in Unix seconds;
    # None when the last ping had its reply.
    unanswered_since: float | None = None
    link_rate_bps: float | None = None

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
            heartbeat_interval_s=heartbeat.interval_s,
            down_since=self.down_since,
            planned_return=self.planned_return,
            rtt_ms=self.rtt_ms,
            link_rate_bps=self.link_rate_bps,
            broker_rtt_ms=heartbeat.broker_rtt_ms,
            connected_since=heartbeat.connected_since,
            next_disconnect_at=heartbeat.next_disconnect_at,
            load_avg=heartbeat.load_avg,
            cpu_allocatable=heartbeat.cpu_allocatable,
            mem_allocatable_bytes=heartbeat.mem_allocatable_bytes,
            reserved_cpus=heartbeat.reserved_cpus,
            reserved_mem_bytes=heartbeat.reserved_mem_bytes,
            accelerators=heartbeat.accelerators,
        )


@dataclass(frozen=True)
class Transition:
    """A node that changed state, as returned by `observe`, `link_down` and `sweep`."""

    node: str
    state: NodeState
    message: str


class NodeRegistry:
    """Nodes by name, with their state, heartbeat, round-trip time and link rate."""

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
        self.clock = clock
        self._nodes: dict[str, NodeRecord] = {}
        # When the controller lost its NATS connection, None while connected.
        self._disconnected_at: float | None = None
        self._reconnected_at = 0.0

    def observe(self, heartbeat: Heartbeat) -> Transition | None:
        """Record a heartbeat; return the transition if the node came online."""
        now = self.clock()
        record = self._nodes.get(heartbeat.node)
        if record is None:
            record = NodeRecord(heartbeat.node, heartbeat, now)
            record.link_rate_bps = heartbeat.link_rate_bps
            self._nodes[heartbeat.node] = record
            return Transition(heartbeat.node, NodeState.ONLINE, "first heartbeat")

        restarted = self._restarted(record, heartbeat)
        if heartbeat.seq < record.heartbeat.seq and not restarted:
            return None
        record.heartbeat = heartbeat
        record.last_seen = now
        record.link_rate_bps = heartbeat.link_rate_bps
        if record.state is NodeState.ONLINE:
            record.unseen_s = 0.0
            return None
        if self._sent_before_link_down(record, heartbeat, restarted):
            return None
        record.state = NodeState.ONLINE
        record.down_since = record.planned_return = record.link_down_sent_at = None
        record.unanswered_since = None
        record.unseen_s = 0.0
        return Transition(heartbeat.node, NodeState.ONLINE, "heartbeats resumed")

    def link_down(self, event: LinkEvent) -> Transition | None:
        """Mark the node offline until its planned return; None if it is unknown."""
        record = self._nodes.get(event.node)
        if record is None or event.state != "down":
            return None
        if record.state is NodeState.ONLINE:
            record.down_since = self.clock()
            record.unseen_s = 0.0
        record.state = NodeState.OFFLINE
        record.planned_return = event.planned_return
        record.link_down_sent_at = event.time
        message = f"{event.mode} disconnect"
        if event.planned_return is not None:
            message += f", planned return at {clock_time(event.planned_return)}"
        return Transition(event.node, NodeState.OFFLINE, message)

    def sweep(self) -> list[Transition]:
        """Mark silent nodes lost; return the nodes that just became lost.

        Marks none while the controller is disconnected from NATS.
        """
        if self._disconnected_at is not None:
            return []
        now = self.clock()
        transitions = []
        for record in self._nodes.values():
            message = self._lost_message(record, now)
            if message is None:
                continue
            if record.state is NodeState.ONLINE:
                record.down_since = record.last_seen
            record.state = NodeState.LOST
            transitions.append(Transition(record.name, NodeState.LOST, message))
        return transitions

    def record_rtt(self, name: str, rtt_ms: float) -> None:
        record = self._nodes.get(name)
        if record is not None:
            record.rtt_ms = rtt_ms
            record.unanswered_since = None

    def ping_unanswered(self, name: str, sent_at: float) -> None:
        """Note a ping sent at `sent_at` (registry clock) that had no reply."""
        record = self._nodes.get(name)
        if record is not None and record.unanswered_since is None:
            record.unanswered_since = sent_at

    def record_rate(self, name: str, rate_bps: float) -> None:
        record = self._nodes.get(name)
        if record is not None:
            record.link_rate_bps = rate_bps

    def controller_disconnected(self) -> None:
        """Stop marking nodes lost and counting down time until the reconnect."""
        if self._disconnected_at is None:
            self._disconnected_at = self.clock()

    def controller_reconnected(self) -> float:
        """Restart every node's silence from now; return the outage in seconds.

        The outage is left out of each node's down time, so a node that was
        already down moves no sooner because the controller was away.
        """
        now = self.clock()
        disconnected_at, self._disconnected_at = self._disconnected_at, None
        self._reconnected_at = now
        if disconnected_at is None:
            return 0.0
        for record in self._nodes.values():
            unseen_from = record.down_since or record.last_seen
            record.unseen_s += max(0.0, now - max(unseen_from, disconnected_at))
        return now - disconnected_at

    def down_for_s(self, record: NodeRecord) -> float:
        """Return how long the node has not been online, 0 while it is online.

        Time during which the controller had no NATS connection is left out.
        """
        if record.down_since is None:
            return 0.0
        until = self._disconnected_at
        if until is None:
            until = self.clock()
        return max(0.0, until - record.down_since - record.unseen_s)

    def get(self, name: str) -> NodeRecord | None:
        return self._nodes.get(name)

    def is_away(self, name: str) -> bool:
        """Return True if the node is offline or lost, False if online or unknown."""
        record = self._nodes.get(name)
        return record is not None and record.state is not NodeState.ONLINE

    def nodes(self) -> list[NodeRecord]:
        return sorted(self._nodes.values(), key=lambda record: record.name)

    def online(self) -> list[NodeRecord]:
        return [node for node in self.nodes() if node.state is NodeState.ONLINE]

    def _lost_message(self, record: NodeRecord, now: float) -> str | None:
        """Return why the node is lost now, or None if it is not."""
        limit_s = self.missed * record.heartbeat.interval_s
        if record.state is NodeState.ONLINE:
            if now - max(record.last_seen, self._reconnected_at) > limit_s:
                silence_s = now - record.last_seen
                return (
                    f"no heartbeat for {silence_s:.1f} s "
                    f"({self._limit_text(limit_s, record.last_seen)})"
                )
        elif record.state is NodeState.OFFLINE:
            expected_at = record.planned_return or record.last_seen
            if now - max(expected_at, self._reconnected_at) > limit_s:
                late_s = now - expected_at
                return (
                    f"not back {late_s:.1f} s after its planned return "
                    f"({self._limit_text(limit_s, expected_at)})"
                )
        return None

    def _limit_text(self, limit_s: float, silent_from: float) -> str:
        """Return "limit 1.5 s", naming the reconnect when silence counts from it."""
        if self._reconnected_at <= silent_from:
            return f"limit {limit_s:.1f} s"
        return (
            f"limit {limit_s:.1f} s, counted from the controller's reconnect to "
            f"NATS at {clock_time(self._reconnected_at)}"
        )

    @staticmethod
    def _restarted(record: NodeRecord, heartbeat: Heartbeat) -> bool:
        # A restarted agent counts from 0 again, and its new start time sets
        # it apart from a heartbeat that arrives late.
        return heartbeat.agent_started_at != record.heartbeat.agent_started_at

    @staticmethod
    def _sent_before_link_down(
        record: NodeRecord, heartbeat: Heartbeat, restarted: bool
    ) -> bool:
        # Heartbeats and link events arrive on separate subscriptions, so a
        # heartbeat sent just before an announced disconnect can arrive after
        # its link event. Both times come from the agent's clock.
        down_at = record.link_down_sent_at
        return down_at is not None and not restarted and heartbeat.sent_at <= down_at


def clock_time(timestamp: float) -> str:
    """Return a Unix time as local HH:MM:SS, for log lines and messages."""
    return f"{datetime.datetime.fromtimestamp(timestamp):%H:%M:%S}"
