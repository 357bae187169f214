"""Fixtures of the node agent tests: a node id, a driver and an in-process agent."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import docker
import nats
import pytest
from nats.aio.client import Client

from node_agent.agent import Agent, AgentSettings
from node_agent.driver import DockerDriver
from node_agent.session import NatsOptions

HEARTBEAT_INTERVAL_S = 0.2
CONNECT_TIMEOUT_S = 5


@pytest.fixture
def node_id(unique_name: Callable[..., str], cleanup_node) -> str:
    """A unique node id whose containers are removed after the test."""
    return cleanup_node(unique_name("node"))


@pytest.fixture
def driver(
    node_id: str, docker_client: docker.DockerClient, test_image: str
) -> Iterator[DockerDriver]:
    connected = DockerDriver(node_id)
    connected.connect()
    yield connected
    connected.close()


@pytest.fixture
def agent_settings(nats_server, node_id: str) -> AgentSettings:
    return AgentSettings(
        node=node_id,
        device_type="ATLAS_I",
        labels={"site": "lab"},
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
        nats=NatsOptions(url=nats_server.url),
    )


@pytest.fixture
async def agent(
    agent_settings: AgentSettings, docker_client: docker.DockerClient, test_image: str
) -> AsyncIterator[Agent]:
    running = Agent(agent_settings)
    await asyncio.wait_for(running.start(), CONNECT_TIMEOUT_S)
    yield running
    await asyncio.wait_for(running.stop(), CONNECT_TIMEOUT_S * 6)


@pytest.fixture
async def nats_client(nats_server) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, connect_timeout=CONNECT_TIMEOUT_S)
    yield client
    await client.drain()


@pytest.fixture
async def start_agent(
    docker_client: docker.DockerClient, test_image: str
) -> AsyncIterator[Callable[[AgentSettings], Awaitable[Agent]]]:
    """Start agents with the given settings; stop them after the test."""
    started: list[Agent] = []

    async def start(settings: AgentSettings) -> Agent:
        agent = Agent(settings)
        await asyncio.wait_for(agent.start(), CONNECT_TIMEOUT_S)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await asyncio.wait_for(agent.stop(), CONNECT_TIMEOUT_S * 6)
