"""The submit request: reserve the job name, place the job, create its container."""

import logging

from controller.errors import CommandTimeoutError, ControllerError
from controller.parts import Parts
from controller.scheduler import place
from controller.store import JobRecord, observed_fields
from schemas.job import JobSpec
from schemas.messages import ApiReply, Create, SubmitRequest

logger = logging.getLogger(__name__)


class Submitter:
    """Handles submit requests. A failed submit leaves no record and no container."""

    def __init__(self, parts: Parts) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._events = parts.events
        self._locks = parts.locks

    async def submit(self, request: SubmitRequest) -> ApiReply:
        spec = request.spec
        async with self._locks.hold(spec.name):
            await self._store.create(spec, "running", state="placing")
            try:
                record = await self._place_and_create(request)
            except ControllerError:
                await self._store.delete(spec.name)
                raise
        await self._events.job(record)
        return ApiReply(ok=True, job=record.view())

    async def _place_and_create(self, request: SubmitRequest) -> JobRecord:
        spec = request.spec
        node = place(spec.placement, self._registry.nodes()).name
        logger.info("job %s placed on node %s", spec.name, node)
        if not request.wait:
            return await self._store.update(spec.name, node=node, state="pending")

        observed = await self._create(node, spec, request.timeout_s)
        return await self._store.update(spec.name, node=node, **observed)

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
