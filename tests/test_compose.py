"""Checks that compose.yaml and the Dockerfile refer to things that exist."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def console_scripts() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(project["project"]["scripts"])


def test_compose_defines_three_services():
    compose = load_compose()

    assert set(compose["services"]) == {"broker", "controller", "agent"}


def test_compose_commands_are_console_scripts():
    compose = load_compose()

    for name, service in compose["services"].items():
        assert service["command"][0] in console_scripts(), name


def test_compose_build_contexts_have_dockerfile():
    compose = load_compose()

    for service in compose["services"].values():
        assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_compose_dependencies_and_volumes_exist():
    compose = load_compose()
    services = compose["services"]

    for service in services.values():
        assert set(service.get("depends_on", [])) <= set(services)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("/") or source in compose["volumes"]


def test_compose_publishes_broker_on_loopback_only():
    compose = load_compose()

    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")


def test_agent_mounts_docker_socket():
    agent = load_compose()["services"]["agent"]

    assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]


def test_dockerfile_copies_existing_paths():
    dockerfile = (ROOT / "Dockerfile").read_text()

    sources = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE)

    assert sources
    for line in sources:
        for source in line.split():
            assert (ROOT / source).exists(), source


def test_dockerfile_installs_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    for package in project["tool"]["setuptools"]["packages"]:
        assert f"COPY {package} " in dockerfile
