"""Moves: a job leaves a node that is down too long or whose link degrades.

A job with `reschedule_after` whose desired state is running moves when its
node has not been online for longer than that. The move only rewrites the
job record: the reconciler then creates the container on the new node, and
the old node's container, now stale, is removed when that node is back (see
`controller.orphans`).

A job with `migrate_when` moves when its node stays online but its round
trip stays above, or its link rate below, the job's threshold for the
job's `for` seconds. That node is reachable, so its container is removed
first and the record rewritten only once the remove succeeded: the job
never runs twice. A failed remove leaves the job where it is until a
later pass.

Either way the new node is chosen by the job's placement among the other
nodes; the `link` filter rules out nodes whose link misses `migrate_when`.
A job pinned with `placement.node` can set neither key.
"""

import logging
from collections.abc import Callable

from controller.errors import ControllerError, NotFoundError
from controller.parts import Parts
from controller.placement import link_trouble
from controller.registry import NodeRecord, NodeRegistry, NodeState
from controller.scheduler import Scheduler
from controller.store import JobRecord

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


def move_target(
    record: JobRecord,
    registry: NodeRegistry,
    scheduler: Scheduler,
    records: list[JobRecord] = (),
) -> str | None:
    """Return the node the job moves to because its node is down, else None."""
    old = overdue_node(record, registry)
    if old is None:
        return None
    return place_elsewhere(record, scheduler, records, {old.name})[0]


def place_elsewhere(
    record: JobRecord,
    scheduler: Scheduler,
    records: list[JobRecord],
    exclude: set[str],
) -> tuple[str | None, str]:
    """Return the node a moving job goes to, or None and the reason none fits."""
    try:
        nodes = scheduler.place(record.spec, records, exclude, record.group)
    except ControllerError as exc:
        return None, str(exc)
    return nodes[0], ""


class LinkWatch:
    """Tracks since when each job's node has missed the job's link thresholds."""

    def __init__(self, registry: NodeRegistry) -> None:
        self._registry = registry
        # Job -> (node, Unix time the trouble began).
        self._since: dict[str, tuple[str, float]] = {}

    def due(self, record: JobRecord) -> tuple[NodeRecord, str] | None:
        """Return the node and the trouble if it has lasted the job's `for`."""
        node = self._watched_node(record)
        if node is None:
            self._since.pop(record.name, None)
            return None
        now = self._registry.clock()
        trouble = link_trouble(record.spec, node, now)
        if trouble is None:
            self._since.pop(record.name, None)
            return None
        since_node, since = self._since.setdefault(record.name, (node.name, now))
        if since_node != node.name:
            self._since[record.name] = (node.name, now)
            return None
        lasted_s = now - since
        if lasted_s < record.spec.migrate_when.for_s():
            return None
        return node, f"{trouble} for {lasted_s:.1f} s"

    def forget(self, job: str) -> None:
        self._since.pop(job, None)

    def keep_only(self, jobs: set[str]) -> None:
        """Drop what is tracked for jobs not in `jobs`, such as removed ones."""
        for removed in self._since.keys() - jobs:
            del self._since[removed]

    def _watched_node(self, record: JobRecord) -> NodeRecord | None:
        if record.spec.migrate_when is None or record.desired != "running":
            return None
        node = self._registry.get(record.node) if record.node else None
        if node is None or node.state is not NodeState.ONLINE:
            return None
        return node


class Rescheduler:
    """Moves jobs off nodes that are down too long or whose link degrades."""

    def __init__(
        self,
        parts: Parts,
        scheduler: Scheduler,
        list_records: Callable[[], list[JobRecord]],
    ) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._events = parts.events
        self._scheduler = scheduler
        # The records of the current reconcile pass, whose reservations count.
        self._list_records = list_records
        self._links = LinkWatch(parts.registry)
        # Due jobs without a node to move to, logged once each.
        self._stuck: set[str] = set()

    def keep_only(self, jobs: set[str]) -> None:
        """Drop what is tracked for jobs not in `jobs`, such as removed ones."""
        self._links.keep_only(jobs)
        self._stuck &= jobs

    async def move_if_due(self, record: JobRecord) -> bool:
        """Move the job if it is due; return True if it moved.

        The caller holds the job's lock.
        """
        old = overdue_node(record, self._registry)
        if old is not None:
            down_s = self._registry.down_for_s(old)
            reason = f"{old.state.value} for {down_s:.1f} s"
            return await self._move(record, old, reason, {old.name}, remove=False)
        due = self._links.due(record)
        if due is None:
            self._stuck.discard(record.name)
            return False
        old, trouble = due
        return await self._move(record, old, trouble, {old.name}, remove=True)

    async def _move(
        self,
        record: JobRecord,
        old: NodeRecord,
        reason: str,
        exclude: set[str],
        remove: bool,
    ) -> bool:
        target, why_not = place_elsewhere(
            record, self._scheduler, self._list_records(), exclude
        )
        if target is None:
            self._log_stuck(record, old, reason, why_not)
            return False
        self._stuck.discard(record.name)
        if remove and not await self._remove_old(record, old):
            return False
        self._links.forget(record.name)
        updated = await self._store.update(
            record.name,
            node=target,
            container_id=None,
            ports=[],
            state="pending",
            message=f"moved from node {old.name}, {reason}",
        )
        logger.info(
            "job %s moved from node %s to node %s: %s",
            record.name,
            old.name,
            target,
            reason,
        )
        await self._events.job(updated, state="moved")
        return True

    async def _remove_old(self, record: JobRecord, old: NodeRecord) -> bool:
        try:
            await self._agents.remove(old.name, record.spec)
        except NotFoundError:
            pass
        except ControllerError as exc:
            logger.warning(
                "job %s: removing it from node %s before the move failed: %s; "
                "the job stays there and the move is tried again",
                record.name,
                old.name,
                exc,
            )
            return False
        return True

    def _log_stuck(
        self, record: JobRecord, old: NodeRecord, reason: str, why_not: str
    ) -> None:
        if record.name in self._stuck:
            return
        self._stuck.add(record.name)
        logger.warning(
            "job %s is due to leave node %s (%s), but %s; it stays until a node fits",
            record.name,
            old.name,
            reason,
            why_not,
        )
