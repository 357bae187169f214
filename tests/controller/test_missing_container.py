import json

from controller.cli import ExitCode
from tests.controller.fleet import INDEX_TEXT, fetch, free_port, wait_until


def stopped_job_without_container(fleet, name, port):
    """Submit a web job, stop it, then remove its container behind the controller."""
    fleet.cli("submit", fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"]))
    fleet.cli("stop", name)
    fleet.containers(name)[0].remove()
    wait_until(lambda: fleet.job_state(name) == "missing", f"job {name} missing")


def test_start_recreates_missing_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    stopped_job_without_container(fleet, name, port)

    result = fleet.cli("start", name)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith(f"{name} running on node {fleet.node}")
    assert f"127.0.0.1:{port}->80/tcp" in result.stdout
    assert fleet.container_state(name) == "running"
    assert fetch(port) == INDEX_TEXT
    assert fleet.jobs()[name]["desired"] == "running"


def test_logs_of_missing_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    stopped_job_without_container(fleet, name, port)

    result = fleet.cli("logs", name)

    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr == (
        f"Error: job {name!r} has no container on node {fleet.node!r}; "
        f"`controller start {name}` recreates it from the job's spec\n"
    )


def test_inspect_of_missing_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    stopped_job_without_container(fleet, name, port)

    result = fleet.cli("inspect", name)

    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(result.stdout)["container"] is None
    assert result.stderr == (
        f"Note: job {name!r} has no container on node {fleet.node!r}; "
        f"`controller start {name}` recreates it from the job's spec\n"
    )


def test_stop_of_stopped_missing_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    stopped_job_without_container(fleet, name, port)

    result = fleet.cli("stop", name)

    assert result.exit_code == ExitCode.OK, result.output
    assert fleet.jobs()[name]["desired"] == "stopped"
    assert fleet.containers(name) == []


def test_pause_of_missing_container_fails(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    stopped_job_without_container(fleet, name, port)

    result = fleet.cli("pause", name)

    assert result.exit_code == ExitCode.NOT_FOUND
    assert fleet.jobs()[name]["desired"] == "stopped"
