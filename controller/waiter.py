"""The wait behind `--wait`: poll a job until it reaches its desired state.

The job list shows what the controller last observed, which is stale while
the job's node is offline or lost. So a state counts as reached only when the
node is online and an inspect, which requests the container from the node's
agent after the verb, shows the container in that state too.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable

from controller.client import ApiClient
from controller.errors import CommandTimeoutError, ControllerError, NotFoundError
from schemas.messages import JobRequest, JobView, ListRequest

POLL_INTERVAL_S = 0.25
# An inspect waits at most this long for the node, so a silent node delays
# the next poll by at most this long.
MAX_INSPECT_WAIT_S = 5.0
# Time the waiter gives the controller for its reply beyond the inspect's bound.
REPLY_MARGIN_S = 2.0
# Job states that satisfy each desired state; a removed job has no record.
_REACHED = {
    "running": {"running"},
    "paused": {"paused"},
    "stopped": {"exited", "created", "dead", "missing"},
}


def reached(desired: str, job: JobView | None) -> bool:
    """Return True if `job`, None when it has no record, is in state `desired`."""
    if desired == "removed":
        return job is None
    return job is not None and job.state in _REACHED.get(desired, ())


async def wait_for_desired(
    api: ApiClient,
    name: str,
    desired: str,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> JobView | None:
    """Return the job once it reaches `desired`, or None once a removed job is gone.

    Raises CommandTimeoutError after `timeout_s` seconds, naming why the job
    has not reached it; its desired state stays stored.
    """
    deadline = clock() + timeout_s
    while True:
        job, pending = await _check(api, name, desired, deadline - clock())
        if pending is None:
            return job
        if clock() >= deadline:
            raise CommandTimeoutError(
                f"job {name!r} did not reach desired state {desired} within "
                f"{timeout_s:g} s ({pending}); the desired state stays stored, see "
                "`controller jobs`",
                timeout_s,
            )
        await sleep(POLL_INTERVAL_S)


async def _check(
    api: ApiClient, name: str, desired: str, remaining_s: float
) -> tuple[JobView | None, str | None]:
    """Return the job and why it has not reached `desired`, None once it has."""
    reply = await api.call("jobs", ListRequest(), MAX_INSPECT_WAIT_S)
    job = next((job for job in reply.jobs or [] if job.name == name), None)
    if desired == "removed":
        return job, None if job is None else f"its state is {job.state}"
    if not reached(desired, job):
        return job, f"its state is {job.state if job else 'removed'}"

    return await _confirm(api, job, desired, remaining_s)


async def _confirm(
    api: ApiClient, job: JobView, desired: str, remaining_s: float
) -> tuple[JobView | None, str | None]:
    """Ask the job's node, through an inspect, whether its container shows `desired`."""
    bound_s = min(MAX_INSPECT_WAIT_S, max(remaining_s, POLL_INTERVAL_S))
    request = JobRequest(job=job.name, timeout_s=bound_s)
    try:
        reply = await api.call("inspect", request, bound_s, extra_s=REPLY_MARGIN_S)
    except NotFoundError:
        return None, "it was removed"
    except ControllerError as exc:
        return job, f"node {job.node} did not confirm it: {exc}"
    if reply.node is not None:
        return job, (
            f"node {job.node} is {reply.node.state}, so its state {job.state} is "
            "as last reported"
        )
    state = reply.container.state if reply.container else "missing"
    if state not in _REACHED[desired]:
        return job, f"node {job.node} reports its container {state}"

    return reply.job, None
