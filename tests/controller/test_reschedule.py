import json
import signal

from controller.cli import ExitCode
from tests.controller.fleet import wait_until

FAST_HEARTBEAT = ("--heartbeat", "0.2")
NODE_LABEL = "dsched.node"


def running_copies(fleet, name):
    return [c for c in fleet.containers(name) if c.status == "running"]


def test_job_moves_off_lost_node(fleet, cleanup_node, unique_name):
    """A job moves to the other node; its stale copy goes when the node is back.

    Both agents share this machine's Docker Engine, where the container name
    (the job name) is unique. So the new node's create fails until the old
    node's copy is removed, and the test checks the end state, one copy.
    """
    fleet.agent.stop()
    agents = {fleet.node: fleet.start_agent(*FAST_HEARTBEAT)}
    other = cleanup_node(unique_name("node"))
    agents[other] = fleet.start_agent(*FAST_HEARTBEAT, node=other)
    wait_until(lambda: other in fleet.nodes(), f"node {other} online")
    name = unique_name("web")
    path = fleet.job_file(
        name, placement={"labels": {"zone": "test"}}, reschedule_after="1s"
    )
    submitted = fleet.cli("submit", path, "--json")
    assert submitted.exit_code == ExitCode.OK, submitted.output
    old = json.loads(submitted.stdout)["node"]
    new = other if old == fleet.node else fleet.node
    old_id = fleet.containers(name)[0].id

    agents[old].send_signal(signal.SIGTERM)
    agents[old].wait()
    wait_until(lambda: fleet.jobs()[name]["node"] == new, f"job {name} on {new}")
    moved = fleet.jobs()[name]
    old_copy_ran_on = fleet.container_state(name)
    fleet.start_agent(*FAST_HEARTBEAT, node=old)

    wait_until(
        lambda: [c.labels[NODE_LABEL] for c in running_copies(fleet, name)] == [new],
        f"one running copy of {name} on node {new}",
    )
    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert moved["message"].startswith(f"moved from node {old}, lost for ")
    assert old_copy_ran_on == "running"
    assert [c.id for c in fleet.containers(name)] != [old_id]
    assert len(fleet.containers(name)) == 1
    assert fleet.jobs()[name]["node"] == new
    log = fleet.controller.output()
    assert f"job {name} moved from node {old} to node {new}" in log
    assert f"removing its stale container {old_id[:12]} from node {old}" in log


def test_pinned_job_stays_on_lost_node(fleet, unique_name):
    name = unique_name("web")
    submitted = fleet.cli("submit", fleet.job_file(name, reschedule_after="1s"))
    assert submitted.exit_code == ExitCode.OK, submitted.output

    fleet.agent.stop()
    fleet.wait_for_node("lost")
    fleet.start_agent()
    fleet.wait_for_node("online")

    job = fleet.jobs()[name]
    assert job["node"] == fleet.node
    assert "moved" not in job["message"]
    assert fleet.container_state(name) == "running"
