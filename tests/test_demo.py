"""The README's demo command, run end to end on free loopback ports."""

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DEMO_TIMEOUT_S = 180
DEMO_NODE = "demo-01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.nats
@pytest.mark.docker
def test_demo_serves_page_then_stops(docker_client, test_image, tmp_path):
    env = {
        **os.environ,
        "DSCHED_DEMO_NATS_PORT": str(free_port()),
        "DSCHED_DEMO_HTTP_PORT": str(free_port()),
        "DSCHED_DEMO_DIR": str(tmp_path / "demo"),
    }

    started = run_demo(env)
    stopped = run_demo(env, "stop")
    left = docker_client.containers.list(
        all=True, filters={"label": f"dsched.node={DEMO_NODE}"}
    )

    assert started.returncode == 0, started.stdout + started.stderr
    assert "the job serves: hello from docker-scheduler" in started.stdout
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "demo stopped" in stopped.stdout
    assert left == []


def test_demo_names_variable_for_taken_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "DSCHED_DEMO_NATS_PORT": str(port),
            "DSCHED_DEMO_DIR": str(tmp_path / "demo"),
        }

        result = run_demo(env)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "DSCHED_DEMO_NATS_PORT" in result.stderr
