"""Commands to node agents: NATS requests bounded by the command's deadline.

A command without a reply, or one that no agent received, is sent again with
the same id until its deadline. The agent returns its stored first reply for
a repeated id, so a reply lost on an unreliable link does not make it act
twice while the agent still stores that reply. Before each resend the client
asks `is_away` whether the registry has the node offline or lost, and gives
up with NodeOfflineError if so. This check is needed because a subscriber
other than the agent, such as a monitor on `dsched.>`, keeps NATS from
reporting that no agent listens.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from controller.codec import decode
from controller.connection import nats_errors
from controller.errors import CommandTimeoutError, NodeOfflineError, error_from_info
from controller.retries import COMMAND_RESEND_AFTER_S, until_command_deadline
from schemas.job import JobSpec
from schemas.messages import (
    Command,
    ErrorInfo,
    Remove,
    Reply,
    Stop,
    encode,
    reply_decoder,
)
from schemas.subjects import Subjects

logger = logging.getLogger(__name__)

DEFAULT_COMMAND_TIMEOUT_S = 10.0
# Docker waits this long for a container to stop when the job sets no
# stop_grace_period, then kills it.
DOCKER_STOP_GRACE_S = 10.0


class AgentClient:
    """Sends commands to agents on `<prefix>.node.<node>.cmd` and checks replies."""

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        is_away: Callable[[str], bool] | None = None,
    ) -> None:
        self._client = client
        self._subjects = subjects
        self.timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep
        self._is_away = is_away

    async def call(
        self,
        node: str,
        command_type: type[Command],
        *,
        bound_s: float | None = None,
        **fields,
    ) -> Reply:
        """Send one command and return the agent's ok reply.

        `bound_s` limits the wait for the reply and sets the command's
        deadline. An error reply raises the error class for its code.
        """
        bound_s = bound_s or self.timeout_s
        command = command_type(
            id=uuid.uuid4().hex, deadline=self._clock() + bound_s, **fields
        )
        reply = await self._send_until_deadline(node, command, bound_s)
        if not reply.ok:
            error = reply.error or _missing_error(node, command)
            logger.debug("node %s command %s failed: %s", node, command.id, error)
            raise error_from_info(error)

        return reply

    async def stop(self, node: str, spec: JobSpec, bound_s: float | None = None):
        """Stop the job's container, waiting its stop grace period plus `bound_s`."""
        return await self.call(
            node,
            Stop,
            bound_s=self._bound_with_grace_s(spec, bound_s),
            job=spec.name,
            timeout_s=spec.stop_grace_s(),
        )

    async def remove(self, node: str, spec: JobSpec, bound_s: float | None = None):
        """Remove the job's container, waiting its stop grace period plus `bound_s`.

        The agent stops a running container before it removes it, so a remove
        takes as long as a stop.
        """
        return await self.call(
            node, Remove, bound_s=self._bound_with_grace_s(spec, bound_s), job=spec.name
        )

    def _bound_with_grace_s(self, spec: JobSpec, bound_s: float | None) -> float:
        return (bound_s or self.timeout_s) + stop_grace_or_default(spec.stop_grace_s())

    async def _send_until_deadline(
        self, node: str, command: Command, bound_s: float
    ) -> Reply:
        kind = type(command).__name__.lower()
        description = f"{kind} command {command.id} to node {node}"
        retrying = until_command_deadline(
            description, command.deadline, self._clock, self._sleep
        )
        async for attempt in retrying:
            if attempt.retry_state.attempt_number > 1:
                self._check_not_away(node, command)
            with attempt:
                attempt_s = min(
                    COMMAND_RESEND_AFTER_S, command.deadline - self._clock()
                )
                return await self._request(node, command, bound_s, attempt_s)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _check_not_away(self, node: str, command: Command) -> None:
        """Raise NodeOfflineError if the registry has the node offline or lost.

        Raised outside the retry's attempt, so the command is not sent again.
        """
        if self._is_away is None or not self._is_away(node):
            return
        kind = type(command).__name__.lower()
        logger.info(
            "node %s went offline or lost; not resending %s command %s",
            node,
            kind,
            command.id,
        )
        raise NodeOfflineError(
            f"node {node!r} went offline or lost before it replied to {kind} "
            f"command {command.id}; the command may still have been applied"
        )

    async def _request(
        self, node: str, command: Command, bound_s: float, attempt_s: float
    ) -> Reply:
        """Send the command once, waiting `attempt_s` for the reply.

        The errors name `bound_s`, the whole time the command may take.
        """
        kind = type(command).__name__.lower()
        subject = self._subjects.node_cmd(node)
        offline = NodeOfflineError(
            f"node {node!r} is offline: no agent subscribes on {subject}; start "
            f"node-agent --node-id {node}"
        )
        timeout = CommandTimeoutError(
            f"node {node!r} did not reply to {kind} command {command.id} within "
            f"{bound_s:g} s; check its agent's log and retry",
            bound_s,
        )
        logger.debug("node %s sending %s command %s", node, kind, command.id)
        with nats_errors(
            f"{kind} command to node {node!r}", no_responders=offline, timeout=timeout
        ):
            message = await self._client.request(
                subject, encode(command), timeout=attempt_s
            )
        return decode(reply_decoder, message.data, f"reply of node {node!r}")


def stop_grace_or_default(grace_s: float | None) -> float:
    """Return a job's stop grace in seconds, Docker's default when it sets none."""
    return DOCKER_STOP_GRACE_S if grace_s is None else grace_s


def _missing_error(node: str, command: Command) -> ErrorInfo:
    return ErrorInfo(
        code="internal",
        message=f"node {node!r} rejected command {command.id} without an error",
    )
