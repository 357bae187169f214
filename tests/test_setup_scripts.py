"""Tests for scripts/ and for the test helpers in tests/support and conftest."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from tests.support.docker_cleanup import node_containers, remove_node_containers
from tests.support.procs import ProcessSpawner, SpawnedProcess

REPO_DIR = Path(__file__).resolve().parent.parent
PAGE_TEXT = "hello from docker-scheduler\n"
REQUIRED_APPLETS = ["sh", "httpd", "sleep", "cat", "echo", "ls", "env", "nc", "id"]
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
SCRIPT_TIMEOUT_S = 120
HTTP_TIMEOUT_S = 10.0


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )


def fetch_page(url: str) -> str:
    """GET `url` and return the body, retrying for at most HTTP_TIMEOUT_S."""
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() >= deadline:
                pytest.fail(f"GET {url} failed for {HTTP_TIMEOUT_S} s: {exc!r}")
        time.sleep(0.2)


def published_port(container: Container, container_port: str) -> int:
    container.reload()
    bindings = container.ports[container_port]
    return int(bindings[0]["HostPort"])


def start_broker(spawner: ProcessSpawner, tmp_path: Path) -> SpawnedProcess:
    return spawner(
        "broker",
        "--port",
        "0",
        "--store-dir",
        str(tmp_path / "store"),
        wait_for="listening on",
    )


def test_build_image_rejects_unknown_argument() -> None:
    result = run_script("scripts/build-image", "--bogus")

    assert result.returncode != 0
    assert "unknown argument '--bogus'" in result.stderr


def test_build_image_skips_existing_image(test_image: str) -> None:
    result = run_script("scripts/build-image")

    assert result.returncode == 0, result.stderr
    assert f"{test_image} already exists" in result.stdout


def test_scripts_test_fails_on_no_tests() -> None:
    result = run_script(
        "scripts/test", "tests/test_setup_scripts.py", "-k", "no_such_test_name"
    )

    assert result.returncode == 1
    assert "pytest collected no tests" in result.stderr


def test_image_serves_page(
    docker_client: docker.DockerClient,
    test_image: str,
    unique_name: Callable[..., str],
) -> None:
    container = docker_client.containers.run(
        test_image,
        ["httpd", "-f", "-p", "80", "-h", "/www"],
        name=unique_name("web"),
        detach=True,
        ports={"80/tcp": ("127.0.0.1", None)},
    )
    try:
        port = published_port(container, "80/tcp")
        page = fetch_page(f"http://127.0.0.1:{port}/")
    finally:
        container.remove(force=True)

    assert page == PAGE_TEXT


def test_image_has_applets_and_users(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    script = (
        'for a in "$0" "$@"; do echo "$a:$(readlink /bin/$a)"; done; id -un; ls -d /tmp'
    )

    output = docker_client.containers.run(
        test_image, ["sh", "-c", script, *REQUIRED_APPLETS], remove=True
    ).decode()

    lines = output.splitlines()
    assert lines[:-2] == [f"{applet}:busybox" for applet in REQUIRED_APPLETS]
    assert lines[-2] == "root"
    assert lines[-1] == "/tmp"


def test_image_default_command_is_shell(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    image = docker_client.images.get(test_image)

    assert image.attrs["Config"]["Cmd"] == ["/bin/sh"]


def test_remove_node_containers_keeps_others(
    docker_client: docker.DockerClient,
    test_image: str,
    unique_name: Callable[..., str],
) -> None:
    node_id = unique_name("node")
    other_node_id = unique_name("node")
    for owner in (node_id, node_id, other_node_id):
        docker_client.containers.create(
            test_image,
            ["sleep", "60"],
            name=unique_name("c"),
            labels={"dsched.node": owner, "dsched.job": "cleanup-test"},
        )

    try:
        removed = remove_node_containers(docker_client, node_id)
        left = node_containers(docker_client, node_id)
        others = node_containers(docker_client, other_node_id)
    finally:
        remove_node_containers(docker_client, other_node_id)

    assert len(removed) == 2
    assert left == []
    assert len(others) == 1


def test_unique_name_format_and_uniqueness(unique_name: Callable[..., str]) -> None:
    names = [unique_name() for _ in range(50)] + [unique_name("job_1")]

    assert all(NAME_PATTERN.fullmatch(name) for name in names)
    assert len(set(names)) == len(names)
    assert names[0].startswith("t-")
    assert names[-1].startswith("job_1-")


def test_unique_name_rejects_bad_prefix(unique_name: Callable[..., str]) -> None:
    with pytest.raises(ValueError, match="invalid name prefix 'a.b'"):
        unique_name("a.b")


def test_spawn_fails_when_process_exits(spawn: ProcessSpawner) -> None:
    process = spawn("broker", "--port", "70000")

    with pytest.raises(pytest.fail.Exception, match="exited with code 2"):
        process.wait_for_output("never printed")

    assert "--port" in process.output()


def test_spawn_times_out_with_tail(spawn: ProcessSpawner, tmp_path: Path) -> None:
    process = start_broker(spawn, tmp_path)

    with pytest.raises(pytest.fail.Exception, match="listening on") as excinfo:
        process.wait_for_output("never printed", timeout_s=0.5)

    assert "within 0.5 s" in str(excinfo.value)


def test_spawn_stops_processes_at_teardown(tmp_path: Path) -> None:
    spawner = ProcessSpawner(tmp_path / "procs")
    process = start_broker(spawner, tmp_path)

    spawner.stop_all()

    assert process.returncode == 0
    assert spawner.processes == []
