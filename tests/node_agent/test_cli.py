"""The `node-agent` command: options, start-up errors and signals."""

import gc
import signal

import pytest
from click.testing import CliRunner

from broker.server import NatsServer
from node_agent.cli import EXIT_NODE_ID_IN_USE, EXIT_UNAVAILABLE, default_node_id, main
from schemas.names import is_valid_name
from tests.node_agent.support import free_port


def test_default_node_id_is_valid_name():
    node_id = default_node_id()

    assert is_valid_name(node_id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node-id", "bad.id"], "invalid node id 'bad.id'"),
        (["--heartbeat", "0"], "must be greater than 0 seconds"),
        (["--label", "nolabel"], "invalid label 'nolabel'"),
        (["--prefix", "a.*"], "invalid subject prefix token '*'"),
        (["--bandwidth", "fast"], "invalid rate 'fast'"),
        (["--bandwidth", "0Mbit"], "must be greater than 0"),
        (
            ["--bandwidth", "10Mbit", "--bandwidth-fluctuate"],
            "--bandwidth and --bandwidth-fluctuate exclude each other",
        ),
        (["--seed", "3"], "--seed applies only with --bandwidth-fluctuate"),
        (["--bandwidth-min", "1Mbit"], "--bandwidth-min applies only with"),
        (
            [
                "--bandwidth-fluctuate",
                "--bandwidth-min",
                "9Mbit",
                "--bandwidth-max",
                "1Mbit",
            ],
            "--bandwidth-min 9 Mbit/s is above --bandwidth-max 1 Mbit/s",
        ),
        (["--bandwidth", "100"], "add a unit, e.g. 100Mbit"),
        (["--burst", "8k"], "--burst applies only with --bandwidth"),
        (["--burst", "lots"], "invalid size 'lots'"),
        (["--reconnect", "-1"], "-1.0 is not in the range x>=0"),
        (["--reconnect-max-wait", "0"], "must be greater than 0 seconds"),
        (["--disconnect-mode", "polite"], "'polite' is not one of"),
        (["--dev-root", "/no/such/dev"], "'/no/such/dev' does not exist"),
    ],
)
def test_invalid_option_rejected(args, message):
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 2
    assert message in result.output


def test_help_states_units_and_defaults():
    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    assert "Heartbeat interval in seconds" in result.output
    assert "default: 5.0" in result.output
    assert "default: nats://127.0.0.1:4222" in result.output
    text = " ".join(result.output.split())
    assert "0 or less turns cycles off. [default: 30.0]" in text
    assert "[default: 20.0; x>=0]" in text
    assert "So 100Mbit = 100Mbps = 12.5MB/s" in text


def test_bad_trace_file_is_a_usage_error(tmp_path):
    trace = tmp_path / "bad.down"
    trace.write_text("0\nsoon\n")

    result = CliRunner().invoke(main, ["--bandwidth-trace", str(trace)])

    assert result.exit_code == 2
    assert f"{trace}:2: expected a time in milliseconds, got 'soon'" in result.output


def test_startup_states_cycles_and_rate(spawn, nats_server, node_id, test_image):
    agent = spawn(
        "node-agent", "--nats", nats_server.url, "--node-id", node_id,
        "--bandwidth", "20Mbit",
        wait_for="connected",
    )  # fmt: skip

    agent.send_signal(signal.SIGTERM)

    assert agent.wait() == 0
    output = agent.output()
    assert "disconnect cycles on: connected 30 s, offline 20 s, announced" in output
    assert "pass --disconnect 0 to turn them off" in output
    assert "link rate 20 Mbit/s (fixed)" in output


def test_unreachable_nats_one_line_error(docker_client):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"

    result = CliRunner().invoke(main, ["--nats", url, "--node-id", "cli-nonats"])

    assert result.exit_code == EXIT_UNAVAILABLE
    assert f"cannot connect to NATS at {url}" in result.output
    assert f"start it with `broker --port {port}`" in result.output


@pytest.mark.nats
def test_rejected_token_one_line_error(tmp_path):
    config_path = tmp_path / "token.conf"
    config_path.write_text('authorization { token: "s3cret" }\njetstream {}\n')
    args = ["--node-id", "cli-badtoken", "--token", "wrong"]

    with NatsServer(tmp_path / "nats", config_file=config_path) as server:
        result = CliRunner().invoke(main, ["--nats", server.url, *args])

    assert result.exit_code == EXIT_UNAVAILABLE
    assert f"NATS at {server.url} rejected the credentials" in result.output
    assert "check --user/--password, --token or --creds" in result.output
    assert "start it with `broker`" not in result.output


# docker SDK 7.2's UnixHTTPConnection.connect leaves its socket open when the
# socket file is missing. The error chain in `result` keeps that socket alive,
# so the test drops `result` and collects it, to meet the warning here.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreachable_docker_one_line_error(nats_server, tmp_path):
    socket_url = f"unix://{tmp_path}/absent.sock"
    args = ["--nats", nats_server.url, "--node-id", "cli-nodocker"]

    result = CliRunner().invoke(main, [*args, "--docker-host", socket_url])
    exit_code, output = result.exit_code, result.output
    del result
    gc.collect()

    assert exit_code == EXIT_UNAVAILABLE
    assert "cannot reach the Docker Engine" in output
    assert "run scripts/setup" in output


def test_agent_process_stops_on_sigterm(spawn, nats_server, node_id, test_image):
    agent = spawn(
        "node-agent",
        "--nats", nats_server.url, "--node-id", node_id, "--heartbeat", "0.2",
        wait_for="connected",
    )  # fmt: skip

    agent.send_signal(signal.SIGTERM)

    assert agent.wait() == 0
    assert f"node-agent {node_id} connected to {nats_server.url}" in agent.output()
    assert f"node-agent {node_id} stopped" in agent.output()


def test_second_process_same_id_exits(spawn, nats_server, node_id, test_image):
    spawn(
        "node-agent", "--nats", nats_server.url, "--node-id", node_id,
        wait_for="connected",
    )  # fmt: skip
    second = spawn("node-agent", "--nats", nats_server.url, "--node-id", node_id)

    code = second.wait()

    assert code == EXIT_NODE_ID_IN_USE
    assert (
        f"node id {node_id!r} is already in use by a running agent" in second.output()
    )
    assert "pass a different --node-id" in second.output()


def test_cycle_options_without_cycles_warn(docker_client, caplog):
    url = f"nats://127.0.0.1:{free_port()}"
    args = ["--nats", url, "--node-id", "cli-nocycles", "--disconnect", "0"]

    result = CliRunner().invoke(main, [*args, "--reconnect", "5"])

    assert result.exit_code == EXIT_UNAVAILABLE
    assert "--reconnect has no effect: --disconnect 0 turns disconnect cycles off" in (
        caplog.text
    )


def test_help_lists_device_type_auto():
    result = CliRunner().invoke(main, ["--help"])

    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "selects the accelerator telemetry: ATLAS* reads" in text
    assert "'auto' detects the type" in text
    assert "/etc/nv_tegra_release" in text
    assert "[default: x86]" in text


def test_device_type_auto_logs_detection(spawn, nats_server, node_id, test_image):
    agent = spawn(
        "node-agent", "--nats", nats_server.url, "--node-id", node_id,
        "--device-type", "auto", "--disconnect", "0",
        wait_for="connected",
    )  # fmt: skip

    agent.send_signal(signal.SIGTERM)

    assert agent.wait() == 0
    assert f"node {node_id} detected device type " in agent.output()
