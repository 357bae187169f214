import asyncio
import json
import re
import signal
import threading

from controller.cli import ExitCode
from tests.controller.fleet import wait_until
from tests.controller.helpers import monitor


def submit_then_lose_node(fleet, name):
    """Submit a job, then stop the agent and wait until its node is lost."""
    submitted = fleet.cli("submit", fleet.job_file(name))
    assert submitted.exit_code == ExitCode.OK, submitted.output
    fleet.agent.stop()
    fleet.wait_for_node("lost")


def test_stop_on_lost_node_is_deferred(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)

    result = fleet.cli("stop", name)
    job = fleet.jobs()[name]

    assert result.exit_code == ExitCode.OK, result.output
    pattern = (
        rf"{name}: node {fleet.node} is lost, last heartbeat [0-9.]+s ago; desired "
        r"state stopped is stored and the controller applies it when the node "
        r"returns\n"
    )
    assert re.fullmatch(pattern, result.stdout)
    assert job["desired"] == "stopped"
    assert job["message"] == f"waiting for node {fleet.node} to return"
    assert fleet.container_state(name) == "running"


def test_deferred_stop_applied_on_return(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)
    fleet.cli("stop", name)

    fleet.start_agent()

    wait_until(lambda: fleet.job_state(name) == "exited", f"job {name} exited")
    assert fleet.container_state(name) == "exited"
    assert "waiting for node" not in fleet.jobs()[name]["message"]


def test_deferred_remove_applied_on_return(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)

    result = fleet.cli("remove", name)
    fleet.start_agent()

    assert result.exit_code == ExitCode.OK, result.output
    wait_until(lambda: name not in fleet.jobs(), f"job {name} removed")
    wait_until(lambda: not fleet.containers(name), f"container {name} removed")


def test_wait_returns_when_state_reached(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)
    results = []
    waiter = threading.Thread(
        target=lambda: results.append(
            fleet.cli("pause", name, "--wait", "--json", "--timeout", "20")
        )
    )

    waiter.start()
    fleet.start_agent()
    waiter.join(timeout=40)

    assert not waiter.is_alive()
    result = results[0]
    assert result.exit_code == ExitCode.OK, result.output
    assert result.stderr.startswith(f"{name}: node {fleet.node} is lost")
    job = json.loads(result.stdout)
    assert job["state"] == "paused"
    assert job["desired"] == "paused"
    assert fleet.container_state(name) == "paused"


def test_wait_times_out_while_node_lost(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)

    result = fleet.cli("stop", name, "--wait", "--timeout", "1")

    assert result.exit_code == ExitCode.TIMEOUT, result.output
    assert "did not reach desired state stopped" in result.stderr
    assert fleet.jobs()[name]["desired"] == "stopped"


def test_wait_ignores_stale_state_of_lost_node(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)

    result = fleet.cli("start", name, "--wait", "--timeout", "2")

    assert result.exit_code == ExitCode.TIMEOUT, result.output
    assert "did not reach desired state running within 2 s" in result.stderr
    assert f"node {fleet.node} is lost, so its state running is as last" in (
        result.stderr
    )


def test_inspect_on_lost_node_returns_record(fleet, unique_name):
    name = unique_name("web")
    submitted = fleet.cli("submit", fleet.job_file(name))
    assert submitted.exit_code == ExitCode.OK, submitted.output
    wait_until(
        lambda: fleet.nodes()[fleet.node]["containers"] == 1,
        f"a heartbeat of node {fleet.node} with the container of {name}",
    )
    fleet.agent.stop()
    fleet.wait_for_node("lost")

    result = fleet.cli("inspect", name)

    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    assert document["job"]["state"] == "running"
    assert document["container"]["state"] == "unknown"
    assert document["container"]["last_reported"]["state"] == "running"
    assert result.stderr.startswith(f"Note: node {fleet.node} is lost, last heartbeat")
    assert "the container's state is unknown until the node returns" in result.stderr


def test_logs_on_lost_node_fails_at_once(fleet, unique_name):
    name = unique_name("web")
    submit_then_lose_node(fleet, name)

    result = fleet.cli("logs", name)

    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    pattern = (
        rf"Error: cannot read the log of job '{name}': node {fleet.node} is lost "
        r"since \d\d:\d\d:\d\d; retry when it is back\n"
    )
    assert re.fullmatch(pattern, result.stderr)


async def test_stop_racing_abrupt_disconnect_deferred(fleet, unique_name):
    name = unique_name("web")
    submitted = await asyncio.to_thread(fleet.cli, "submit", fleet.job_file(name))
    assert submitted.exit_code == ExitCode.OK, submitted.output

    async with monitor(fleet.url):
        fleet.agent.send_signal(signal.SIGKILL)
        fleet.agent.wait()
        result = await asyncio.to_thread(fleet.cli, "stop", name, "--timeout", "10")

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith(f"{name}: node {fleet.node} is lost, ")
    job = await asyncio.to_thread(lambda: fleet.jobs()[name])
    assert job["desired"] == "stopped"
    assert job["message"] == f"waiting for node {fleet.node} to return"
    log = fleet.controller.output()
    assert f"node {fleet.node} went offline or lost; not resending stop" in log
