from controller.cli import ExitCode
from tests.controller.fleet import wait_until


def test_nodes_json_reports_link_fields(fleet):
    node = wait_until(
        lambda: (
            (fleet.nodes()[fleet.node].get("rtt_ms") is not None)
            and fleet.nodes()[fleet.node]
        ),
        f"a round trip of node {fleet.node}",
    )

    assert node["state"] == "online"
    assert node["rtt_ms"] > 0
    assert node["planned_return"] is None
    assert node["down_since"] is None
    assert node["heartbeat_interval_s"] == 0.5
    assert "link_rate_bps" in node
    assert "next_disconnect_at" in node


def test_nodes_table_shows_heartbeat_age(fleet):
    wait_until(
        lambda: fleet.nodes()[fleet.node].get("rtt_ms") is not None,
        f"a round trip of node {fleet.node}",
    )

    result = fleet.cli("nodes")

    assert result.exit_code == ExitCode.OK, result.output
    assert "LAST HEARTBEAT" in result.stdout
    assert "s ago" in result.stdout
    assert " ms " in result.stdout


def test_stopped_agent_becomes_lost(fleet):
    fleet.agent.stop()

    fleet.wait_for_node("lost")

    node = fleet.nodes()[fleet.node]
    assert node["down_since"] is not None
    assert node["planned_return"] is None
