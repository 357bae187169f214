"""The submit request: place the job's copies, store them, create their containers.

Every copy is placed before anything is stored, so a job that does not fit
leaves nothing behind. Then every copy is stored with its node, under the
locks of all copies, and their containers are created at once. If one
create fails, every copy is removed again. If the controller stops midway,
the stored records name their nodes, so the reconciler of the next
controller creates or adopts each container.
"""

import asyncio
import contextlib
import logging

from controller.errors import (
    CommandTimeoutError,
    ConflictError,
    ControllerError,
    NotFoundError,
)
from controller.parts import Parts
from controller.scheduler import Scheduler
from controller.store import JobRecord, observed_fields
from schemas.job import JobSpec
from schemas.messages import ApiReply, Create, SubmitRequest

logger = logging.getLogger(__name__)


class Submitter:
    """Handles submit requests. A failed submit leaves no record and no container."""

    def __init__(self, parts: Parts, scheduler: Scheduler) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._events = parts.events
        self._locks = parts.locks
        self._scheduler = scheduler

    async def submit(self, request: SubmitRequest) -> ApiReply:
        spec = request.spec
        records = await self._store.list()
        check_names_free(spec, records)
        if request.dry_run:
            return ApiReply(ok=True, plan=self._scheduler.plan(spec, records))
        nodes = self._scheduler.place(spec, records)
        group = spec.name if spec.count > 1 else None
        async with contextlib.AsyncExitStack() as locks:
            for name in sorted(spec.copy_names()):
                await locks.enter_async_context(self._locks.hold(name))
            submitted = await self._store_and_create(request, nodes, group)
        for record in submitted:
            await self._events.job(record)
        views = [record.view() for record in submitted]
        return ApiReply(ok=True, job=views[0], jobs=views if group else None)

    async def _store_and_create(
        self, request: SubmitRequest, nodes: list[str], group: str | None
    ) -> list[JobRecord]:
        """Store every copy with its node, then create their containers.

        The caller holds the lock of every copy.
        """
        stored: list[JobRecord] = []
        try:
            for copy, node in zip(request.spec.copies(), nodes, strict=True):
                record = await self._store.create(
                    copy, "running", state="pending", node=node, group=group
                )
                stored.append(record)
                logger.info("job %s placed on node %s", copy.name, node)
            if not request.wait:
                return stored
            results = await asyncio.gather(
                *(self._create(record, request.timeout_s) for record in stored),
                return_exceptions=True,
            )
        except ControllerError:
            await self._undo(stored)
            raise
        failures = [error for error in results if isinstance(error, BaseException)]
        if failures:
            await self._undo(stored)
            raise failures[0]
        return results

    async def _undo(self, records: list[JobRecord]) -> None:
        """Remove the containers and records of a submit that failed.

        The caller holds the lock of every copy. A container whose remove
        fails is left to the orphan remover, which removes containers without
        a record.
        """
        for record in reversed(records):
            try:
                with contextlib.suppress(NotFoundError):
                    await self._agents.remove(record.node, record.spec)
            except ControllerError as exc:
                logger.warning(
                    "job %s: remove failed while undoing its submit: %s",
                    record.name,
                    exc,
                )
            await self._store.delete(record.name)

    async def _create(self, record: JobRecord, timeout_s: float) -> JobRecord:
        """Create and start the job's container; return the updated record."""
        node, spec = record.node, record.spec
        try:
            reply = await self._agents.call(node, Create, bound_s=timeout_s, spec=spec)
        except CommandTimeoutError:
            await self._remove_late_container(node, spec)
            raise
        observed = {"state": "running"}
        if reply.container is not None:
            observed = observed_fields(reply.container)
        return await self._store.update(spec.name, **observed)

    async def _remove_late_container(self, node: str, spec: JobSpec) -> None:
        # The agent may still finish the create after the reply timed out, so a
        # remove follows, to leave no container without a record.
        # NOTE: if the remove reaches the agent before the create finishes, the
        # container stays behind under the job's name on that node.
        try:
            await self._agents.remove(node, spec)
        except ControllerError as exc:
            logger.warning(
                "job %s: create timed out on node %s and the clean-up remove "
                "failed: %s; remove the container by hand",
                spec.name,
                node,
                exc,
            )


def check_names_free(spec: JobSpec, records: list[JobRecord]) -> None:
    existing = sorted(set(spec.copy_names()) & {record.name for record in records})
    if not existing:
        return
    names = ", ".join(repr(name) for name in existing)
    if len(existing) == 1:
        message = f"job {names} already exists; remove it first or choose another name"
    else:
        message = (
            f"jobs {names} already exist; remove them first or choose another name"
        )
    raise ConflictError(message)
