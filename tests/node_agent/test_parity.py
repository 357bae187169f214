"""Parity of job containers with containers the Docker CLI creates from the same flags.

For each case, one container comes from `docker create` (or `docker run -d`)
with CLI flags and one from the agent's translation of the equivalent job
spec. `docker inspect` must show the same Config and HostConfig, apart from
the fields listed below with the reason they differ.
"""

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import msgspec
import pytest

from node_agent.driver import DockerDriver
from schemas.job import JobSpec
from tests.node_agent.support import free_port

CLI_TIMEOUT_S = 60

# Docker picks a random hostname (the short container id) unless one is set.
DIFFERENT_IDS = {"Config": {"Hostname"}, "HostConfig": set()}
# `docker create` attaches stdout and stderr (and stdin with -i) for a later
# `docker start -a`. The agent never attaches, so it sends what `docker run -d`
# sends: no attach and no StdinOnce.
CREATE_ATTACH_FIELDS = {"AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"}
AGENT_LABEL_PREFIX = "dsched."
# The Docker CLI 28 passes `-e` and `-v` values through Go maps, so the order
# of Env and Binds changes from run to run. The entries are what count.
UNORDERED_FIELDS = {("Config", "Env"), ("HostConfig", "Binds")}


# name: (flags before the image, arguments after it, equivalent job fields).
# "{data}" and "{volume}" stand for a host directory and a named volume that
# the test creates.
CASES: dict[str, tuple[list[str], list[str], dict]] = {
    "plain": ([], [], {}),
    "command": (
        [],
        ["sh", "-c", "echo hi; sleep 1"],
        {"command": "sh -c 'echo hi; sleep 1'"},
    ),
    "entrypoint": (
        ["--entrypoint", "/bin/sh"],
        ["-c", "sleep 1"],
        {"entrypoint": ["/bin/sh"], "command": ["-c", "sleep 1"]},
    ),
    "environment_map": (
        ["-e", "A=1", "-e", "B=", "-e", "C=x=y"],
        [],
        {"environment": {"A": 1, "B": None, "C": "x=y"}},
    ),
    "environment_list": (
        ["-e", "A=1", "-e", "B=2"],
        [],
        {"environment": ["A=1", "B=2"]},
    ),
    "privileged": (["--privileged"], [], {"privileged": True}),
    "devices": (
        ["--device", "/dev/null:/dev/davinci0", "--device", "/dev/zero"]
        + ["--device", "/dev/null:/dev/davinci_manager:r"],
        [],
        {
            "devices": [
                "/dev/null:/dev/davinci0",
                "/dev/zero",
                "/dev/null:/dev/davinci_manager:r",
            ]
        },
    ),
    "volumes": (
        ["-v", "{data}:/data:ro", "-v", "/scratch", "-v", "{volume}:/named"],
        [],
        {"volumes": ["{data}:/data:ro", "/scratch", "{volume}:/named"]},
    ),
    "ports": (
        ["-p", "18080:80", "-p", "127.0.0.1:19000:9000/udp", "-p", "81"],
        [],
        {"ports": ["18080:80", "127.0.0.1:19000:9000/udp", 81]},
    ),
    "tty_stdin_open": (["-t", "-i"], [], {"tty": True, "stdin_open": True}),
    "network_host": (["--network", "host"], [], {"network_mode": "host"}),
    "network_none": (["--network", "none"], [], {"network_mode": "none"}),
    "restart_on_failure": (
        ["--restart", "on-failure:3"],
        [],
        {"restart": "on-failure:3"},
    ),
    "restart_always": (["--restart", "always"], [], {"restart": "always"}),
    "restart_unless_stopped": (
        ["--restart", "unless-stopped"],
        [],
        {"restart": "unless-stopped"},
    ),
    "restart_no": (["--restart", "no"], [], {"restart": "no"}),
    "limits": (
        ["--cpus", "1.5", "-m", "256m", "--shm-size", "128m"],
        [],
        {"cpus": 1.5, "mem_limit": "256m", "shm_size": "128m"},
    ),
    "labels": (
        ["--label", "team=edge", "--label", "empty="],
        [],
        {"labels": ["team=edge", "empty="]},
    ),
    "process": (
        ["-w", "/tmp", "-u", "nobody", "--hostname", "box1"],
        [],
        {"working_dir": "/tmp", "user": "nobody", "hostname": "box1"},
    ),
    "capabilities": (
        ["--cap-add", "net_admin", "--cap-add", "SYS_TIME", "--cap-drop", "CAP_MKNOD"],
        [],
        {"cap_add": ["net_admin", "SYS_TIME"], "cap_drop": ["CAP_MKNOD"]},
    ),
    "extra_hosts": (
        ["--add-host", "db:10.0.0.2", "--add-host", "cache=10.0.0.3"],
        [],
        {"extra_hosts": ["db:10.0.0.2", "cache=10.0.0.3"]},
    ),
    "ulimits": (
        ["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=512"],
        [],
        {"ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512}},
    ),
    "healthcheck": (
        ["--health-cmd", "wget -q -O- http://127.0.0.1/"]
        + ["--health-interval", "5s", "--health-timeout", "2s"]
        + ["--health-start-period", "1m", "--health-retries", "4"],
        [],
        {
            "healthcheck": {
                "test": "wget -q -O- http://127.0.0.1/",
                "interval": "5s",
                "timeout": "2s",
                "start_period": "1m",
                "retries": 4,
            }
        },
    ),
    "healthcheck_shell_list": (
        ["--health-cmd", "true", "--health-retries", "2"],
        [],
        {"healthcheck": {"test": ["CMD-SHELL", "true"], "retries": 2}},
    ),
    "no_healthcheck": (["--no-healthcheck"], [], {"healthcheck": {"disable": True}}),
    "stop": (
        ["--stop-signal", "SIGUSR1", "--stop-timeout", "30"],
        [],
        {"stop_signal": "SIGUSR1", "stop_grace_period": "30s"},
    ),
}


def fill(value, paths: dict[str, str]):
    """Replace the path placeholders in a flag list or job field value."""
    if isinstance(value, str):
        return value.format(**paths)
    if isinstance(value, list | tuple):
        return type(value)(fill(item, paths) for item in value)
    if isinstance(value, dict):
        return {key: fill(item, paths) for key, item in value.items()}
    return value


@pytest.fixture
def paths(tmp_path: Path, docker_client) -> Iterator[dict[str, str]]:
    data = tmp_path / "data"
    data.mkdir()
    volume = f"dsched-parity-{uuid.uuid4().hex[:8]}"

    yield {"data": str(data), "volume": volume}

    # The node clean-up removes the containers later, so drop them here first.
    for container in docker_client.containers.list(
        all=True, filters={"volume": volume}
    ):
        container.remove(force=True, v=True)
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.volumes.get(volume).remove(force=True)


def docker_cli(*args: str) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"docker {' '.join(args)} failed: {result.stderr}"

    return result.stdout.strip()


def inspect(name: str) -> dict:
    return json.loads(docker_cli("inspect", name))[0]


def differences(cli: dict, agent: dict, ignored: dict[str, set[str]]) -> list[str]:
    """Return one line per field of Config or HostConfig whose values differ."""
    found = []
    for part in ("Config", "HostConfig"):
        keys = set(cli[part]) | set(agent[part])
        for key in sorted(keys - ignored[part]):
            cli_value, agent_value = cli[part].get(key), agent[part].get(key)
            if key == "Labels":
                cli_value, agent_value = job_labels(cli_value), job_labels(agent_value)
            both_lists = isinstance(cli_value, list) and isinstance(agent_value, list)
            if (part, key) in UNORDERED_FIELDS and both_lists:
                cli_value, agent_value = sorted(cli_value), sorted(agent_value)
            if cli_value != agent_value:
                found.append(f"{part}.{key}: cli={cli_value!r} agent={agent_value!r}")

    return found


def job_labels(labels: dict | None) -> dict:
    """Drop the agent's own labels, which only the agent's container has."""
    return {
        key: value
        for key, value in (labels or {}).items()
        if not key.startswith(AGENT_LABEL_PREFIX)
    }


def create_through_agent(driver: DockerDriver, name: str, image: str, fields: dict):
    spec = msgspec.convert({"name": name, "image": image, **fields}, JobSpec)
    return driver.create(spec, start=False, pull=False)


@pytest.mark.parametrize("case", list(CASES))
def test_create_matches_docker_cli(case, driver, test_image, unique_name, paths):
    flags, arguments, fields = fill(CASES[case], paths)
    cli_name = unique_name("cli")
    agent_name = unique_name("agent")
    node_label = f"dsched.node={driver.node}"
    docker_cli(
        "create",
        "--name",
        cli_name,
        "--label",
        node_label,
        *flags,
        test_image,
        *arguments,
    )

    create_through_agent(driver, agent_name, test_image, fields)

    ignored = {
        "Config": DIFFERENT_IDS["Config"] | CREATE_ATTACH_FIELDS,
        "HostConfig": DIFFERENT_IDS["HostConfig"],
    }
    assert differences(inspect(cli_name), inspect(agent_name), ignored) == []


def test_atlas_service_matches_docker_run(driver, test_image, unique_name, tmp_path):
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    host_port = free_port()
    cli_name = unique_name("cli")
    agent_name = unique_name("agent")
    # NOTE: some sandboxes reject privileged containers at start ("unable to
    # apply caps"); `docker run` still leaves the created container to inspect.
    subprocess.run(
        ["docker", "run", "-itd", "--name", cli_name, "--label", f"dsched.node={driver.node}",
        "--privileged", "-e", "ASCEND_VISIBLE_DEVICES=0",
        "--device", "/dev/null:/dev/davinci0",
        "--device", "/dev/zero:/dev/davinci_manager",
        "--device", "/dev/null:/dev/devmm_svm",
        "-v", f"{driver_dir}:/usr/local/Ascend/driver:ro",
        "-p", f"127.0.0.1:{host_port}:80",
        test_image, "httpd", "-f", "-p", "80", "-h", "/www"],
        capture_output=True, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip

    create_through_agent(
        driver,
        agent_name,
        test_image,
        {
            "privileged": True,
            "tty": True,
            "stdin_open": True,
            "environment": {"ASCEND_VISIBLE_DEVICES": "0"},
            "devices": [
                "/dev/null:/dev/davinci0",
                "/dev/zero:/dev/davinci_manager",
                "/dev/null:/dev/devmm_svm",
            ],
            "volumes": [f"{driver_dir}:/usr/local/Ascend/driver:ro"],
            "ports": [f"127.0.0.1:{host_port}:80"],
            "command": "httpd -f -p 80 -h /www",
        },
    )

    # `docker run -d` attaches nothing, as the agent, so only ids may differ.
    assert differences(inspect(cli_name), inspect(agent_name), DIFFERENT_IDS) == []
