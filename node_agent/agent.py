"""The agent: one node's NATS session, command dispatch, heartbeats and events.

    async with Agent(AgentSettings(node="atlas-01")) as agent:
        await agent.wait_stopped()

The agent handles commands on `<prefix>.node.<node>.cmd`, publishes
heartbeats on `<prefix>.node.<node>.hb` and Docker events of its
containers on `<prefix>.node.<node>.evt.container`.
"""

import asyncio
import enum
import logging
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from node_agent import session
from node_agent.driver import DEFAULT_CLIENT_TIMEOUT_S, DockerDriver
from node_agent.errors import AgentError
from node_agent.events import EventForwarder
from node_agent.handlers import CommandHandler
from node_agent.heartbeat import HeartbeatPublisher
from node_agent.idempotence import ReplyCache
from node_agent.replies import encode_to_fit
from schemas.messages import Reply, command_decoder
from schemas.subjects import DEFAULT_PREFIX, Subjects

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
DEFAULT_DEVICE_TYPE = "x86"
# How long stopping waits for commands that are still running.
STOP_GRACE_S = 30.0
# How long stopping waits for the heartbeat and event tasks to end by themselves.
TASK_STOP_TIMEOUT_S = 5.0
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
        self._client: Client | None = None
        self._subscription: Subscription | None = None
        self._handler = CommandHandler(self.driver)
        self._replies = ReplyCache()
        self._commands: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        self._heartbeats = HeartbeatPublisher(
            self.driver,
            self._publish,
            self.subjects.node_hb(self.node),
            settings.device_type,
            settings.labels,
            settings.heartbeat_interval_s,
        )
        self._events = EventForwarder(
            self.driver, self._publish, self.subjects.node_evt(self.node, "container")
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
            "node-agent %s connected to %s (docker %s)",
            self.node,
            self.settings.nats.url,
            self.docker_version,
        )

    async def _open(self) -> None:
        self.docker_version = await asyncio.to_thread(self.driver.connect)
        self._client = await session.connect(self.settings.nats, self.node)
        await session.check_node_id_free(
            self._client,
            self.subjects.node_cmd(self.node),
            self.node,
            self.settings.node_check_timeout_s,
        )
        await self._events.open()
        self._subscription = await session.subscribe(
            self._client, self.subjects.node_cmd(self.node), self._on_message
        )
        self._tasks = [
            asyncio.create_task(self._heartbeats.run(), name=f"heartbeats-{self.node}"),
            asyncio.create_task(self._events.run(), name=f"events-{self.node}"),
        ]

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

    async def _close(self) -> None:
        self.state = AgentState.STOPPING
        await self._finish_commands()
        await self._stop_tasks()
        if self._client is not None:
            await session.drain(self._client, self.node)
        await asyncio.to_thread(self.driver.close)
        self.state = AgentState.STOPPED
        self._stopped.set()

    async def _finish_commands(self) -> None:
        if self._subscription is not None:
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

    # Commands

    async def _on_message(self, message: Msg) -> None:
        # nats-py runs callbacks of one subscription one after another, so
        # each command runs in its own task: a long stop blocks nothing.
        task = asyncio.create_task(self._serve(message))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _serve(self, message: Msg) -> None:
        reply = await self.reply_to(message.data)
        if message.reply and self._client is not None:
            # nats-py stores the server's max payload from its INFO message.
            data = encode_to_fit(reply, self._client.max_payload)
            await self._publish(message.reply, data)

    async def reply_to(self, data: bytes) -> Reply:
        """Decode one command, run it unless its id was seen, and return the reply."""
        try:
            command = command_decoder.decode(data)
        except msgspec.DecodeError as exc:
            return self._invalid_reply(data, exc)
        try:
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

    async def _publish(self, subject: str, data: bytes) -> None:
        if self._client is not None:
            await session.publish(self._client, subject, data, self.node)


def _peek_id(data: bytes) -> str:
    """Return the `id` of a payload that failed to decode, or "" when it has none."""
    try:
        payload = _peek_decoder.decode(data)
    except msgspec.DecodeError:
        return ""
    if isinstance(payload, dict) and isinstance(payload.get("id"), str):
        return payload["id"]
    return ""
