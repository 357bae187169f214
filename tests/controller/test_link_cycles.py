import re

from controller.cli import ExitCode
from tests.controller.fleet import wait_until

# Connected 1 s, then offline 3 s, announced with a link-down event.
CYCLE_OPTIONS = (
    "--heartbeat",
    "0.2",
    "--disconnect",
    "1",
    "--reconnect",
    "3",
    "--disconnect-mode",
    "announced",
)


def restart_agent_with_cycles(fleet):
    fleet.agent.stop()
    fleet.start_agent(*CYCLE_OPTIONS)


def wait_for_offline_node(fleet):
    """Wait until the node is offline after an announced disconnect; return it."""
    return wait_until(
        lambda: (node := fleet.nodes()[fleet.node])["state"] == "offline" and node,
        f"node {fleet.node} offline",
    )


def test_announced_disconnect_shows_planned_return(fleet):
    restart_agent_with_cycles(fleet)

    node = wait_for_offline_node(fleet)

    assert node["planned_return"] is not None
    assert node["planned_return"] > node["down_since"]
    fleet.wait_for_node("online")


def test_verb_on_offline_node_names_return(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name))
    restart_agent_with_cycles(fleet)
    wait_for_offline_node(fleet)

    result = fleet.cli("stop", name)

    assert result.exit_code == ExitCode.OK, result.output
    pattern = (
        rf"{name}: node {fleet.node} is offline, planned return "
        r"\d\d:\d\d:\d\d \((in [0-9.]+s|[0-9.]+s late)\); desired state stopped is "
        r"stored and the controller applies it when the node returns\n"
    )
    assert re.fullmatch(pattern, result.stdout)
    wait_until(lambda: fleet.job_state(name) == "exited", f"job {name} exited")


def test_container_died_offline_restarted(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name, restart="always"))
    container_id = fleet.containers(name)[0].id
    restart_agent_with_cycles(fleet)
    wait_for_offline_node(fleet)

    fleet.containers(name)[0].kill()

    wait_until(
        lambda: fleet.container_state(name) == "running", f"container {name} running"
    )
    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert [c.id for c in fleet.containers(name)] == [container_id]
