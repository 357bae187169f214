import pytest

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
