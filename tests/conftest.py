"""Fixtures for integration tests on a real nats-server and Docker Engine.

The helpers behind these fixtures are in the package tests.support.

Tests that use `nats_server` get the `nats` marker, and tests that use
`docker_client` (directly or through another fixture) get the `docker` marker,
so `pytest -m "not docker"` leaves out every test that needs Docker. Missing
services fail these tests and never skip them.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from broker.server import BrokerError, NatsServer
from tests.support.docker_cleanup import remove_node_containers
from tests.support.procs import ProcessSpawner

REPO_DIR = Path(__file__).resolve().parent.parent
BUILD_IMAGE_SCRIPT = REPO_DIR / "scripts" / "build-image"
BUILD_IMAGE_TIMEOUT_S = 300
TEST_IMAGE = "dsched/busybox:local"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixture_names = getattr(item, "fixturenames", ())
        if "nats_server" in fixture_names:
            item.add_marker(pytest.mark.nats)
        if "docker_client" in fixture_names:
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running nats-server with JetStream on a free loopback port.

    The store dir is in the test's tmp_path. `stop()` then `start()` restarts
    it on the same port with the same store.
    """
    server = NatsServer(tmp_path / "nats", host="127.0.0.1", port=0)
    try:
        server.start()
    except BrokerError as exc:
        pytest.fail(f"cannot start nats-server for the test: {exc}", pytrace=False)

    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker SDK client, connected to an engine that replied to a ping."""
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        pytest.fail(_no_engine_message(exc), pytrace=False)

    try:
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        client.close()
        pytest.fail(_no_engine_message(exc), pytrace=False)

    yield client
    client.close()


def _no_engine_message(exc: Exception) -> str:
    return (
        f"no Docker Engine answered: {exc}. Run scripts/setup as root: it "
        f"installs docker.io and starts dockerd"
    )


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient) -> str:
    """The tag of the local busybox image, built by scripts/build-image if missing."""
    if not _image_exists(docker_client, TEST_IMAGE):
        _build_test_image()
    if not _image_exists(docker_client, TEST_IMAGE):
        pytest.fail(
            f"{BUILD_IMAGE_SCRIPT} finished but image {TEST_IMAGE!r} is still "
            f"missing: run the script by hand and read its output",
            pytrace=False,
        )

    return TEST_IMAGE


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _build_test_image() -> None:
    try:
        result = subprocess.run(
            ["bash", str(BUILD_IMAGE_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_IMAGE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{BUILD_IMAGE_SCRIPT} did not finish within {BUILD_IMAGE_TIMEOUT_S} s",
            pytrace=False,
        )

    if result.returncode != 0:
        output_tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        pytest.fail(
            f"{BUILD_IMAGE_SCRIPT} failed with code {result.returncode}:\n"
            f"{output_tail}",
            pytrace=False,
        )


@pytest.fixture
def unique_name() -> Callable[..., str]:
    """A function `unique_name(prefix="t")` returning "<prefix>-<8 hex digits>".

    Names match [A-Za-z0-9][A-Za-z0-9_-]* and never repeat within a test.
    """
    issued: set[str] = set()

    def make_name(prefix: str = "t") -> str:
        if not NAME_PATTERN.fullmatch(prefix):
            raise ValueError(
                f"invalid name prefix {prefix!r}: it must match {NAME_PATTERN.pattern}"
            )
        while True:
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
            if name not in issued:
                issued.add(name)
                return name

    return make_name


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[ProcessSpawner]:
    """Start console scripts (`broker`, `controller`, `node-agent`) for a test.

    Every process started through it is stopped at teardown, SIGTERM first.
    """
    spawner = ProcessSpawner(tmp_path / "procs")
    yield spawner
    spawner.stop_all()


@pytest.fixture
def cleanup_node(docker_client: docker.DockerClient) -> Iterator[Callable[[str], str]]:
    """A function `cleanup_node(node_id)` that registers a node for clean-up.

    At teardown every container labelled dsched.node=<node_id> is removed.
    Request this fixture before `spawn`, so that pytest stops the agent before
    it removes the agent's containers.
    """
    node_ids: list[str] = []

    def register(node_id: str) -> str:
        node_ids.append(node_id)
        return node_id

    yield register
    for node_id in node_ids:
        remove_node_containers(docker_client, node_id)
