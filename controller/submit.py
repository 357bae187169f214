"""The submit request: place the job's copies, store them, create their containers.

Every copy is placed before anything is stored, so a job that does not fit
leaves nothing behind. A copy that then fails to start takes the copies
submitted before it down with it.
"""

import contextlib
import logging

from controller.errors import CommandTimeoutError, ControllerError, NotFoundError
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
        if request.dry_run:
            return ApiReply(ok=True, plan=self._scheduler.plan(spec, records))
        nodes = self._scheduler.place(spec, records)
        group = spec.name if spec.count > 1 else None
        submitted: list[JobRecord] = []
        try:
            for copy, node in zip(spec.copies(), nodes, strict=True):
                submitted.append(await self._submit_one(request, copy, node, group))
        except ControllerError:
            await self._undo(submitted)
            raise
        views = [record.view() for record in submitted]
        return ApiReply(ok=True, job=views[0], jobs=views if group else None)

    async def _submit_one(
        self, request: SubmitRequest, spec: JobSpec, node: str, group: str | None
    ) -> JobRecord:
        async with self._locks.hold(spec.name):
            await self._store.create(spec, "running", state="placing", group=group)
            try:
                record = await self._create_on(node, request, spec)
            except ControllerError:
                await self._store.delete(spec.name)
                raise
        await self._events.job(record)
        return record

    async def _create_on(
        self, node: str, request: SubmitRequest, spec: JobSpec
    ) -> JobRecord:
        logger.info("job %s placed on node %s", spec.name, node)
        if not request.wait:
            return await self._store.update(spec.name, node=node, state="pending")
        observed = await self._create(node, spec, request.timeout_s)
        return await self._store.update(spec.name, node=node, **observed)

    async def _undo(self, records: list[JobRecord]) -> None:
        """Remove copies submitted before a later copy failed.

        A container whose remove fails is left to the orphan remover, which
        removes containers without a record.
        """
        for record in reversed(records):
            async with self._locks.hold(record.name):
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
            await self._events.job(record, state="removed")

    async def _create(self, node: str, spec: JobSpec, timeout_s: float) -> dict:
        """Create and start the container; return the record fields it fills."""
        try:
            reply = await self._agents.call(node, Create, bound_s=timeout_s, spec=spec)
        except CommandTimeoutError:
            await self._remove_late_container(node, spec)
            raise
        container = reply.container
        if container is None:
            return {"state": "running"}
        return observed_fields(container)

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
