"""Periodic heartbeats: node telemetry and container inventory on `<prefix>.node.<node>.hb`."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

from node_agent.collectors import select_collectors
from node_agent.devices import DEV_ROOT, list_devices
from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from node_agent.reservations import (
    LIMITS_CHANGED_ACTION,
    Limits,
    ReservationTracker,
)
from node_agent.telemetry import Telemetry, TelemetrySampler
from schemas.messages import (
    Accelerator,
    ContainerEvent,
    ContainerInfo,
    Heartbeat,
    encode,
)

logger = logging.getLogger(__name__)

# Returns whether the message was sent.
Publish = Callable[[str, bytes], Awaitable[bool]]
# One thread reads the container inventory, the other samples the telemetry.
HEARTBEAT_THREADS = 2
T = TypeVar("T")


class LinkFields(NamedTuple):
    """The link state a heartbeat carries; see Heartbeat in schemas.messages."""

    link_rate_bps: float | None = None
    broker_rtt_ms: float | None = None
    connected_since: float | None = None
    next_disconnect_at: float | None = None


class OutageLog:
    """Log the first failure of a run of failures as a warning, and its end.

    Both formats take the node as their first argument.
    """

    def __init__(self, warning: str, recovery: str) -> None:
        self._warning = warning
        self._recovery = recovery
        self._failing = False

    def failed(self, node: str, *details: object) -> None:
        if not self._failing:
            logger.warning(self._warning, node, *details)
        self._failing = True

    def succeeded(self, node: str) -> None:
        if self._failing:
            logger.info(self._recovery, node)
        self._failing = False


class NodeSample(NamedTuple):
    """Readings of the node outside Docker: telemetry, accelerators, devices."""

    telemetry: Telemetry
    accelerators: list[Accelerator]
    # None when the device folder cannot be read.
    devices: list[str] | None


class HeartbeatPublisher:
    """Publish one Heartbeat every `interval_s` seconds with an increasing `seq`.

    Heartbeats are sent only while `online()` is true, so the sequence goes on
    without a gap after an offline window; `kick()` sends one at once and
    starts the schedule again from it. The container list with the limits
    of its containers, and the telemetry with its vendor tools and device
    paths, are read at the same time in the publisher's own worker threads,
    which `close()` shuts down. When Docker cannot be read, the heartbeat
    carries the last inventory and reservation that could be read, so the
    node stays online while its engine is briefly unreachable. `dev_root`
    is the folder the device paths are read from.
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
        dev_root: Path = DEV_ROOT,
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
        self._dev_root = dev_root
        self._devices_outage = OutageLog(
            "node %s heartbeats carry no device paths until the device folder "
            "can be read (check --dev-root): %s",
            "node %s reads its device paths again",
        )
        self._reservations = ReservationTracker(driver.container_limits)
        self._inventory: list[ContainerInfo] = []
        self._reserved = Limits()
        self._inventory_outage = OutageLog(
            "node %s heartbeats carry the last known inventory: %s",
            "node %s reads its container inventory again",
        )
        self._stop_requested = asyncio.Event()
        # Commands run in asyncio's default executor, which has only
        # min(32, cpu_count + 4) threads in Python 3.11. Slow stops can take
        # all of them for their whole grace, so heartbeats get their own.
        self._executor = ThreadPoolExecutor(
            HEARTBEAT_THREADS, thread_name_prefix=f"heartbeat-{self.node}"
        )

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

    def close(self) -> None:
        """Shut down the worker threads once `run()` has ended.

        It does not wait, so a thread still in a Docker call of a cancelled
        heartbeat ends only when that call returns or times out.
        """
        self._executor.shutdown(wait=False, cancel_futures=True)

    def observe(self, event: ContainerEvent) -> None:
        """Mark a container's limits for a new inspect after `docker update`."""
        if event.action == LIMITS_CHANGED_ACTION:
            self._reservations.forget(event.container_id)

    async def publish_one(self) -> Heartbeat:
        """Build and send a heartbeat; `seq` counts only the ones sent."""
        heartbeat = await self.build()
        if await self._publish(self.subject, encode(heartbeat)):
            self.seq = heartbeat.seq
            logger.debug("node %s sent heartbeat %d", self.node, heartbeat.seq)

        return heartbeat

    async def build(self) -> Heartbeat:
        (containers, reserved), sample = await asyncio.gather(
            self._read_inventory(), self._in_thread(self._sample)
        )

        return Heartbeat(
            node=self.node,
            seq=self.seq + 1,
            sent_at=time.time(),
            interval_s=self.interval_s,
            device_type=self.device_type,
            labels=self.labels,
            reserved_cpus=reserved.cpus,
            reserved_mem_bytes=reserved.mem_bytes,
            containers=containers,
            accelerators=sample.accelerators,
            devices=sample.devices,
            agent_started_at=self.started_at,
            **sample.telemetry._asdict(),
            **self._link()._asdict(),
        )

    def _in_thread(self, function: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, function)

    def _sample(self) -> NodeSample:
        accelerators = [
            accelerator
            for collector in self._collectors
            for accelerator in collector.collect()
        ]

        return NodeSample(self._sampler.sample(), accelerators, self._list_devices())

    def _list_devices(self) -> list[str] | None:
        try:
            devices = list_devices(self._dev_root)
        except OSError as exc:
            self._devices_outage.failed(self.node, exc)
            return None
        self._devices_outage.succeeded(self.node)

        return devices

    async def _read_inventory(self) -> tuple[list[ContainerInfo], Limits]:
        try:
            self._inventory, self._reserved = await self._in_thread(
                self._list_and_reserve
            )
        except AgentError as exc:
            self._inventory_outage.failed(self.node, exc.message)
            return self._inventory, self._reserved
        self._inventory_outage.succeeded(self.node)

        return self._inventory, self._reserved

    def _list_and_reserve(self) -> tuple[list[ContainerInfo], Limits]:
        """List the containers and sum the limits of those that reserve them.

        The sum comes from this list, so it matches the heartbeat's
        inventory. Only containers whose limits are not cached cost an
        inspect.
        """
        containers = self.driver.list_containers()

        return containers, self._reservations.reserved(containers)
