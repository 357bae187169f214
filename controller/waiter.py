"""The wait behind `--wait`: poll the job list until a job reaches its desired state."""

import asyncio
import time
from collections.abc import Callable

from controller.client import ApiClient
from controller.errors import CommandTimeoutError
from schemas.messages import JobView, ListRequest

POLL_INTERVAL_S = 0.25
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
) -> JobView | None:
    """Return the job once it reaches `desired`, or None once a removed job is gone.

    Raises CommandTimeoutError after `timeout_s` seconds, naming the job's
    last state; its desired state stays stored.
    """
    deadline = clock() + timeout_s
    while True:
        reply = await api.call("jobs", ListRequest(), timeout_s)
        job = next((job for job in reply.jobs or [] if job.name == name), None)
        if reached(desired, job):
            return job
        if clock() >= deadline:
            state = job.state if job else "removed"
            raise CommandTimeoutError(
                f"job {name!r} did not reach desired state {desired} within "
                f"{timeout_s:g} s (its state is {state}); the desired state stays "
                "stored, see `controller jobs`",
                timeout_s,
            )
        await asyncio.sleep(POLL_INTERVAL_S)
