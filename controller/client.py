"""The CLI's client of the controller API and of the event subjects."""

import asyncio
import logging
from collections.abc import AsyncIterator

import msgspec
from nats.aio.client import Client

from controller.codec import decode
from controller.connection import NatsOptions, connect_once, nats_errors
from controller.errors import (
    CommandTimeoutError,
    UnavailableError,
    error_from_info,
)
from schemas.messages import ApiReply, api_reply_decoder, encode
from schemas.subjects import Subjects

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 30.0
_event_decoder = msgspec.json.Decoder(dict)


class ApiClient:
    """A NATS connection for one CLI command: `async with ApiClient(...) as api:`."""

    def __init__(self, options: NatsOptions, prefix: str) -> None:
        self.options = options
        self.subjects = Subjects(prefix)
        self._client: Client | None = None

    async def __aenter__(self) -> "ApiClient":
        self._client = await connect_once(self.options, "dsched-cli")
        return self

    async def __aexit__(self, *exc_info) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def call(
        self,
        verb: str,
        request: msgspec.Struct,
        timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        extra_s: float = 0.0,
    ) -> ApiReply:
        """Send one API request and return the ok reply; an error reply raises.

        The wait for the reply is `timeout_s` plus `extra_s`, and a timeout
        error names `timeout_s`, the value that the user can change.
        """
        no_controller = UnavailableError(
            f"no controller responds on {self.options.url}; start it with "
            "`controller serve`"
        )
        timeout = CommandTimeoutError(
            f"the controller did not respond to the {verb} request within "
            f"{timeout_s:g} s; check its log, or pass a larger --timeout"
        )
        with nats_errors(
            f"{verb} request", no_responders=no_controller, timeout=timeout
        ):
            message = await self._connected().request(
                self.subjects.api(verb), encode(request), timeout=timeout_s + extra_s
            )
        reply = decode(api_reply_decoder, message.data, f"reply to {verb} request")
        if not reply.ok:
            raise error_from_info(reply.error)
        return reply

    async def events(self) -> AsyncIterator[tuple[str, dict]]:
        """Yield (subject, event) for every node and job event until cancelled."""
        queue: asyncio.Queue = asyncio.Queue()

        async def enqueue(message) -> None:
            await queue.put(message)

        client = self._connected()
        with nats_errors("subscribe to events"):
            for subject in (
                self.subjects.all_node_events,
                self.subjects.all_job_events,
            ):
                await client.subscribe(subject, cb=enqueue)
            await client.flush()
        while True:
            message = await queue.get()
            try:
                yield message.subject, _event_decoder.decode(message.data)
            except msgspec.DecodeError:
                logger.warning(
                    "skipping an event that is not JSON on %s", message.subject
                )

    def _connected(self) -> Client:
        if self._client is None:
            raise RuntimeError("use ApiClient in `async with` before sending requests")
        return self._client
