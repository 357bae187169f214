"""Periodic heartbeats: node telemetry and container inventory on `<prefix>.node.<node>.hb`."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from node_agent.telemetry import TelemetrySampler
from schemas.messages import ContainerInfo, Heartbeat, encode

logger = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]


class HeartbeatPublisher:
    """Publish one Heartbeat every `interval_s` seconds with an increasing `seq`.

    The container list is read in a worker thread. When Docker cannot be
    read, the heartbeat carries the last inventory that could be read, so
    the node stays online while its engine is briefly unreachable.
    """

    def __init__(
        self,
        driver: DockerDriver,
        publish: Publish,
        subject: str,
        device_type: str,
        labels: dict[str, str],
        interval_s: float,
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
        self._sampler = TelemetrySampler()
        self._inventory: list[ContainerInfo] = []
        self._inventory_failing = False
        self._stop_requested = asyncio.Event()

    async def run(self) -> None:
        """Publish heartbeats on a fixed schedule until `stop()`."""
        next_at = time.monotonic()
        while not self._stop_requested.is_set():
            await self.publish_one()
            next_at += self.interval_s
            delay_s = next_at - time.monotonic()
            if delay_s < 0:
                # A slow engine made this heartbeat late: skip the missed slots.
                next_at = time.monotonic()
                delay_s = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay_s)

    def stop(self) -> None:
        """End `run()` after the heartbeat in progress, so no thread outlives it."""
        self._stop_requested.set()

    async def publish_one(self) -> Heartbeat:
        heartbeat = await self.build()
        await self._publish(self.subject, encode(heartbeat))
        logger.debug("node %s sent heartbeat %d", self.node, heartbeat.seq)

        return heartbeat

    async def build(self) -> Heartbeat:
        containers = await self._read_inventory()
        telemetry = self._sampler.sample()
        self.seq += 1

        return Heartbeat(
            node=self.node,
            seq=self.seq,
            sent_at=time.time(),
            interval_s=self.interval_s,
            device_type=self.device_type,
            labels=self.labels,
            containers=containers,
            agent_started_at=self.started_at,
            **telemetry._asdict(),
        )

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
        self._stop_requested = asyncio.Event()

        return self._inventory
