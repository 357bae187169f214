"""The request/reply API on `<prefix>.api.<verb>`, one handler per verb.

Every request is decoded strictly, and every reply is an ApiReply: ok with
the result, or an error with a stable code and a message a person can act on.
"""

import asyncio
import logging

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from controller.codec import decode
from controller.connection import nats_errors
from controller.errors import ControllerError, NotFoundError
from controller.lifecycle import Lifecycle
from controller.parts import Parts
from controller.scheduler import Scheduler
from controller.submit import Submitter
from schemas.messages import (
    ApiReply,
    ErrorInfo,
    JobRequest,
    ListRequest,
    LogsRequest,
    SubmitRequest,
    encode,
)
from schemas.subjects import API_VERBS, Subjects

logger = logging.getLogger(__name__)

QUEUE_GROUP = "dsched-controller"

_DECODERS = {
    "submit": msgspec.json.Decoder(SubmitRequest),
    "jobs": msgspec.json.Decoder(ListRequest),
    "nodes": msgspec.json.Decoder(ListRequest),
    "logs": msgspec.json.Decoder(LogsRequest),
}
_JOB_REQUEST_DECODER = msgspec.json.Decoder(JobRequest)


class Api:
    """Serves every API verb in a queue group, one task per request."""

    def __init__(self, parts: Parts, scheduler: Scheduler) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._submitter = Submitter(parts, scheduler)
        self._lifecycle = Lifecycle(parts)
        self._tasks: set[asyncio.Task] = set()
        self._subscriptions: list[Subscription] = []

    async def serve(self, client: Client, subjects: Subjects) -> None:
        for verb in API_VERBS:
            subscription = await client.subscribe(
                subjects.api(verb), queue=QUEUE_GROUP, cb=self._spawn(verb)
            )
            self._subscriptions.append(subscription)

    async def stop_serving(self, timeout_s: float) -> None:
        """Take no more requests, and wait up to `timeout_s` for those in progress."""
        try:
            with nats_errors("unsubscribe from the API subjects"):
                for subscription in self._subscriptions:
                    await subscription.unsubscribe()
        except ControllerError as exc:
            logger.warning("%s; requests in progress may still get replies", exc)
        self._subscriptions.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)

    def _spawn(self, verb: str):
        async def on_request(message: Msg) -> None:
            task = asyncio.create_task(self._respond(verb, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_request

    async def _respond(self, verb: str, message: Msg) -> None:
        request = None
        try:
            request = decode(_decoder(verb), message.data or b"{}", f"{verb} request")
            reply = await self._handle(verb, request)
        except ControllerError as exc:
            job = _job_of(request)
            if job is None:
                logger.info("%s request failed: %s", verb, exc)
            else:
                logger.info("%s request for job %s failed: %s", verb, job, exc)
            error = exc.info()
            if isinstance(exc, NotFoundError):
                error = await self._with_copies(error, request)
            reply = ApiReply(ok=False, error=error)
        except Exception:
            logger.exception("%s request failed with an unexpected error", verb)
            error = ErrorInfo(
                code="internal",
                message=f"the controller failed on a {verb} request; see its log",
            )
            reply = ApiReply(ok=False, error=error)
        if message.reply:
            await message.respond(encode(reply))

    async def _with_copies(self, info: ErrorInfo, request) -> ErrorInfo:
        """Name the copies when a request names a job submitted with a count."""
        job = _job_of(request)
        if job is None or isinstance(request, SubmitRequest):
            return info
        try:
            records = await self._store.list()
        except ControllerError:
            return info
        copies = [record.name for record in records if record.group == job]
        if not copies:
            return info
        return ErrorInfo(
            code=info.code,
            message=f"{info.message}; {job} was submitted with a count and its "
            f"copies are jobs of their own: {', '.join(copies)}",
        )

    async def _handle(self, verb: str, request) -> ApiReply:
        match verb:
            case "submit":
                return await self._submitter.submit(request)
            case "jobs":
                records = await self._store.list()
                return ApiReply(ok=True, jobs=[record.view() for record in records])
            case "nodes":
                nodes = self._registry.nodes()
                return ApiReply(ok=True, nodes=[node.view() for node in nodes])
            case "inspect":
                return await self._lifecycle.inspect(request)
            case "logs":
                return await self._lifecycle.logs(request)
            case _:
                return await self._lifecycle.change(verb, request)


def _decoder(verb: str) -> msgspec.json.Decoder:
    return _DECODERS.get(verb, _JOB_REQUEST_DECODER)


def _job_of(request) -> str | None:
    """Return the job a decoded request names, or None for requests without one."""
    if isinstance(request, SubmitRequest):
        return request.spec.name
    return getattr(request, "job", None)
