"""The agent: one node's NATS link, command dispatch, heartbeats and events.

    async with Agent(AgentSettings(node="atlas-01")) as agent:
        await agent.wait_stopped()

The agent handles commands on `<prefix>.node.<node>.cmd`, publishes
heartbeats on `<prefix>.node.<node>.hb`, Docker events of its containers on
`<prefix>.node.<node>.evt.container`, link changes on `evt.link` and rate
changes on `evt.rate`.

The link loop owns the NATS connection. It closes it for the offline part
of each disconnect cycle and reconnects afterwards, and reconnects after a
real loss as well. While offline, container and rate events wait in a
bounded buffer, heartbeats pause and replies are lost. Commands still
running finish, so a command sent again with the same id gets its reply.
When a shaper is set, every message sent and received waits for it.
"""

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from node_agent import session
from node_agent.bandwidth import (
    DEFAULT_BURST_BYTES,
    LinkShaper,
    RatePlan,
    describe_rate,
)
from node_agent.broker_rtt import BrokerRtt
from node_agent.devices import DEV_ROOT
from node_agent.driver import DEFAULT_CLIENT_TIMEOUT_S, DockerDriver
from node_agent.errors import AgentError
from node_agent.events import EventForwarder
from node_agent.handlers import CommandHandler
from node_agent.heartbeat import HeartbeatPublisher, LinkFields
from node_agent.idempotence import ReplyCache
from node_agent.link import (
    RECONNECT_NODE_CHECK_TIMEOUT_S,
    LinkSettings,
    OfflineBuffer,
    clock_time,
    local_time,
    reconnect_retrying,
)
from node_agent.replies import encode_to_fit
from schemas.messages import (
    LinkDownMode,
    LinkEvent,
    Ping,
    Probe,
    RateEvent,
    Reply,
    command_decoder,
    encode,
)
from schemas.subjects import DEFAULT_PREFIX, Subjects

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_DEVICE_TYPE = "x86"
# How long stopping waits for commands that are still running.
STOP_GRACE_S = 30.0
# How long stopping waits for the heartbeat and event tasks to end by themselves.
TASK_STOP_TIMEOUT_S = 5.0
# The NATS default max payload, used until a server reports its own.
DEFAULT_MAX_PAYLOAD = 1024 * 1024
_peek_decoder = msgspec.json.Decoder()


class AgentState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class AgentSettings:
    node: str
    device_type: str = DEFAULT_DEVICE_TYPE
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    prefix: str = DEFAULT_PREFIX
    nats: session.NatsOptions = field(default_factory=session.NatsOptions)
    docker_host: str | None = None
    docker_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S
    node_check_timeout_s: float = session.DEFAULT_NODE_CHECK_TIMEOUT_S
    # Disconnect cycles are off unless asked for; the node-agent command
    # turns them on by default.
    link: LinkSettings = field(default_factory=lambda: LinkSettings(disconnect_s=0))
    # The link rate over time; None sends and receives unshaped.
    bandwidth: RatePlan | None = None
    burst_bytes: int = DEFAULT_BURST_BYTES
    # The folder heartbeats read the node's device paths from. An agent in a
    # container reads the host's /dev where it is mounted.
    dev_root: Path = DEV_ROOT


class Agent:
    """One node's agent; an async context manager that starts and stops it.

    States: NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED. A start that
    fails leaves the agent STOPPED with everything it opened closed again.
    """

    def __init__(self, settings: AgentSettings, driver: DockerDriver | None = None):
        self.settings = settings
        self.node = settings.node
        self.subjects = Subjects(settings.prefix)
        self.driver = driver or DockerDriver(
            settings.node, settings.docker_host, settings.docker_timeout_s
        )
        self.state = AgentState.NEW
        self.docker_version = ""
        self.online = False
        self.connected_since: float | None = None
        self.next_disconnect_at: float | None = None
        self._client: Client | None = None
        self._lost = asyncio.Event()
        self._max_payload = DEFAULT_MAX_PAYLOAD
        self._subscription: Subscription | None = None
        self._handler = CommandHandler(self.driver, link_rate=self._link_rate)
        self._replies = ReplyCache()
        self._commands: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._link_tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        # Set when the agent cannot go on, e.g. its node id was taken while
        # it was offline; the caller then stops it and reports `failure`.
        self.failure: AgentError | None = None
        self._failed = asyncio.Event()
        self._offline_buffer = OfflineBuffer(settings.link.event_buffer)
        self._rate_changed_offline = False
        self._rate_before_offline: float | None = None
        self.shaper = (
            LinkShaper(settings.bandwidth, settings.burst_bytes)
            if settings.bandwidth is not None
            else None
        )
        self._broker_rtt = BrokerRtt(
            lambda: self._client, self.shaper, settings.heartbeat_interval_s
        )
        self._heartbeats = HeartbeatPublisher(
            self.driver,
            self._publish,
            self.subjects.node_hb(self.node),
            settings.device_type,
            settings.labels,
            settings.heartbeat_interval_s,
            online=lambda: self.online,
            link=self._link_fields,
            dev_root=settings.dev_root,
        )
        self._events = EventForwarder(
            self.driver,
            self._publish_event,
            self.subjects.node_evt(self.node, "container"),
            observe=self._heartbeats.observe,
        )

    async def __aenter__(self) -> "Agent":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect to Docker and NATS, then handle commands and send heartbeats.

        Raises AgentError when Docker or NATS is unreachable, or when another
        agent already runs with this node id.
        """
        self._require(AgentState.NEW, "start")
        self.state = AgentState.STARTING
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        self.state = AgentState.RUNNING
        logger.info(
            "node-agent %s connected to %s (docker %s); %s",
            self.node,
            self.settings.nats.url,
            self.docker_version,
            self.settings.link.describe(),
        )

    async def _open(self) -> None:
        self.docker_version = await asyncio.to_thread(self.driver.connect)
        # The event stream opens before commands arrive, so that no event of
        # a container they create is missed.
        await self._connect(self.settings.node_check_timeout_s, self._events.open)
        self._tasks = [
            asyncio.create_task(self._heartbeats.run(), name=f"heartbeats-{self.node}"),
            asyncio.create_task(self._events.run(), name=f"events-{self.node}"),
        ]
        self._link_tasks = [
            asyncio.create_task(self._run_link(), name=f"link-{self.node}"),
            asyncio.create_task(self._broker_rtt.run(), name=f"broker-rtt-{self.node}"),
        ]
        if self.shaper is not None:
            self._link_tasks.append(
                asyncio.create_task(
                    self.shaper.run(self._on_rate_change), name=f"shaper-{self.node}"
                )
            )
        for task in self._link_tasks:
            task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        """Finish running commands, then drain NATS and close Docker."""
        if self.state in (AgentState.STOPPING, AgentState.STOPPED):
            return
        self._require(AgentState.RUNNING, "stop")
        self.state = AgentState.STOPPING
        logger.info("node-agent %s stopping", self.node)
        await self._close()
        logger.info("node-agent %s stopped", self.node)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_failed(self) -> AgentError:
        """Wait until the agent cannot go on; return why."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    async def _close(self) -> None:
        self.state = AgentState.STOPPING
        for task in self._link_tasks:
            task.cancel()
        await asyncio.gather(*self._link_tasks, return_exceptions=True)
        await self._broker_rtt.settle()
        if self.shaper is not None:
            self.shaper.release()
        await self._finish_commands()
        await self._stop_tasks()
        self._heartbeats.close()
        if self._client is not None:
            await session.drain(self._client, self.node)
        await asyncio.to_thread(self.driver.close)
        self.state = AgentState.STOPPED
        self._stopped.set()

    async def _finish_commands(self) -> None:
        if self._subscription is not None and self.online:
            await session.unsubscribe(self._subscription, self.node)
        if self._commands:
            await asyncio.wait(self._commands, timeout=STOP_GRACE_S)

    async def _stop_tasks(self) -> None:
        # Both tasks end by themselves, so no worker thread still uses the
        # Docker client when the driver closes it.
        self._events.close()
        self._heartbeats.stop()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=TASK_STOP_TIMEOUT_S)
        for task in pending:
            logger.warning(
                "node %s: task %s did not end within %s s; cancelling it",
                self.node,
                task.get_name(),
                TASK_STOP_TIMEOUT_S,
            )
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _require(self, state: AgentState, action: str) -> None:
        if self.state is not state:
            raise RuntimeError(
                f"cannot {action} agent {self.node!r} in state {self.state.value!r}"
            )

    # The link

    async def _run_link(self) -> None:
        """Go offline and come back per the disconnect cycle, or after a loss."""
        link = self.settings.link
        while True:
            planned = await self._wait_until_link_ends()
            down_at = time.monotonic()
            mode: LinkDownMode
            if planned:
                mode = link.mode
                return_at = down_at + link.reconnect_s
                await self._go_offline(mode, clock_time(return_at))
                logger.info(
                    "node %s: link down (%s) until %s (%g s)",
                    self.node,
                    mode,
                    local_time(clock_time(return_at)),
                    link.reconnect_s,
                )
                await asyncio.sleep(max(0.0, return_at - time.monotonic()))
            else:
                mode = "lost"
                self.online = False
                self._client = None
                logger.warning(
                    "node %s lost its NATS connection; reconnecting with backoff "
                    "up to %g s between attempts",
                    self.node,
                    link.reconnect_max_wait_s,
                )
            try:
                await self._reconnect()
            except AgentError as exc:
                logger.error("node %s cannot reconnect: %s", self.node, exc.message)
                self.failure = exc
                self._failed.set()
                return
            await self._came_back(mode, time.monotonic() - down_at)

    async def _wait_until_link_ends(self) -> bool:
        """Wait for the planned disconnect (True) or a lost connection (False)."""
        timeout_s = None
        if self.next_disconnect_at is not None:
            timeout_s = max(0.0, self.next_disconnect_at - time.time())
        try:
            await asyncio.wait_for(self._lost.wait(), timeout_s)
        except TimeoutError:
            return True
        return False

    async def _go_offline(self, mode: LinkDownMode, planned_return: float) -> None:
        # From here on events wait in the buffer and heartbeats pause.
        self.online = False
        client, self._client = self._client, None
        if client is None:
            return
        if mode == "abrupt":
            await session.drop(client, self.node)
            return
        event = LinkEvent(
            node=self.node,
            state="down",
            time=time.time(),
            mode=mode,
            planned_return=planned_return,
        )
        try:
            await self._transmit(
                client, self.subjects.node_evt(self.node, "link"), encode(event)
            )
        finally:
            # Also when the agent stops while the event waits for the shaper.
            await session.close(client, self.node)

    async def _reconnect(self) -> None:
        url = self.settings.nats.url
        retrying = reconnect_retrying(
            self.settings.link.reconnect_max_wait_s, self.node, url
        )
        async for attempt in retrying:
            with attempt:
                # Another agent may have started with this node id meanwhile.
                await self._connect(RECONNECT_NODE_CHECK_TIMEOUT_S)

    async def _connect(
        self,
        node_check_timeout_s: float,
        before_subscribe: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Connect, check that the node id is free, then take commands."""
        lost = asyncio.Event()
        client = await session.connect(self.settings.nats, self.node, lost.set)
        subject = self.subjects.node_cmd(self.node)
        try:
            await session.check_node_id_free(
                client, subject, self.node, node_check_timeout_s
            )
            if before_subscribe is not None:
                await before_subscribe()
            subscription = await session.subscribe(client, subject, self._on_message)
        except BaseException:
            await session.close(client, self.node)
            raise
        self._lost = lost
        self._client = client
        self._subscription = subscription
        self._went_online(client)

    def _went_online(self, client: Client) -> None:
        self.online = True
        self._max_payload = client.max_payload
        now = time.time()
        self.connected_since = now
        self.next_disconnect_at = None
        if self.settings.link.cycles:
            self.next_disconnect_at = now + self.settings.link.disconnect_s

    async def _came_back(self, mode: LinkDownMode, offline_s: float) -> None:
        kept, dropped = self._offline_buffer.take()
        event = LinkEvent(
            node=self.node,
            state="up",
            time=time.time(),
            mode=mode,
            offline_s=offline_s,
            next_disconnect_at=self.next_disconnect_at,
            buffered_events=len(kept),
            dropped_events=dropped,
        )
        next_disconnect = (
            f"next disconnect at {local_time(self.next_disconnect_at)}"
            if self.next_disconnect_at is not None
            else "no disconnect planned"
        )
        logger.info(
            "node %s: link up after %.2f s offline (%s); %s",
            self.node,
            offline_s,
            mode,
            next_disconnect,
        )
        if dropped:
            logger.warning(
                "node %s: the offline buffer was full; dropped the %d oldest events",
                self.node,
                dropped,
            )
        await self._publish(self.subjects.node_evt(self.node, "link"), encode(event))
        for subject, data in kept:
            await self._publish_event(subject, data)
        if self._rate_changed_offline and self.shaper is not None:
            self._rate_changed_offline = False
            await self._publish_rate(self._rate_before_offline, self.shaper.rate_bps)
        self._heartbeats.kick()

    def _link_rate(self) -> float | None:
        return self.shaper.rate_bps if self.shaper is not None else None

    def _link_fields(self) -> LinkFields:
        return LinkFields(
            link_rate_bps=self._link_rate(),
            broker_rtt_ms=self._broker_rtt.last_ms,
            connected_since=self.connected_since,
            next_disconnect_at=self.next_disconnect_at,
        )

    async def _on_rate_change(self, previous_bps: float | None, rate_bps: float):
        assert self.shaper is not None
        # A trace changes the rate every second or so, too often for INFO.
        level = (
            logging.DEBUG
            if previous_bps is not None and self.shaper.source == "trace"
            else logging.INFO
        )
        logger.log(
            level,
            "node %s: link rate %s (%s)",
            self.node,
            describe_rate(rate_bps),
            self.shaper.source,
        )
        if not self.online:
            # Rate changes while offline become one event on return, so they
            # do not push container events out of the offline buffer.
            if not self._rate_changed_offline:
                self._rate_changed_offline = True
                self._rate_before_offline = previous_bps
            return
        await self._publish_rate(previous_bps, rate_bps)

    async def _publish_rate(self, previous_bps: float | None, rate_bps: float):
        assert self.shaper is not None
        event = RateEvent(
            node=self.node,
            time=time.time(),
            rate_bps=rate_bps,
            previous_bps=previous_bps,
            source=self.shaper.source,
        )
        await self._publish(self.subjects.node_evt(self.node, "rate"), encode(event))

    # Commands

    async def _on_message(self, message: Msg) -> None:
        # nats-py runs callbacks of one subscription one after another, so
        # the downlink shaper delays each message in turn, and each command
        # runs in its own task: a long stop blocks nothing.
        if self.shaper is not None:
            await self.shaper.receive(len(message.data))
        task = asyncio.create_task(self._serve(message))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _serve(self, message: Msg) -> None:
        reply = await self.reply_to(message.data)
        if not message.reply:
            return
        if not self.online:
            logger.warning(
                "node %s: the reply to command %s is lost: the link is down; "
                "the command sent again gets it",
                self.node,
                reply.id,
            )
            return
        # nats-py stores the server's max payload from its INFO message.
        await self._publish(message.reply, encode_to_fit(reply, self._max_payload))

    async def reply_to(self, data: bytes) -> Reply:
        """Decode one command, run it unless its id was seen, and return the reply."""
        try:
            command = command_decoder.decode(data)
        except msgspec.DecodeError as exc:
            return self._invalid_reply(data, exc)
        try:
            if isinstance(command, Ping | Probe):
                # They change nothing, and probe replies are large.
                return await self._handler.handle(command)
            return await self._replies.run(
                command.id, lambda: self._handler.handle(command)
            )
        except Exception:
            logger.exception(
                "node %s command %s failed unexpectedly", self.node, command.id
            )
            return self._handler.error_reply(
                command.id,
                AgentError(
                    "internal",
                    f"command {command.id!r} failed unexpectedly; see the agent's log",
                ),
            )

    def _invalid_reply(self, data: bytes, exc: msgspec.DecodeError) -> Reply:
        command_id = _peek_id(data)
        logger.warning(
            "node %s rejected an invalid command (id %r): %s",
            self.node,
            command_id,
            exc,
        )
        error = AgentError(
            "invalid",
            f"cannot decode the command sent to {self.subjects.node_cmd(self.node)}: "
            f"{exc}; send a create, start, stop, pause, unpause, remove, inspect, "
            "list, logs or ping command as JSON",
        )

        return self._handler.error_reply(command_id, error)

    async def _publish(self, subject: str, data: bytes) -> bool:
        """Send through the shaper; drop the message if the link is down."""
        client = self._client
        if not self.online or client is None:
            return False
        return await self._transmit(client, subject, data)

    async def _publish_event(self, subject: str, data: bytes) -> bool:
        """Send through the shaper; keep the message if the link is down."""
        client = self._client
        online = self.online and client is not None
        if online and await self._transmit(client, subject, data):
            return True
        self._offline_buffer.add(subject, data)
        return False

    async def _transmit(self, client: Client, subject: str, data: bytes) -> bool:
        if self.shaper is not None:
            await self.shaper.send(len(data))
        if client.is_closed:
            return False
        return await session.publish(client, subject, data, self.node)


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "task %s ended unexpectedly", task.get_name(), exc_info=task.exception()
        )


def _peek_id(data: bytes) -> str:
    """Return the `id` of a payload that failed to decode, or "" when it has none."""
    try:
        payload = _peek_decoder.decode(data)
    except msgspec.DecodeError:
        return ""
    if isinstance(payload, dict) and isinstance(payload.get("id"), str):
        return payload["id"]
    return ""
