"""Removal of stray containers: orphans and stale copies.

An orphan is a container of a job that has no record. It is left behind when
a node creates a container after the controller gave up on the command, for
example a submit whose create timed out while the agent was dying. Its name
blocks a later submit of the same job, so the reconciler removes it.

A stale copy is a container on a node other than the one its job's record
names. It is left behind when the job moved while its old node was offline or
lost, because the container kept running there. It is removed once that node
is back, so the job runs once when both nodes are reachable. The reconciler acts only on the container
on the record's node, so a stale copy is never restarted or counted as the
job's.

A stray is removed only under its job's lock, after the store confirmed that
the job still has no record or still names another node. A submit stores the
record, with its node, before it sends its create, and a remove deletes the
record after its remove, all under the lock, so neither can lose its
container here.
"""

import logging

from controller.agents import stop_grace_or_default
from controller.backoff import Backoff
from controller.errors import ControllerError, NotFoundError
from controller.parts import Parts
from controller.registry import NodeRecord
from controller.store import JobRecord
from schemas.messages import ContainerInfo, Remove

logger = logging.getLogger(__name__)


def is_stray(node: str, record: JobRecord | None) -> bool:
    """Return True if a container of the job on `node` must be removed.

    `record` is the job's record, None when it has none. A record without a
    node yet (a submit in progress) claims no container, so it makes none stale.
    """
    if record is None:
        return True
    return record.node is not None and record.node != node


class OrphanRemover:
    """Removes orphans and stale copies from online nodes."""

    def __init__(self, parts: Parts, backoff: Backoff) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._locks = parts.locks
        self._backoff = backoff
        # IDs of stray containers already logged, so each is logged once.
        self._logged: set[str] = set()

    def strays(
        self, records: dict[str, JobRecord]
    ) -> list[tuple[NodeRecord, ContainerInfo]]:
        """Return each container on an online node that `is_stray` by `records`."""
        found = [
            (node, container)
            for node in self._registry.online()
            for container in node.heartbeat.containers
            if is_stray(node.name, records.get(container.job))
        ]
        self._logged &= {container.id for _, container in found}

        return found

    async def remove(self, node: NodeRecord, container: ContainerInfo) -> None:
        """Remove one stray unless it is backing off or the store now claims it.

        It waits for the job's lock rather than skipping a busy job, because
        the reconciler takes the lock of every job on every pass.
        """
        job = container.job
        # Keyed by node too, so a failing create of the job elsewhere does
        # not hold back this removal.
        key = f"{job} on node {node.name}"
        if not self._backoff.ready(key):
            return
        async with self._locks.hold(job):
            record = await self._record(job)
            if not is_stray(node.name, record):
                return
            try:
                await self._send_remove(node.name, container, record)
            except ControllerError as exc:
                self._backoff.failed(key, exc)
                return
        self._backoff.forget(key)

    async def _record(self, job: str) -> JobRecord | None:
        try:
            return await self._store.get(job)
        except NotFoundError:
            return None

    async def _send_remove(
        self, node: str, container: ContainerInfo, record: JobRecord | None
    ) -> None:
        if container.id not in self._logged:
            self._log_removal(node, container, record)
            self._logged.add(container.id)
        # NOTE: the bound assumes Docker's default stop grace for an orphan,
        # because its own stop grace is not in the heartbeat.
        grace_s = record.spec.stop_grace_s() if record else None
        bound_s = self._agents.timeout_s + stop_grace_or_default(grace_s)
        try:
            await self._agents.call(node, Remove, bound_s=bound_s, job=container.job)
        except NotFoundError:
            logger.debug("node %s had already removed job %s", node, container.job)

    @staticmethod
    def _log_removal(
        node: str, container: ContainerInfo, record: JobRecord | None
    ) -> None:
        if record is None:
            logger.info(
                "job %s has no record; removing its container %s from node %s",
                container.job,
                container.id[:12],
                node,
            )
        else:
            logger.info(
                "job %s runs on node %s; removing its stale container %s from node %s",
                container.job,
                record.node,
                container.id[:12],
                node,
            )
