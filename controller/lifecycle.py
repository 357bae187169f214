"""Requests on one existing job: start, stop, pause, unpause, remove, inspect, logs."""

import logging

import msgspec

from controller.errors import (
    CommandTimeoutError,
    ConflictError,
    NodeOfflineError,
    NotFoundError,
)
from controller.parts import Parts
from controller.registry import NodeRecord, NodeState, clock_time
from controller.store import JobRecord, observed_fields
from schemas.job import DesiredState
from schemas.messages import (
    ApiReply,
    Create,
    Inspect,
    JobRequest,
    Logs,
    LogsRequest,
    NodeView,
    Pause,
    Start,
    Unpause,
)

logger = logging.getLogger(__name__)

# verb -> (desired state after success, container state expected after success)
_TARGETS: dict[str, tuple[DesiredState, str]] = {
    "start": ("running", "running"),
    "stop": ("stopped", "exited"),
    "pause": ("paused", "paused"),
    "unpause": ("running", "running"),
}
_COMMANDS = {"pause": Pause, "unpause": Unpause}


class Lifecycle:
    """Sends a job's command to its node and records the outcome.

    On an error reply the desired state stays as it was and the error goes
    back to the client unchanged. Two cases of a missing container are
    exceptions. A start creates the container from the stored spec, and a
    stop of a job whose desired state is already stopped succeeds without it.

    When the node does not reply in time, the requested desired state is
    recorded anyway, because the command may have been applied. When the node
    is offline or lost, or no agent receives the command, only the desired
    state is recorded, and the reconciler applies it when the node returns.
    The reply then carries the node, so the client can show when it is expected.
    """

    def __init__(self, parts: Parts) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._events = parts.events
        self._locks = parts.locks

    async def change(self, verb: str, request: JobRequest) -> ApiReply:
        """Apply start, stop, pause, unpause or remove to the job."""
        async with self._locks.hold(request.job):
            record, revision = await self._store.entry(request.job)
            away = self._away_node(record)
            if away is not None:
                return await self._defer(verb, record, revision, away)
            if verb == "remove":
                return await self._remove(record, revision, request.timeout_s)

            node = _node_of(record, verb)
            desired, expected_state = _TARGETS[verb]
            try:
                reply = await self._send(verb, node, record, request.timeout_s)
            except NodeOfflineError:
                return await self._defer(verb, record, revision, None)
            except CommandTimeoutError as exc:
                await self._keep_desired(record, revision, desired)
                raise _unconfirmed(verb, node, desired, exc) from exc
            except NotFoundError:
                if not _already_stopped(verb, record):
                    raise
                logger.info(
                    "job %s is stopped and has no container on node %s",
                    record.name,
                    node,
                )
                return ApiReply(ok=True, job=record.view())
            container = reply.container
            changes = {"desired": desired, "state": expected_state, "message": ""}
            if container is not None:
                changes |= observed_fields(container)
            updated = await self._store.update(
                record.name, base=(record, revision), **changes
            )
        if (updated.state, updated.desired) != (record.state, record.desired):
            await self._events.job(updated)
        return ApiReply(ok=True, job=updated.view(), container=container)

    def _away_node(self, record: JobRecord) -> NodeRecord | None:
        """Return the job's node if the registry has it offline or lost."""
        node = self._registry.get(record.node) if record.node else None
        if node is None or node.state is NodeState.ONLINE:
            return None
        return node

    async def _defer(
        self, verb: str, record: JobRecord, revision: int, node: NodeRecord | None
    ) -> ApiReply:
        """Record the verb's desired state for the reconciler to apply later.

        `node` is None when the registry still had the node online but no
        agent received the command.
        """
        desired = "removed" if verb == "remove" else _TARGETS[verb][0]
        node = node or self._registry.get(record.node)
        updated = await self._store.update(
            record.name,
            base=(record, revision),
            desired=desired,
            message=f"waiting for node {record.node} to return",
        )
        logger.info(
            "job %s: node %s is %s; desired state %s stored for when it returns",
            record.name,
            record.node,
            node.state.value if node else "unknown",
            desired,
        )
        if updated.desired != record.desired:
            await self._events.job(updated)
        return ApiReply(ok=True, job=updated.view(), node=_node_view(record, node))

    async def _keep_desired(
        self, record: JobRecord, revision: int, desired: DesiredState
    ) -> None:
        """Record `desired` after a command that timed out, since it may apply.

        The reconciler then drives the container to the desired state.
        """
        # NOTE: a job whose start timed out and whose container exited stays
        # exited, because the reconciler starts an exited container only when
        # its restart policy requires it.
        updated = await self._store.update(
            record.name, base=(record, revision), desired=desired
        )
        logger.info(
            "job %s: node %s did not confirm the command; desired state is now %s",
            record.name,
            record.node,
            desired,
        )
        if updated.desired != record.desired:
            await self._events.job(updated)

    async def inspect(self, request: JobRequest) -> ApiReply:
        """Return the job, its spec and its container as the node reports it now.

        The reply has no container when the job has no node yet or the node
        has no container for it. When the node is offline or lost, the reply
        carries the node and the container from its last heartbeat, at once.
        """
        record = await self._store.get(request.job)
        found = ApiReply(ok=True, job=record.view(), spec=record.spec)
        if record.node is None:
            return found
        away = self._away_node(record)
        if away is not None:
            return msgspec.structs.replace(
                found, container=away.container(record.name), node=away.view()
            )
        try:
            reply = await self._agents.call(
                record.node, Inspect, bound_s=request.timeout_s, job=record.name
            )
        except NotFoundError:
            return found
        return msgspec.structs.replace(found, container=reply.container)

    async def logs(self, request: LogsRequest) -> ApiReply:
        """Return the log of the job's container; raise at once if its node is away."""
        record = await self._store.get(request.job)
        node = _node_of(record, "logs")
        away = self._away_node(record)
        if away is not None:
            raise NodeOfflineError(
                f"cannot read the log of job {record.name!r}: node {node} is "
                f"{describe_away(away)}; retry when it is back"
            )
        try:
            reply = await self._agents.call(
                node, Logs, job=record.name, tail=request.tail
            )
        except NotFoundError as exc:
            raise NotFoundError(missing_container_message(record.name, node)) from exc
        return ApiReply(ok=True, job=record.view(), logs=reply.logs or "")

    async def _send(self, verb: str, node: str, record: JobRecord, bound_s: float):
        if verb == "stop":
            return await self._agents.stop(node, record.spec, bound_s)
        if verb == "start":
            return await self._start(node, record, bound_s)
        return await self._agents.call(
            node, _COMMANDS[verb], bound_s=bound_s, job=record.name
        )

    async def _start(self, node: str, record: JobRecord, bound_s: float):
        """Start the job's container, or create it from the stored spec if missing."""
        try:
            return await self._agents.call(
                node, Start, bound_s=bound_s, job=record.name
            )
        except NotFoundError:
            logger.info(
                "job %s has no container on node %s, creating it from the stored spec",
                record.name,
                node,
            )
        return await self._agents.call(node, Create, bound_s=bound_s, spec=record.spec)

    async def _remove(
        self, record: JobRecord, revision: int, bound_s: float
    ) -> ApiReply:
        if record.node is not None:
            try:
                await self._agents.remove(record.node, record.spec, bound_s)
            except NotFoundError:
                logger.info(
                    "job %s had no container on node %s", record.name, record.node
                )
            except NodeOfflineError:
                return await self._defer("remove", record, revision, None)
            except CommandTimeoutError as exc:
                await self._keep_desired(record, revision, "removed")
                raise _unconfirmed("remove", record.node, "removed", exc) from exc
        await self._store.delete(record.name)
        removed = JobRecord(
            spec=record.spec,
            desired="removed",
            state="removed",
            node=record.node,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
        await self._events.job(removed)
        return ApiReply(ok=True, job=removed.view())


def describe_away(node: NodeRecord) -> str:
    """Return "offline, planned return 18:03:28" or "lost since 18:03:10"."""
    if node.state is NodeState.OFFLINE and node.planned_return is not None:
        return f"offline, planned return {clock_time(node.planned_return)}"
    if node.down_since is not None:
        return f"{node.state.value} since {clock_time(node.down_since)}"
    return node.state.value


def missing_container_message(job: str, node: str) -> str:
    return (
        f"job {job!r} has no container on node {node!r}; `controller start {job}` "
        "recreates it from the job's spec"
    )


def _unconfirmed(
    verb: str, node: str, desired: str, exc: CommandTimeoutError
) -> CommandTimeoutError:
    within = f" within {exc.bound_s:g} s" if exc.bound_s is not None else ""
    return CommandTimeoutError(
        f"node {node!r} did not confirm the {verb}{within}; the desired state is "
        f"now {desired} and the controller keeps applying it",
        exc.bound_s,
    )


def _node_view(record: JobRecord, node: NodeRecord | None) -> NodeView:
    """Return the node's view, or a lost node without heartbeats if unregistered.

    A node is unregistered when it sent no heartbeat since the controller started.
    """
    if node is not None:
        return node.view()
    return NodeView(name=record.node, state="lost", device_type="", last_seen=0.0)


def _already_stopped(verb: str, record: JobRecord) -> bool:
    """Return True for a stop of a stopped job, which needs no container."""
    return verb == "stop" and record.desired == "stopped"


def _node_of(record: JobRecord, verb: str) -> str:
    if record.node is None:
        raise ConflictError(
            f"cannot {verb} job {record.name!r}: it has no node yet; wait for "
            "`controller jobs` to show its node"
        )
    return record.node
