import json
import socket

from controller.cli import ExitCode
from tests.controller.fleet import free_port, wait_until


def held_port() -> socket.socket:
    """Return a socket listening on 127.0.0.1, so Docker cannot publish its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    return sock


def submit_on_port(fleet, name: str, port: int) -> None:
    path = fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"])
    result = fleet.cli("submit", path, "--no-wait")
    assert result.exit_code == ExitCode.OK, result.output


def test_failed_create_shows_error(fleet, unique_name):
    name = unique_name("web")
    with held_port() as sock:
        submit_on_port(fleet, name, sock.getsockname()[1])

        job = wait_until(
            lambda: fleet.jobs()[name]["state"] == "failed" and fleet.jobs()[name],
            f"job {name} failed",
        )
        table = fleet.cli("jobs")
        inspected = fleet.cli("inspect", name)

    assert job["desired"] == "running"
    assert job["message"].startswith(f"create failed on node {fleet.node}: ")
    assert job["message"].endswith("; the controller retries it")
    assert inspected.exit_code == ExitCode.OK, inspected.output
    assert json.loads(inspected.stdout)["job"]["message"] == job["message"]
    assert table.exit_code == ExitCode.OK, table.output
    assert f"{name}: {job['message']}\n" in table.stdout


def test_failed_create_recovers_when_fixed(fleet, unique_name):
    name = unique_name("web")
    with held_port() as sock:
        port = sock.getsockname()[1]
        submit_on_port(fleet, name, port)
        wait_until(lambda: fleet.job_state(name) == "failed", f"job {name} failed")

    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert fleet.jobs()[name]["message"] == ""
