"""Removal of orphan containers, the containers of jobs that have no record.

An orphan is left behind when a node creates a container after the controller
gave up on the command, for example a submit whose create timed out while the
agent was dying. Its name blocks a later submit of the same job, so the
reconciler removes it.

An orphan is removed only while its job's lock is free and, under that lock,
the store still has no record of the job. A submit stores the record before it
sends its create and a remove deletes the record after its remove, both under
the lock, so neither can lose its container here.
"""

import logging

from controller.agents import stop_grace_or_default
from controller.backoff import Backoff
from controller.errors import ControllerError, NotFoundError
from controller.parts import Parts
from controller.registry import NodeRecord
from schemas.messages import ContainerInfo, Remove

logger = logging.getLogger(__name__)


class OrphanRemover:
    """Removes containers of jobs without a record from online nodes."""

    def __init__(self, parts: Parts, backoff: Backoff) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._locks = parts.locks
        self._backoff = backoff
        # IDs of orphan containers already logged, so each is logged once.
        self._logged: set[str] = set()

    def orphans(self, known_jobs: set[str]) -> list[tuple[NodeRecord, ContainerInfo]]:
        """Return each container on an online node whose job is not in `known_jobs`."""
        found = [
            (node, container)
            for node in self._registry.online()
            for container in node.heartbeat.containers
            if container.job not in known_jobs
        ]
        self._logged &= {container.id for _, container in found}

        return found

    async def remove(self, node: NodeRecord, container: ContainerInfo) -> None:
        """Remove one orphan unless its job is busy, backing off or has a record."""
        job = container.job
        if self._locks.busy(job) or not self._backoff.ready(job):
            return
        async with self._locks.hold(job):
            if await self._has_record(job):
                return
            try:
                await self._send_remove(node.name, container)
            except ControllerError as exc:
                self._backoff.failed(job, exc)
                return
        self._backoff.forget(job)

    async def _has_record(self, job: str) -> bool:
        try:
            await self._store.get(job)
        except NotFoundError:
            return False
        return True

    async def _send_remove(self, node: str, container: ContainerInfo) -> None:
        if container.id not in self._logged:
            logger.info(
                "job %s has no record; removing its container %s from node %s",
                container.job,
                container.id[:12],
                node,
            )
            self._logged.add(container.id)
        # NOTE: the bound assumes Docker's default stop grace, because the
        # orphan's own stop grace is not in the heartbeat.
        bound_s = self._agents.timeout_s + stop_grace_or_default(None)
        try:
            await self._agents.call(node, Remove, bound_s=bound_s, job=container.job)
        except NotFoundError:
            logger.debug("node %s had already removed job %s", node, container.job)
