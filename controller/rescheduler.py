"""Rescheduling: move a job off a node that has been offline or lost too long.

A job with `reschedule_after` whose desired state is running moves when its
node has not been online for longer than that. The new node is chosen by the
job's placement among the other online nodes, never the old node. A job
pinned with `placement.node` cannot set `reschedule_after`. The move only
rewrites the job record: the reconciler then creates the container on the
new node, and the old node's container, now stale, is removed when that
node is back (see `controller.orphans`).
"""

import logging

from controller.errors import ControllerError
from controller.events import EventPublisher
from controller.registry import NodeRecord, NodeRegistry, NodeState
from controller.scheduler import place
from controller.store import JobRecord, JobStore

logger = logging.getLogger(__name__)


def overdue_node(record: JobRecord, registry: NodeRegistry) -> NodeRecord | None:
    """Return the job's node if the job is due to move off it, else None."""
    after_s = record.spec.reschedule_after_s()
    if after_s is None or record.desired != "running" or record.node is None:
        return None
    old = registry.get(record.node)
    # NOTE: a node that sent no heartbeat since the controller started has no
    # known down time, so its jobs stay until it has been seen once.
    if old is None or old.state is NodeState.ONLINE:
        return None
    if registry.down_for_s(old) <= after_s:
        return None
    return old


def move_target(record: JobRecord, registry: NodeRegistry) -> NodeRecord | None:
    """Return the node the job moves to now, or None if it stays where it is."""
    old = overdue_node(record, registry)
    if old is None:
        return None
    others = [node for node in registry.nodes() if node.name != old.name]
    try:
        return place(record.spec.placement, others)
    except ControllerError:
        return None


class Rescheduler:
    """Moves jobs whose node is down for longer than their `reschedule_after`."""

    def __init__(
        self, store: JobStore, registry: NodeRegistry, events: EventPublisher
    ) -> None:
        self._store = store
        self._registry = registry
        self._events = events
        # Due jobs without a node to move to, logged once each.
        self._stuck: set[str] = set()

    async def move_if_due(self, record: JobRecord) -> bool:
        """Move the job if it is due; return True if it moved.

        The caller holds the job's lock.
        """
        old = overdue_node(record, self._registry)
        target = move_target(record, self._registry)
        if target is None:
            self._log_stuck(record, old)
            return False
        self._stuck.discard(record.name)
        message = (
            f"moved from node {old.name}, {old.state.value} for "
            f"{self._registry.down_for_s(old):.1f} s"
        )
        updated = await self._store.update(
            record.name,
            node=target.name,
            container_id=None,
            ports=[],
            state="pending",
            message=message,
        )
        logger.info(
            "job %s moved from node %s to node %s", record.name, old.name, target.name
        )
        await self._events.job(updated, state="moved")
        return True

    def _log_stuck(self, record: JobRecord, old: NodeRecord | None) -> None:
        if old is None:
            self._stuck.discard(record.name)
            return
        if record.name in self._stuck:
            return
        self._stuck.add(record.name)
        logger.warning(
            "job %s: node %s is %s beyond reschedule_after, but no other online "
            "node matches its placement; the job stays until one does",
            record.name,
            old.name,
            old.state.value,
        )
