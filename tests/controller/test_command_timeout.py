import signal

from controller.cli import ExitCode
from tests.controller.fleet import wait_until


def test_stop_timeout_keeps_desired_state(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name))
    fleet.agent.send_signal(signal.SIGSTOP)
    try:
        result = fleet.cli("stop", name, "--timeout", "1")
        desired = fleet.jobs()[name]["desired"]
    finally:
        fleet.agent.send_signal(signal.SIGCONT)

    wait_until(
        lambda: fleet.container_state(name) == "exited", f"container {name} exited"
    )
    assert result.exit_code == ExitCode.TIMEOUT, result.output
    assert result.stderr == (
        f"Error: node {fleet.node!r} did not confirm the stop within 2 s; the "
        "desired state is now stopped and the controller keeps applying it\n"
    )
    assert desired == "stopped"
    assert fleet.jobs()[name]["desired"] == "stopped"


def test_error_reply_keeps_desired_state(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name))
    fleet.cli("stop", name)

    result = fleet.cli("pause", name)

    assert result.exit_code == ExitCode.CONFLICT, result.output
    assert fleet.jobs()[name]["desired"] == "stopped"
