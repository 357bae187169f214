"""Translate a JobSpec into the body of Docker Engine's `POST /containers/create`.

The body matches what the Docker CLI 28 sends for the same flags of
`docker run -d` (API 1.41), so `docker inspect` shows the same Config and
HostConfig for a job's container as for one started by hand. The CLI sends
some fields that the docker SDK leaves out: an empty PortBindings map, the
restart policy name "no", and empty lists for devices, ulimits and DNS.
The daemon reports those differently, so this module builds the whole body
itself instead of going through the SDK's keyword arguments.
"""

import math
from typing import Any

from schemas import values
from schemas.job import Healthcheck, JobSpec

NODE_LABEL = "dsched.node"
JOB_LABEL = "dsched.job"
NANOSECONDS_PER_SECOND = 1_000_000_000

# Host config lists that the CLI always sends, empty when no flag sets them.
_EMPTY_HOST_LISTS = (
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
)


def agent_labels(node: str, job: str) -> dict[str, str]:
    """Return the labels by which an agent finds the containers it owns."""
    return {NODE_LABEL: node, JOB_LABEL: job}


def create_body(spec: JobSpec, node: str) -> dict[str, Any]:
    """Build the create request body for the job's container on `node`."""
    body = _config(spec)
    body["Labels"] = {**spec.labels_dict(), **agent_labels(node, spec.name)}
    body["HostConfig"] = _host_config(spec)
    body["NetworkingConfig"] = {"EndpointsConfig": {}}

    return body


def _config(spec: JobSpec) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": values.argv(spec.command),
        "Env": [f"{key}={value}" for key, value in spec.environment_dict().items()],
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "StdinOnce": False,
        "ExposedPorts": _exposed_ports(spec),
        "Volumes": _anonymous_volumes(spec),
        "WorkingDir": spec.working_dir or "",
        "User": spec.user or "",
        "Hostname": spec.hostname or "",
        "Domainname": "",
    }
    if spec.entrypoint is not None:
        config["Entrypoint"] = values.argv(spec.entrypoint)
    if spec.stop_signal is not None:
        config["StopSignal"] = spec.stop_signal
    if spec.stop_grace_period is not None:
        config["StopTimeout"] = stop_timeout_s(spec)
    if spec.healthcheck is not None:
        config["Healthcheck"] = healthcheck(spec.healthcheck)

    return config


def _host_config(spec: JobSpec) -> dict[str, Any]:
    restart = values.parse_restart(spec.restart)
    host_config: dict[str, Any] = {
        "Binds": _binds(spec) or None,
        "PortBindings": port_bindings(spec),
        "RestartPolicy": {
            "Name": restart.name,
            "MaximumRetryCount": restart.max_retries,
        },
        "NetworkMode": spec.network_mode or "default",
        "Privileged": spec.privileged,
        "Devices": devices(spec),
        "CapAdd": [capability(name) for name in spec.cap_add] or None,
        "CapDrop": [capability(name) for name in spec.cap_drop] or None,
        "ExtraHosts": [f"{host}:{ip}" for host, ip in spec.extra_host_pairs()] or None,
        "Ulimits": ulimits(spec),
        "NanoCpus": round(spec.cpus * NANOSECONDS_PER_SECOND) if spec.cpus else 0,
        "Memory": _size_or_zero(spec.mem_limit),
        "ShmSize": _size_or_zero(spec.shm_size),
    }
    host_config.update({name: [] for name in _EMPTY_HOST_LISTS})

    return host_config


def _exposed_ports(spec: JobSpec) -> dict[str, dict]:
    return {_port_key(port): {} for port in spec.port_mappings()}


def port_bindings(spec: JobSpec) -> dict[str, list[dict[str, str]]]:
    """Map `PORT/PROTOCOL` to its host bindings, in the order the job lists them."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in spec.port_mappings():
        host_port = "" if port.host_port is None else str(port.host_port)
        binding = {"HostIp": port.host_ip, "HostPort": host_port}
        bindings.setdefault(_port_key(port), []).append(binding)

    return bindings


def _port_key(port: values.PortMapping) -> str:
    return f"{port.container_port}/{port.protocol}"


def _binds(spec: JobSpec) -> list[str]:
    return [volume for volume in spec.volumes if ":" in volume]


def _anonymous_volumes(spec: JobSpec) -> dict[str, dict]:
    return {volume: {} for volume in spec.volumes if ":" not in volume}


def devices(spec: JobSpec) -> list[dict[str, str]]:
    result = []
    for entry in spec.devices:
        device = values.parse_device(entry)
        result.append(
            {
                "PathOnHost": device.host_path,
                "PathInContainer": device.container_path,
                "CgroupPermissions": device.permissions,
            }
        )

    return result


def capability(name: str) -> str:
    """Normalise a capability name the way the CLI does: `net_admin` -> `CAP_NET_ADMIN`."""
    upper = name.upper()
    if upper == "ALL" or upper.startswith("CAP_"):
        return upper
    return f"CAP_{upper}"


def ulimits(spec: JobSpec) -> list[dict[str, Any]]:
    result = []
    for name, limit in spec.ulimits.items():
        soft, hard = (
            (limit, limit) if isinstance(limit, int) else (limit.soft, limit.hard)
        )
        result.append({"Name": name, "Soft": soft, "Hard": hard})

    return result


def healthcheck(check: Healthcheck) -> dict[str, Any]:
    """Build Docker's Healthcheck: durations in nanoseconds, unset ones left out."""
    if check.disable:
        return {"Test": ["NONE"]}
    result: dict[str, Any] = {}
    if isinstance(check.test, str):
        result["Test"] = ["CMD-SHELL", check.test]
    elif check.test is not None:
        result["Test"] = list(check.test)
    for field, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
    ):
        duration = getattr(check, field)
        if duration is not None:
            seconds = values.parse_duration(duration)
            result[key] = round(seconds * NANOSECONDS_PER_SECOND)
    if check.retries is not None:
        result["Retries"] = check.retries

    return result


def stop_timeout_s(spec: JobSpec) -> int:
    """Return the stop grace in whole seconds, rounded up so it never shrinks."""
    return math.ceil(spec.stop_grace_s() or 0)


def _size_or_zero(size: str | int | None) -> int:
    return 0 if size is None else values.parse_size(size)
