import pytest

from controller.backoff import FIRST_DELAY_S, MAX_DELAY_S, Backoff
from controller.reconciler import next_action
from tests.controller.helpers import FakeClock


@pytest.mark.parametrize(
    ("desired", "container_state", "action"),
    [
        ("running", None, "create"),
        ("running", "running", None),
        ("running", "paused", "unpause"),
        ("running", "exited", None),
        ("running", "created", None),
        ("paused", "running", "pause"),
        ("paused", "paused", None),
        ("paused", None, None),
        ("stopped", "running", "stop"),
        ("stopped", "paused", "stop"),
        ("stopped", "exited", None),
        ("stopped", None, None),
        ("removed", "running", "remove"),
        ("removed", "exited", "remove"),
        ("removed", None, "forget"),
    ],
)
def test_next_action_for_each_state(desired, container_state, action):
    result = next_action(desired, container_state)

    assert result == action


@pytest.mark.parametrize(
    ("restart", "action"),
    [
        ("no", None),
        ("always", "start"),
        ("unless-stopped", "start"),
        ("on-failure", None),
        ("on-failure:3", None),
    ],
)
def test_exited_container_follows_restart_policy(restart, action):
    result = next_action("running", "exited", restart)

    assert result == action


@pytest.mark.parametrize("desired", ["stopped", "paused"])
def test_exited_container_of_idle_job_stays(desired):
    result = next_action(desired, "exited", "always")

    assert result is None


def test_backoff_doubles_up_to_limit():
    backoff = Backoff(clock=FakeClock())

    delays = [backoff.failed("job", RuntimeError("boom")) for _ in range(10)]

    assert delays[:3] == [FIRST_DELAY_S, 2 * FIRST_DELAY_S, 4 * FIRST_DELAY_S]
    assert delays[-1] == MAX_DELAY_S


def test_backoff_holds_job_until_delay():
    clock = FakeClock()
    backoff = Backoff(clock=clock)
    delay_s = backoff.failed("job", RuntimeError("boom"))

    clock.advance(delay_s / 2)
    waiting = backoff.ready("job")
    clock.advance(delay_s)
    ready = backoff.ready("job")

    assert not waiting
    assert ready


def test_backoff_success_clears_failures():
    backoff = Backoff(clock=FakeClock())
    backoff.failed("job", RuntimeError("boom"))

    backoff.succeeded("job")

    assert backoff.ready("job")
    assert backoff.failed("job", RuntimeError("again")) == FIRST_DELAY_S
