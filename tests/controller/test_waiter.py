import pytest

from controller.errors import CommandTimeoutError, NotFoundError
from controller.waiter import wait_for_desired
from schemas.messages import ApiReply, JobView, NodeView
from tests.controller.helpers import FakeClock, container

LOST = NodeView(name="n1", state="lost", device_type="x86", last_seen=1.0)


def job_view(state: str, desired: str = "running") -> JobView:
    return JobView(name="web", desired=desired, state=state, node="n1")


class FakeApi:
    """An API client whose inspect replies follow a script, one per call.

    The job list always shows `job`; each inspect reply is an ApiReply, or
    an exception to raise.
    """

    def __init__(self, job: JobView | None, inspects: list) -> None:
        self.job = job
        self.inspects = list(inspects)
        self.verbs = []

    async def call(self, verb, request, timeout_s, extra_s=0.0) -> ApiReply:
        self.verbs.append(verb)
        if verb == "jobs":
            return ApiReply(ok=True, jobs=[self.job] if self.job else [])
        outcome = self.inspects.pop(0) if len(self.inspects) > 1 else self.inspects[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def away_reply(job: JobView) -> ApiReply:
    return ApiReply(ok=True, job=job, container=container("web", "n1"), node=LOST)


def live_reply(job: JobView, state: str | None) -> ApiReply:
    live = container("web", "n1", state) if state else None
    return ApiReply(ok=True, job=job, container=live)


async def wait(api: FakeApi, desired: str = "running", timeout_s: float = 5.0):
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return await wait_for_desired(api, "web", desired, timeout_s, clock, sleep)


async def test_stale_state_of_lost_node_times_out():
    job = job_view("running")
    api = FakeApi(job, [away_reply(job)])

    with pytest.raises(CommandTimeoutError) as caught:
        await wait(api)

    message = str(caught.value)
    assert "did not reach desired state running within 5 s" in message
    assert "node n1 is lost, so its state running is as last reported" in message


async def test_reached_once_node_reports_it():
    job = job_view("running")
    api = FakeApi(job, [away_reply(job), away_reply(job), live_reply(job, "running")])

    final = await wait(api)

    assert final == job
    assert api.verbs.count("inspect") == 3


async def test_live_container_state_must_match():
    job = job_view("running")
    api = FakeApi(job, [live_reply(job, "exited")])

    with pytest.raises(CommandTimeoutError, match="reports its container exited"):
        await wait(api)


async def test_missing_container_counts_as_stopped():
    job = job_view("exited", desired="stopped")
    api = FakeApi(job, [live_reply(job, None)])

    final = await wait(api, desired="stopped")

    assert final == job


async def test_record_state_checked_before_node():
    api = FakeApi(job_view("exited"), [NotFoundError("unused")])

    with pytest.raises(CommandTimeoutError, match="its state is exited"):
        await wait(api)

    assert "inspect" not in api.verbs


async def test_removed_job_reached_without_inspect():
    api = FakeApi(None, [NotFoundError("unused")])

    final = await wait(api, desired="removed")

    assert final is None
    assert api.verbs == ["jobs"]
