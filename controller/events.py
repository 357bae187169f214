"""Publishing of the controller's events: job transitions and node state changes."""

import logging
import time

from nats.aio.client import Client

from controller.connection import nats_errors
from controller.registry import Transition
from controller.store import JobRecord
from schemas.messages import JobEvent, NodeEvent, encode
from schemas.subjects import Subjects

logger = logging.getLogger(__name__)


class EventPublisher:
    """Publishes JobEvent on `<prefix>.job.<job>.evt` and NodeEvent on
    `<prefix>.node.<node>.evt.<state>`."""

    def __init__(self, client: Client, subjects: Subjects) -> None:
        self._client = client
        self._subjects = subjects

    async def job(self, record: JobRecord, state: str | None = None) -> None:
        """Publish the job's current state, or `state` when given (e.g. removed)."""
        event = JobEvent(
            job=record.name,
            state=state or record.state,
            desired=record.desired,
            time=time.time(),
            node=record.node,
            message=record.message,
        )
        logger.info(
            "job %s is %s (desired %s) on node %s",
            event.job,
            event.state,
            event.desired,
            event.node,
        )
        with nats_errors(f"publish event of job {record.name!r}"):
            await self._client.publish(
                self._subjects.job_evt(record.name), encode(event)
            )

    async def node(self, transition: Transition) -> None:
        event = NodeEvent(
            node=transition.node,
            state=transition.state.value,
            time=time.time(),
            message=transition.message,
        )
        subject = self._subjects.node_evt(transition.node, transition.state.value)
        with nats_errors(f"publish event of node {transition.node!r}"):
            await self._client.publish(subject, encode(event))
