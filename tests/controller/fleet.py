"""A controller and one agent as child processes, driven through the CLI."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import yaml
from click.testing import CliRunner, Result

from controller.cli import cli

# Body of /www/index.html in the test image that scripts/build-image makes.
INDEX_TEXT = "hello from docker-scheduler\n"
POLL_INTERVAL_S = 0.1
# Attempts to list containers while the controller may remove one of them.
LIST_ATTEMPTS = 3
WAIT_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 3.0
HEARTBEAT_S = "0.5"
RECONCILE_INTERVAL_S = "0.3"
PING_INTERVAL_S = "0.5"
# Seconds that cover several heartbeats and reconcile passes, for checks that
# the controller leaves something alone.
SETTLE_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(port: int, retry_s: float = WAIT_TIMEOUT_S) -> str:
    """GET / from a port published on 127.0.0.1 and return the body.

    A container reported running may not listen yet, so a refused or reset
    connection is retried for `retry_s` seconds.
    """
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + retry_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                return response.read().decode()
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(POLL_INTERVAL_S)


def wait_until(check: Callable[[], object], what: str, timeout_s=WAIT_TIMEOUT_S):
    """Poll `check` until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class Fleet:
    """A nats-server, a controller, one agent and helpers to reach them."""

    url: str
    node: str
    image: str
    tmp_path: Path
    spawn: Callable
    docker: docker.DockerClient
    controller: object = None
    agent: object = None
    runner: CliRunner = field(default_factory=CliRunner)

    def start_controller(self, *options: str) -> None:
        """Start the controller with `options` added to its `serve` options."""
        self.controller = self.spawn(
            "controller",
            "--nats",
            self.url,
            "serve",
            "--reconcile-interval",
            RECONCILE_INTERVAL_S,
            "--ping-interval",
            PING_INTERVAL_S,
            *options,
            wait_for="controller ready",
        )

    def start_agent(self, *options: str, node: str | None = None):
        """Start an agent of `node` (the fleet's node by default) and return it.

        Disconnect cycles, on by default in node-agent, are off unless
        `options` turn them on with --disconnect.
        """
        agent = self.spawn(
            "node-agent",
            "--nats",
            self.url,
            "--node-id",
            node or self.node,
            "--heartbeat",
            HEARTBEAT_S,
            "--label",
            "zone=test",
            "--disconnect",
            "0",
            *options,
            wait_for="connected",
        )
        if node is None:
            self.agent = agent
        return agent

    def cli(self, *args: str) -> Result:
        return self.runner.invoke(cli, ["--nats", self.url, *args])

    def job_file(self, name: str, **fields) -> str:
        """Write a job file for an httpd container and return its path."""
        spec = {
            "name": name,
            "image": self.image,
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "stop_grace_period": "1s",
            "placement": {"node": self.node},
            **fields,
        }
        path = self.tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return str(path)

    def jobs(self) -> dict[str, dict]:
        result = self.cli("jobs", "--json")
        assert result.exit_code == 0, result.output
        return {job["name"]: job for job in json.loads(result.stdout)}

    def nodes(self) -> dict[str, dict]:
        result = self.cli("nodes", "--json")
        assert result.exit_code == 0, result.output
        return {node["name"]: node for node in json.loads(result.stdout)}

    def job_state(self, name: str) -> str | None:
        job = self.jobs().get(name)
        return job and job["state"]

    def containers(self, name: str) -> list:
        """Return the containers called `name`.

        The SDK inspects each listed container, so a container that the
        controller removes in between fails the call; the list is read again.
        """
        filters = {"name": f"^/?{name}$"}
        for _ in range(LIST_ATTEMPTS - 1):
            try:
                return self.docker.containers.list(all=True, filters=filters)
            except docker.errors.NotFound:
                continue
        return self.docker.containers.list(all=True, filters=filters)

    def container_state(self, name: str) -> str | None:
        containers = self.containers(name)
        return containers[0].status if containers else None

    def wait_for_node(self, state: str = "online") -> None:
        wait_until(
            lambda: self.nodes().get(self.node, {}).get("state") == state,
            f"node {self.node} {state}",
        )
