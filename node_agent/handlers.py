"""Command handlers: run one decoded command against the driver, build its reply."""

import asyncio
import logging
import time
from collections.abc import Callable

from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from schemas.messages import (
    AnyCommand,
    Create,
    Inspect,
    List,
    Logs,
    Pause,
    Ping,
    Probe,
    Remove,
    Reply,
    Start,
    Stop,
    Unpause,
)

logger = logging.getLogger(__name__)

# The max padding of a probe reply; NATS servers accept payloads of 64 MiB at most.
MAX_PROBE_REPLY_BYTES = 64 * 1024 * 1024


class CommandHandler:
    """Turn commands into driver calls in a worker thread, and results into replies.

    A command whose deadline has passed gets a `timeout` reply without
    acting. Operations already in effect (start a running container, stop a
    stopped one) succeed. Removing a job that has no container is
    `not_found`, as `docker rm` of an unknown name is.
    """

    def __init__(
        self,
        driver: DockerDriver,
        clock: Callable[[], float] = time.time,
        link_rate: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.driver = driver
        self.node = driver.node
        self._clock = clock
        self._link_rate = link_rate

    async def handle(self, command: AnyCommand) -> Reply:
        late_s = self._clock() - command.deadline
        if late_s > 0:
            logger.warning(
                "node %s rejected command %s (%s): deadline passed %.3f s ago",
                self.node,
                command.id,
                command_type(command),
                late_s,
            )
            return self.error_reply(
                command.id,
                AgentError(
                    "timeout",
                    f"command {command.id!r} arrived {late_s:.3f} s after its "
                    "deadline and was not run; send it again with a later deadline",
                ),
            )
        try:
            return await self._dispatch(command)
        except AgentError as exc:
            logger.warning(
                "node %s command %s failed: %s: %s",
                self.node,
                command.id,
                exc.code,
                exc.message,
            )
            return self.error_reply(command.id, exc)

    async def _dispatch(self, command: AnyCommand) -> Reply:
        driver = self.driver
        match command:
            case Create(spec=spec, start=start, pull=pull):
                info = await asyncio.to_thread(driver.create, spec, start, pull)
            case Start(job=job):
                info = await asyncio.to_thread(driver.start, job)
            case Stop(job=job, timeout_s=grace_s):
                info = await asyncio.to_thread(driver.stop, job, grace_s)
            case Pause(job=job):
                info = await asyncio.to_thread(driver.pause, job)
            case Unpause(job=job):
                info = await asyncio.to_thread(driver.unpause, job)
            case Remove(job=job, force=force):
                info = await asyncio.to_thread(driver.remove, job, force)
            case Inspect(job=job):
                info = await asyncio.to_thread(driver.inspect, job)
            case List():
                containers = await asyncio.to_thread(driver.list_containers)
                return self._ok(command, containers=containers)
            case Logs(job=job, tail=tail):
                logs = await asyncio.to_thread(driver.logs, job, tail)
                return self._ok(command, logs=logs)
            case Ping():
                return self._ok(command)
            case Probe(reply_bytes=reply_bytes):
                padding = probe_padding(reply_bytes)
                return self._ok(
                    command, padding=padding, link_rate_bps=self._link_rate()
                )

        return self._ok(command, container=info)

    def _ok(self, command: AnyCommand, **fields) -> Reply:
        logger.debug(
            "node %s command %s (%s) succeeded",
            self.node,
            command.id,
            command_type(command),
        )
        return Reply(id=command.id, node=self.node, ok=True, **fields)

    def error_reply(self, command_id: str, error: AgentError) -> Reply:
        return Reply(id=command_id, node=self.node, ok=False, error=error.to_info())


def command_type(command: AnyCommand) -> str:
    """Return the command's tag on the wire, e.g. "create"."""
    return type(command).__struct_config__.tag


def probe_padding(size: int) -> str:
    """Return `size` characters for a probe reply; reject sizes out of range."""
    if not 0 <= size <= MAX_PROBE_REPLY_BYTES:
        raise AgentError(
            "invalid",
            f"probe reply size {size} is out of range: use 0 to "
            f"{MAX_PROBE_REPLY_BYTES} bytes",
        )
    return "x" * size
