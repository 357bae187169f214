"""Builders for heartbeats and container records used by the unit tests,
and a monitor subscriber for tests on a real nats-server."""

import contextlib

import nats

from schemas.messages import ContainerInfo, Heartbeat, LinkEvent


def container(job: str, node: str, state: str = "running") -> ContainerInfo:
    return ContainerInfo(
        id=f"id-{job}", name=job, job=job, node=node, image="img", state=state
    )


def heartbeat(
    node: str,
    seq: int = 1,
    *,
    device_type: str = "X86",
    labels: dict[str, str] | None = None,
    cpu_percent: float = 0.0,
    running: int = 0,
    interval_s: float = 1.0,
    agent_started_at: float = 100.0,
    sent_at: float = 0.0,
    link_rate_bps: float | None = None,
    cpu_count: int = 4,
) -> Heartbeat:
    containers = [container(f"job{index}", node) for index in range(running)]
    return Heartbeat(
        node=node,
        seq=seq,
        sent_at=sent_at,
        interval_s=interval_s,
        device_type=device_type,
        labels=labels or {},
        cpu_percent=cpu_percent,
        cpu_count=cpu_count,
        containers=containers,
        agent_started_at=agent_started_at,
        link_rate_bps=link_rate_bps,
    )


class FakeClock:
    """A clock that moves only when a test advances it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def link_down(node: str, planned_return: float | None, time: float = 0.0) -> LinkEvent:
    return LinkEvent(
        node=node,
        state="down",
        time=time,
        mode="announced",
        planned_return=planned_return,
    )


async def _ignore(message) -> None:
    pass


@contextlib.asynccontextmanager
async def monitor(url: str, subject: str = "dsched.>"):
    """Subscribe a client that never replies to `subject`, as a monitoring tool.

    Its subscription keeps NATS from returning "no responders" to a request
    that no agent receives.
    """
    client = await nats.connect(url)
    try:
        await client.subscribe(subject, cb=_ignore)
        await client.flush()
        yield
    finally:
        await client.close()
