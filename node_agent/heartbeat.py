"""Periodic heartbeats: node telemetry and container inventory on `<prefix>.node.<node>.hb`."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from node_agent.collectors import select_collectors
from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from node_agent.telemetry import Telemetry, TelemetrySampler
from schemas.messages import Accelerator, ContainerInfo, Heartbeat, encode

logger = logging.getLogger(__name__)

# Returns whether the message was sent.
Publish = Callable[[str, bytes], Awaitable[bool]]


class LinkFields(NamedTuple):
    """The link state a heartbeat carries; see Heartbeat in schemas.messages."""

    link_rate_bps: float | None = None
    connected_since: float | None = None
    next_disconnect_at: float | None = None


class HeartbeatPublisher:
    """Publish one Heartbeat every `interval_s` seconds with an increasing `seq`.

    Heartbeats are sent only while `online()` is true, so the sequence goes on
    without a gap after an offline window; `kick()` sends one at once and
    starts the schedule again from it. The container list, and the telemetry
    with its vendor tools, are read at the same time in worker threads. When
    Docker cannot be read, the heartbeat carries the last inventory that
    could be read, so the node stays online while its engine is briefly
    unreachable.
    """

    def __init__(
        self,
        driver: DockerDriver,
        publish: Publish,
        subject: str,
        device_type: str,
        labels: dict[str, str],
        interval_s: float,
        online: Callable[[], bool] = lambda: True,
        link: Callable[[], LinkFields] = LinkFields,
    ) -> None:
        self.driver = driver
        self.node = driver.node
        self.subject = subject
        self.device_type = device_type
        self.labels = labels
        self.interval_s = interval_s
        self.seq = 0
        self.started_at = time.time()
        self._publish = publish
        self._online = online
        self._link = link
        self._wake = asyncio.Event()
        self._sampler = TelemetrySampler()
        self._collectors = select_collectors(device_type, self.node)
        self._inventory: list[ContainerInfo] = []
        self._inventory_failing = False
        self._stop_requested = asyncio.Event()

    async def run(self) -> None:
        """Publish heartbeats on a fixed schedule until `stop()`."""
        next_at = time.monotonic()
        while not self._stop_requested.is_set():
            if self._online():
                await self.publish_one()
            next_at += self.interval_s
            delay_s = next_at - time.monotonic()
            if delay_s < 0:
                # A slow engine made this heartbeat late: skip the missed slots.
                next_at = time.monotonic()
                delay_s = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay_s)
            if self._wake.is_set():
                self._wake.clear()
                next_at = time.monotonic()

    def kick(self) -> None:
        """Send a heartbeat now, and the next ones an interval apart from it."""
        self._wake.set()

    def stop(self) -> None:
        """End `run()` after the heartbeat in progress, so no thread outlives it."""
        self._stop_requested.set()
        self._wake.set()

    async def publish_one(self) -> Heartbeat:
        """Build and send a heartbeat; `seq` counts only the ones sent."""
        heartbeat = await self.build()
        if await self._publish(self.subject, encode(heartbeat)):
            self.seq = heartbeat.seq
            logger.debug("node %s sent heartbeat %d", self.node, heartbeat.seq)

        return heartbeat

    async def build(self) -> Heartbeat:
        containers, (telemetry, accelerators) = await asyncio.gather(
            self._read_inventory(), asyncio.to_thread(self._sample)
        )

        return Heartbeat(
            node=self.node,
            seq=self.seq + 1,
            sent_at=time.time(),
            interval_s=self.interval_s,
            device_type=self.device_type,
            labels=self.labels,
            containers=containers,
            accelerators=accelerators,
            agent_started_at=self.started_at,
            **telemetry._asdict(),
            **self._link()._asdict(),
        )

    def _sample(self) -> tuple[Telemetry, list[Accelerator]]:
        accelerators = [
            accelerator
            for collector in self._collectors
            for accelerator in collector.collect()
        ]

        return self._sampler.sample(), accelerators

    async def _read_inventory(self) -> list[ContainerInfo]:
        try:
            self._inventory = await asyncio.to_thread(self.driver.list_containers)
        except AgentError as exc:
            if not self._inventory_failing:
                logger.warning(
                    "node %s heartbeats carry the last known inventory: %s",
                    self.node,
                    exc.message,
                )
            self._inventory_failing = True
            return self._inventory
        if self._inventory_failing:
            logger.info("node %s reads its container inventory again", self.node)
        self._inventory_failing = False

        return self._inventory
