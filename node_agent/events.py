"""Forwarding of Docker events of the node's containers to NATS.

Docker's event stream blocks while it waits, so a thread reads it and hands
each event to the event loop with `call_soon_threadsafe`. The loop then
publishes a ContainerEvent on `<prefix>.node.<node>.evt.container`.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from node_agent.heartbeat import Publish
from node_agent.translate import JOB_LABEL
from schemas.messages import ContainerEvent, encode

logger = logging.getLogger(__name__)

REOPEN_DELAY_S = 1.0
NANOSECONDS_PER_SECOND = 1_000_000_000


class EventForwarder:
    """Read Docker events of this node's containers and publish them.

    When the stream ends without `close()` (the engine restarted), the
    forwarder reopens it after REOPEN_DELAY_S from the second of the last
    event it saw. No event in between is lost, but events of that second
    can arrive twice. `observe` receives each event before it is published,
    also while the link is offline.
    """

    def __init__(
        self,
        driver: DockerDriver,
        publish: Publish,
        subject: str,
        observe: Callable[[ContainerEvent], None] = lambda event: None,
    ) -> None:
        self.driver = driver
        self.node = driver.node
        self.subject = subject
        self._publish = publish
        self._observe = observe
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._stream = None
        self._closing = False
        self._last_time_s: int | None = None

    async def open(self) -> None:
        """Open the event stream and start the thread that reads it."""
        loop = asyncio.get_running_loop()
        since = self._last_time_s
        self._stream = await asyncio.to_thread(self.driver.events, since)
        reader = threading.Thread(
            target=self._read,
            args=(loop, self._stream),
            name=f"docker-events-{self.node}",
            daemon=True,
        )
        reader.start()

    async def run(self) -> None:
        """Publish events until `close()`; reopen the stream when it ends."""
        while True:
            event = await self._queue.get()
            if event is not None:
                await self._forward(event)
                continue
            if self._closing:
                return
            logger.warning(
                "node %s: Docker event stream ended; reopening in %s s",
                self.node,
                REOPEN_DELAY_S,
            )
            await self._reopen()

    def close(self) -> None:
        """End the stream; `run()` returns once the reader thread has stopped."""
        self._closing = True
        if self._stream is not None:
            self._stream.close()

    async def _reopen(self) -> None:
        while not self._closing:
            await asyncio.sleep(REOPEN_DELAY_S)
            try:
                await self.open()
            except AgentError as exc:
                logger.debug("node %s: reopening events failed: %s", self.node, exc)
                continue
            if self._closing:
                self.close()  # close() ran while the stream was opening
            return
        self._queue.put_nowait(None)  # closed before a new stream opened: end run()

    def _read(self, loop: asyncio.AbstractEventLoop, stream) -> None:
        try:
            for event in stream:
                loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            return  # the event loop closed while the stream was still open
        except Exception as exc:  # the stream raises whatever its socket raises
            if not self._closing:
                logger.warning(
                    "node %s: reading Docker events failed: %s", self.node, exc
                )
        # A RuntimeError here means the event loop closed first, so no task reads.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def _forward(self, event: dict[str, Any]) -> None:
        message = container_event(self.node, event)
        self._last_time_s = int(message.time)
        self._observe(message)
        await self._publish(self.subject, encode(message))
        logger.debug(
            "node %s forwarded event %s of job %s",
            self.node,
            message.action,
            message.job,
        )


def container_event(node: str, event: dict[str, Any]) -> ContainerEvent:
    """Build a ContainerEvent from one decoded Docker event."""
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    exit_code = attributes.get("exitCode")
    time_ns = (
        event.get("timeNano") or int(event.get("time", 0)) * NANOSECONDS_PER_SECOND
    )

    return ContainerEvent(
        node=node,
        job=attributes.get(JOB_LABEL, ""),
        container_id=actor.get("ID") or event.get("id", ""),
        action=event.get("Action") or event.get("status", ""),
        time=time_ns / NANOSECONDS_PER_SECOND,
        exit_code=None if exit_code is None else int(exit_code),
    )
