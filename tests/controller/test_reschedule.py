import json
import signal
from typing import NamedTuple

from controller.cli import ExitCode
from tests.controller.fleet import wait_until

FAST_HEARTBEAT = ("--heartbeat", "0.2")
NODE_LABEL = "dsched.node"


JOB_LABEL = "dsched.job"


def copies(fleet, name):
    """Return the containers of job `name` on any node, by their labels.

    One list request gives id, state and labels, so a container removed
    meanwhile cannot fail a second request.
    """
    summaries = fleet.docker.api.containers(
        all=True, filters={"label": f"{JOB_LABEL}={name}"}
    )
    return [Copy(s["Id"], s["State"], s["Labels"].get(NODE_LABEL)) for s in summaries]


class Copy(NamedTuple):
    id: str
    status: str
    node: str | None


def running_copies(fleet, name):
    return [c for c in copies(fleet, name) if c.status == "running"]


def test_job_moves_off_lost_node(fleet, cleanup_node, unique_name):
    """A job moves to the other node; its stale copy goes when the node is back.

    Both agents share this machine's Docker Engine, so the new node's copy is
    named after the job and the node while the old copy keeps the job's name.
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
    wait_until(
        lambda: fleet.job_state(name) == "running", f"job {name} running on {new}"
    )
    # The old node is unreachable, and its copy runs on, as it would on a
    # board cut off from the controller.
    while_lost = sorted(c.node for c in running_copies(fleet, name))
    fleet.start_agent(*FAST_HEARTBEAT, node=old)

    wait_until(
        lambda: [c.node for c in copies(fleet, name)] == [new],
        f"one copy of {name}, on node {new}",
    )
    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert moved["message"].startswith(f"moved from node {old}, lost for ")
    assert while_lost == sorted([old, new])
    assert [c.status for c in copies(fleet, name)] == ["running"]
    assert [c.id for c in copies(fleet, name)] != [old_id]
    assert fleet.jobs()[name]["node"] == new
    log = fleet.controller.output()
    assert f"job {name} moved from node {old} to node {new}" in log
    assert f"removing its stale container {old_id[:12]} from node {old}" in log


def test_job_without_other_node_stays(fleet, unique_name):
    name = unique_name("web")
    path = fleet.job_file(
        name, placement={"labels": {"zone": "test"}}, reschedule_after="1s"
    )
    submitted = fleet.cli("submit", path)
    assert submitted.exit_code == ExitCode.OK, submitted.output
    container_id = fleet.containers(name)[0].id

    fleet.agent.stop()
    fleet.wait_for_node("lost")
    fleet.start_agent()
    fleet.wait_for_node("online")

    job = fleet.jobs()[name]
    assert job["node"] == fleet.node
    assert "moved" not in job["message"]
    assert [c.id for c in copies(fleet, name)] == [container_id]
    assert fleet.container_state(name) == "running"


def test_pinned_job_cannot_reschedule(fleet, unique_name):
    name = unique_name("web")

    submitted = fleet.cli("submit", fleet.job_file(name, reschedule_after="1s"))

    assert submitted.exit_code == ExitCode.INVALID
    assert "reschedule_after has no effect on a job pinned" in submitted.output
