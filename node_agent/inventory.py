"""Build ContainerInfo records from Docker's inspect and list payloads."""

import datetime
import re
from typing import Any

from node_agent.translate import JOB_LABEL, NODE_LABEL
from schemas.messages import ContainerInfo, PublishedPort

# Docker reports a time that was never set as the zero time of Go.
_ZERO_TIME_PREFIX = "0001-01-01"
_EXIT_CODE_RE = re.compile(r"Exited \((?P<code>-?\d+)\)")
_STOPPED_STATES = ("exited", "dead")


def from_inspect(attrs: dict[str, Any]) -> ContainerInfo:
    """Build the record of one container from `GET /containers/{id}/json`."""
    config = attrs["Config"]
    labels = config.get("Labels") or {}
    state = attrs["State"]
    status = state["Status"]
    stopped = status in _STOPPED_STATES
    network_ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}

    return ContainerInfo(
        id=attrs["Id"],
        name=attrs["Name"].lstrip("/"),
        job=labels.get(JOB_LABEL, ""),
        node=labels.get(NODE_LABEL, ""),
        image=config["Image"],
        state=status,
        status=_inspect_status(state),
        exit_code=state["ExitCode"] if stopped else None,
        oom_killed=bool(state.get("OOMKilled")),
        ports=_ports_from_inspect(network_ports),
        created_at=attrs.get("Created", ""),
        started_at=_set_time(state.get("StartedAt", "")),
        finished_at=_set_time(state.get("FinishedAt", "")),
    )


def from_summary(summary: dict[str, Any]) -> ContainerInfo:
    """Build the record of one container from an entry of `GET /containers/json`.

    The list payload has no timestamps of the last start and stop, so those
    stay empty; the exit code comes from the status text ("Exited (137) ...").
    """
    labels = summary.get("Labels") or {}
    status_text = summary.get("Status", "")
    match = _EXIT_CODE_RE.match(status_text)
    created = datetime.datetime.fromtimestamp(summary["Created"], datetime.UTC)

    return ContainerInfo(
        id=summary["Id"],
        name=summary["Names"][0].lstrip("/") if summary.get("Names") else "",
        job=labels.get(JOB_LABEL, ""),
        node=labels.get(NODE_LABEL, ""),
        image=summary.get("Image", ""),
        state=summary["State"],
        status=status_text,
        exit_code=int(match["code"]) if match else None,
        ports=_ports_from_summary(summary.get("Ports") or []),
        created_at=created.isoformat().replace("+00:00", "Z"),
    )


def _inspect_status(state: dict[str, Any]) -> str:
    if state["Status"] in _STOPPED_STATES:
        return f"exited with code {state['ExitCode']}"
    if state.get("Error"):
        return state["Error"]
    return state["Status"]


def _ports_from_inspect(ports: dict[str, Any]) -> list[PublishedPort]:
    published = []
    for key, bindings in ports.items():
        container_port, _, protocol = key.partition("/")
        for binding in bindings or []:
            published.append(
                PublishedPort(
                    container_port=int(container_port),
                    protocol=protocol or "tcp",
                    host_ip=binding.get("HostIp", ""),
                    host_port=int(binding["HostPort"]),
                )
            )

    return published


def _ports_from_summary(ports: list[dict[str, Any]]) -> list[PublishedPort]:
    return [
        PublishedPort(
            container_port=port["PrivatePort"],
            protocol=port.get("Type", "tcp"),
            host_ip=port.get("IP", ""),
            host_port=port["PublicPort"],
        )
        for port in ports
        if port.get("PublicPort")
    ]


def _set_time(value: str) -> str:
    return "" if value.startswith(_ZERO_TIME_PREFIX) else value
