"""The reconcile loop: drive each job's container towards its desired state.

The loop reads the container inventory from the latest heartbeat of the job's
node, so it acts only on inventories that arrived after the job's last change
and skips nodes that are offline or lost. After it sends a command for a job,
it waits for a heartbeat sent after the command's reply before it acts on
that job again, so a heartbeat from before the command does not repeat it.
A job whose node stays down beyond its `reschedule_after`, or whose link
misses its `migrate_when`, moves to another node (see
`controller.rescheduler`). Containers of jobs without a record, and
stale containers left on a job's former node, are removed (see
`controller.orphans`).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from controller.backoff import Backoff
from controller.errors import ControllerError, NotFoundError
from controller.orphans import OrphanRemover
from controller.parts import Parts
from controller.registry import NodeRecord, NodeState
from controller.rescheduler import Rescheduler
from controller.scheduler import Scheduler
from controller.store import JobRecord, observed_fields
from schemas.messages import ContainerInfo, Create, Pause, Start, Unpause
from schemas.values import parse_restart

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
MISSING = "missing"
FAILED = "failed"


def next_action(
    desired: str,
    container_state: str | None,
    restart: str = "no",
) -> str | None:
    """Return the command that moves a container towards `desired`, or None.

    `container_state` is None when the node has no container for the job.
    An exited container of a running job is started again when its restart
    policy requires it (see `restart_after_exit`), because Docker does not
    restart a container that was stopped or killed by hand.
    """
    match desired, container_state:
        case "running", None:
            return "create"
        case "running", "paused":
            return "unpause"
        case "running", "exited" if restart_after_exit(restart):
            return "start"
        case "paused", "running":
            return "pause"
        case "stopped", "running" | "paused":
            return "stop"
        case "removed", None:
            return "forget"
        case "removed", _:
            return "remove"
    return None


def restart_after_exit(restart: str) -> bool:
    """Return True if the restart policy `restart` starts a container that exited.

    always and unless-stopped start it after any exit, because Docker itself
    does not restart a container under them after a stop or kill by hand.
    on-failure and "no" never start it. Docker restarts an on-failure
    container after a non-zero exit, up to its retry count, and not after a
    stop or kill by hand, so an exited one is where Docker's policy left it.
    """
    return parse_restart(restart).name in ("always", "unless-stopped")


class Reconciler:
    """Runs reconcile passes every `interval_s` seconds until cancelled."""

    def __init__(
        self,
        parts: Parts,
        scheduler: Scheduler,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = parts.store
        self._registry = parts.registry
        self._agents = parts.agents
        self._events = parts.events
        self._locks = parts.locks
        self.interval_s = interval_s
        self._backoff = Backoff(clock)
        self._orphans = OrphanRemover(parts, self._backoff)
        # The records read at the start of the current pass.
        self._records: list[JobRecord] = []
        self._rescheduler = Rescheduler(parts, scheduler, lambda: self._records)
        self._wall_clock = wall_clock
        # Job name -> Unix time at which the job's last command ended.
        self._acted_at: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except ControllerError as exc:
                logger.warning("reconcile pass failed: %s", exc)
            except Exception:
                # A bug must not stop the loop for every other job.
                logger.exception("reconcile pass failed with an unexpected error")
            await asyncio.sleep(self.interval_s)

    async def reconcile_once(self) -> None:
        records = self._records = await self._store.list()
        known = {record.name: record for record in records}
        for gone in self._acted_at.keys() - known.keys():
            del self._acted_at[gone]
        self._rescheduler.keep_only(set(known))
        strays = self._orphans.strays(known)
        await asyncio.gather(
            *(self._reconcile_job(record) for record in records),
            *(self._orphans.remove(node, container) for node, container in strays),
        )

    async def _reconcile_job(self, record: JobRecord) -> None:
        name = record.name
        if self._locks.busy(name) or not self._backoff.ready(name):
            return
        async with self._locks.hold(name):
            try:
                await self._reconcile_locked(name)
            except ControllerError as exc:
                self._backoff.failed(name, exc)
                return
        self._backoff.succeeded(name)

    async def _reconcile_locked(self, name: str) -> None:
        try:
            record = await self._store.get(name)
        except NotFoundError:
            return
        if await self._rescheduler.move_if_due(record):
            return
        node = self._fresh_node(record)
        if node is None or not self._reported_since_action(name, node):
            return

        container = node.container(name)
        action = next_action(
            record.desired,
            container.state if container else None,
            record.spec.restart,
        )
        if action in ("remove", "forget"):
            await self._remove(record, node, action)
            return
        if action is not None:
            try:
                container = await self._act(action, record, node) or container
            except ControllerError as exc:
                await self._record_failure(record, action, node.name, exc)
                raise
            finally:
                self._acted_at[name] = self._wall_clock()
        await self._record_observed(record, container)

    def _fresh_node(self, record: JobRecord) -> NodeRecord | None:
        """Return the job's node if it is online and reported after the last change."""
        node = self._registry.get(record.node) if record.node else None
        if node is None or node.state is not NodeState.ONLINE:
            return None
        if node.last_seen <= record.updated_at:
            return None
        return node

    def _reported_since_action(self, job: str, node: NodeRecord) -> bool:
        """Return True if the node's heartbeat was sent after the job's last command.

        NOTE: `sent_at` comes from the agent's clock and the action time from
        the controller's, so the comparison relies on synchronized clocks.
        """
        acted_at = self._acted_at.get(job)
        if acted_at is None:
            return True
        if node.heartbeat.sent_at <= acted_at:
            return False
        del self._acted_at[job]
        return True

    async def _act(
        self, action: str, record: JobRecord, node: NodeRecord
    ) -> ContainerInfo | None:
        logger.info("job %s: sending %s to node %s", record.name, action, node.name)
        if action == "create":
            reply = await self._agents.call(node.name, Create, spec=record.spec)
        elif action == "stop":
            reply = await self._agents.stop(node.name, record.spec)
        else:
            command_type = {"start": Start, "pause": Pause, "unpause": Unpause}[action]
            reply = await self._agents.call(node.name, command_type, job=record.name)
        return reply.container

    async def _remove(self, record: JobRecord, node: NodeRecord, action: str) -> None:
        if action == "remove":
            with contextlib.suppress(NotFoundError):
                await self._agents.remove(node.name, record.spec)
        await self._store.delete(record.name)
        self._backoff.forget(record.name)
        self._acted_at.pop(record.name, None)
        await self._events.job(record, state="removed")

    async def _record_failure(
        self, record: JobRecord, action: str, node: str, error: ControllerError
    ) -> None:
        """Store why `action` failed, so `controller jobs` and `inspect` show it.

        A failed create leaves the job without a container, so its state
        becomes failed until a later attempt succeeds.
        """
        message = f"{action} failed on node {node}: {error}; the controller retries it"
        changes = {"message": message}
        if action == "create":
            changes["state"] = FAILED
        if all(getattr(record, key) == value for key, value in changes.items()):
            return
        updated = await self._store.update(record.name, **changes)
        if updated.state != record.state:
            await self._events.job(updated)

    async def _record_observed(
        self, record: JobRecord, container: ContainerInfo | None
    ) -> None:
        changes = {"state": MISSING, "message": _describe(container)}
        if container is not None:
            changes |= observed_fields(container)
        if all(getattr(record, key) == value for key, value in changes.items()):
            return
        updated = await self._store.update(record.name, **changes)
        if updated.state != record.state:
            await self._events.job(updated)


def _describe(container: ContainerInfo | None) -> str:
    if container is None:
        return "the node has no container for this job"
    if container.state == "exited" and container.exit_code is not None:
        oom = ", killed for lack of memory" if container.oom_killed else ""
        return f"exited with code {container.exit_code}{oom}"
    return ""
