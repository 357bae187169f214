import pytest

from broker.server import BrokerError, NatsServer
from tests.controller.fleet import Fleet


@pytest.fixture
def fleet(
    nats_server, cleanup_node, spawn, docker_client, test_image, unique_name, tmp_path
):
    """A controller and an agent of a fresh node on their own nats-server."""
    node = cleanup_node(unique_name("node"))
    fleet = Fleet(
        url=nats_server.url,
        node=node,
        image=test_image,
        tmp_path=tmp_path,
        spawn=spawn,
        docker=docker_client,
    )
    fleet.start_controller()
    fleet.start_agent()
    fleet.wait_for_node()
    return fleet


@pytest.fixture
def auth_nats_server(tmp_path):
    """A function `auth_nats_server(block)` that starts a nats-server whose
    configuration has `authorization { <block> }`, and stops it at teardown."""
    servers = []

    def start(block: str) -> NatsServer:
        config = tmp_path / f"auth-{len(servers)}.conf"
        config.write_text(f"authorization {{\n{block}\n}}\n")
        server = NatsServer(tmp_path / f"auth-{len(servers)}", config_file=config)
        servers.append(server)
        try:
            server.start()
        except BrokerError as exc:
            pytest.fail(f"cannot start nats-server for the test: {exc}", pytrace=False)
        return server

    yield start
    for server in servers:
        server.stop()
