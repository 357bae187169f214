"""Remove the containers that an agent created for a node during a test."""

from __future__ import annotations

import logging

import docker
import docker.errors
from docker.models.containers import Container

logger = logging.getLogger(__name__)

NODE_LABEL = "dsched.node"
JOB_LABEL = "dsched.job"


def node_containers(client: docker.DockerClient, node_id: str) -> list[Container]:
    """Return every container, running or not, labelled `dsched.node=<node_id>`."""
    return client.containers.list(
        all=True, filters={"label": f"{NODE_LABEL}={node_id}"}
    )


def remove_node_containers(client: docker.DockerClient, node_id: str) -> list[str]:
    """Force-remove the containers labelled `dsched.node=<node_id>`.

    Anonymous volumes go with them. Returns the names of the removed containers.
    """
    removed = []
    for container in node_containers(client, node_id):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            # The agent or Docker's auto-remove got there first.
            continue
        removed.append(container.name)

    if removed:
        logger.info("removed containers of node %s: %s", node_id, removed)
    return removed
