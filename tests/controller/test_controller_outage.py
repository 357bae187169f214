"""The controller losing its own NATS connection while the nodes stay up."""

import json
import time

from controller.cli import ExitCode
from tests.controller.fleet import SETTLE_S, wait_until

# Three times the fleet's heartbeat of 0.5 s, the default missed-heartbeat
# limit, so a controller that counted the outage would mark the nodes lost.
OUTAGE_S = 3.0
# Agents retry the broker at least this often, so they return within the
# grace that the controller gives every node after its own reconnect.
AGENT_RECONNECT = ("--reconnect-max-wait", "0.5")


def test_broker_restart_loses_no_node(fleet, nats_server, cleanup_node, unique_name):
    fleet.agent.stop()
    fleet.start_agent(*AGENT_RECONNECT)
    other = cleanup_node(unique_name("node"))
    fleet.start_agent(*AGENT_RECONNECT, node=other)
    wait_until(lambda: other in fleet.nodes(), f"node {other} online")
    name = unique_name("web")
    path = fleet.job_file(
        name, placement={"labels": {"zone": "test"}}, reschedule_after="1s"
    )
    submitted = fleet.cli("submit", path, "--json")
    assert submitted.exit_code == ExitCode.OK, submitted.output
    node = json.loads(submitted.stdout)["node"]

    nats_server.kill()
    time.sleep(OUTAGE_S)
    nats_server.start()
    fleet.controller.wait_for_output("reconnected to NATS")
    wait_until(
        lambda: {n["state"] for n in fleet.nodes().values()} == {"online"},
        "every node online",
    )
    time.sleep(SETTLE_S)

    log = fleet.controller.output()
    assert " is lost: " not in log
    assert f"job {name} moved" not in log
    job = fleet.jobs()[name]
    assert job["node"] == node
    assert job["state"] == "running"
    assert {n["state"] for n in fleet.nodes().values()} == {"online"}
