"""The Docker driver: container lifecycle on the node's own Docker Engine.

The driver is synchronous, as the docker SDK is; the agent calls it through
`asyncio.to_thread`. It finds a job's container by the labels
`dsched.node=<node>` and `dsched.job=<job>`, so it never touches a container
that another agent, or a person, created on the same engine. Every Engine
call runs inside `docker_errors.translated`, so callers only see AgentError.
"""

import logging
import math
from typing import Any

import docker
import docker.errors
import docker.utils
import msgspec

from node_agent import inventory
from node_agent.docker_errors import SETUP_HINT, translated
from node_agent.errors import AgentError
from node_agent.reservations import Limits, limits_from_host_config
from node_agent.translate import JOB_LABEL, NODE_LABEL, create_body
from schemas.job import JobSpec
from schemas.messages import ContainerInfo

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_TIMEOUT_S = 60.0
# Docker's own stop grace when neither the command nor the container sets one.
DEFAULT_STOP_GRACE_S = 10
_ACTIVE_STATES = ("running", "paused", "restarting")
# States that show a container stopped again right after its start.
_EXITED_AT_START_STATES = ("exited", "dead", "restarting")
# How many log lines the error of a container that exited at start quotes.
EXIT_LOG_LINES = 5


class DockerDriver:
    """Lifecycle operations on the containers of one node."""

    def __init__(
        self,
        node: str,
        base_url: str | None = None,
        client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S,
    ) -> None:
        self.node = node
        self.base_url = base_url
        self.client_timeout_s = client_timeout_s
        self._api: docker.APIClient | None = None

    def connect(self) -> str:
        """Open the Engine API client and return the engine's version."""
        kwargs = docker.utils.kwargs_from_env()
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        where = kwargs.get("base_url") or "the default socket"
        try:
            self._api = docker.APIClient(
                version="auto", timeout=self.client_timeout_s, **kwargs
            )
            return self._api.version()["Version"]
        except docker.errors.DockerException as exc:
            raise AgentError(
                "unavailable",
                f"cannot reach the Docker Engine at {where}: {exc}; {SETUP_HINT}",
            ) from exc

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            raise RuntimeError("DockerDriver.connect() must run before any operation")
        return self._api

    # Lookup

    def find(self, job: str) -> dict[str, Any]:
        """Return the inspect payload of the job's container on this node.

        The container is named after the job, or after the job and the node
        when another node's agent on the same engine took the plain name.
        So one inspect by name finds it; its labels then prove that this node
        owns it.
        """
        for name in (job, self._shared_engine_name(job)):
            with translated(f"looking up the container of job {job!r}"):
                try:
                    attrs = self.api.inspect_container(name)
                except docker.errors.NotFound:
                    continue
            labels = attrs.get("Config", {}).get("Labels") or {}
            if labels.get(NODE_LABEL) == self.node and labels.get(JOB_LABEL) == job:
                return attrs
        raise AgentError(
            "not_found", f"job {job!r} has no container on node {self.node!r}"
        )

    def _shared_engine_name(self, job: str) -> str:
        """Return the container name used when another node has the job's name."""
        return f"{job}.{self.node}"

    def _copy_on_other_node(self, job: str) -> bool:
        """Return whether the container named `job` is this job's on another node."""
        with translated(f"looking up container {job!r}"):
            try:
                attrs = self.api.inspect_container(job)
            except docker.errors.NotFound:
                return False
        labels = attrs.get("Config", {}).get("Labels") or {}
        node = labels.get(NODE_LABEL)
        return labels.get(JOB_LABEL) == job and node is not None and node != self.node

    def inspect(self, job: str) -> ContainerInfo:
        return inventory.from_inspect(self.find(job))

    def list_containers(self) -> list[ContainerInfo]:
        """Return every container that carries this node's label."""
        filters = {"label": [f"{NODE_LABEL}={self.node}"]}
        with translated(f"listing the containers of node {self.node!r}"):
            summaries = self.api.containers(all=True, filters=filters)

        return [inventory.from_summary(summary) for summary in summaries]

    def container_limits(self, container_id: str) -> Limits | None:
        """Return a container's CPU and memory limits, or None if it was removed.

        The list payload of `list_containers` carries no limits, so this
        costs one inspect.
        """
        with translated(f"reading the limits of container {container_id[:12]}"):
            try:
                attrs = self.api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None

        return limits_from_host_config(attrs.get("HostConfig") or {})

    def logs(self, job: str, tail: int) -> str:
        """Return the last `tail` lines of stdout and stderr, decoded as UTF-8."""
        attrs = self.find(job)
        with translated(f"reading the logs of job {job!r}"):
            output = self.api.logs(attrs["Id"], stdout=True, stderr=True, tail=tail)

        return output.decode("utf-8", errors="replace")

    # Create

    def create(
        self, spec: JobSpec, start: bool = True, pull: bool = True
    ) -> ContainerInfo:
        """Create the job's container, start it when asked, and return its record.

        When the start fails, or the inspect right after the start finds the
        container exited, dead or restarting, the container is removed and
        AgentError is raised. A container that exits after that inspect is
        not caught here.
        """
        self._ensure_image(spec.image, pull)
        attempt = f"creating the container of job {spec.name!r} on node {self.node!r}"
        with translated(attempt):
            created = self._create_named(spec)
        container_id = created["Id"]
        logger.info(
            "node %s created container %s of job %s",
            self.node,
            container_id[:12],
            spec.name,
        )
        if start:
            attrs = self._start_new(spec.name, container_id)
        else:
            attrs = self._inspect_new(spec.name, container_id)

        return inventory.from_inspect(attrs)

    def _create_named(self, spec: JobSpec) -> dict[str, Any]:
        """Create the container under the job's name, or the job's and node's.

        The second name is for agents of several nodes on one engine, when
        another node has a container of this job (a copy the job moved from).
        """
        body = create_body(spec, self.node)
        try:
            return self.api.create_container_from_config(body, name=spec.name)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            if not self._copy_on_other_node(spec.name):
                raise self._name_in_use(spec.name) from exc
        name = self._shared_engine_name(spec.name)
        try:
            return self.api.create_container_from_config(body, name=name)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise self._name_in_use(name) from exc
            raise

    def _name_in_use(self, job: str) -> AgentError:
        return AgentError(
            "conflict",
            f"container name {job!r} is already in use on node {self.node!r}; "
            "remove that container or choose another job name",
        )

    def _start_new(self, job: str, container_id: str) -> dict[str, Any]:
        """Start a new container and return its inspect payload.

        A container that failed to start, or that already stopped or
        restarts at the inspect right after the start, is removed.
        """
        try:
            with translated(f"starting job {job!r} on node {self.node!r}"):
                self.api.start(container_id)
            attrs = self._inspect_new(job, container_id)
            # NOTE: a container that exits a few milliseconds after this
            # inspect still counts as started. In 20 creates of
            # `sh -c 'echo boom; exit 3'` (Docker 20.10.24, one x86 host) the
            # inspect already showed the exit in 19. Docker's wait endpoint
            # would catch the rest only by delaying every successful create
            # for its whole timeout.
            self._check_still_running(job, attrs)
        except AgentError:
            self._remove_failed(job, container_id)
            raise

        return attrs

    def _inspect_new(self, job: str, container_id: str) -> dict[str, Any]:
        with translated(f"inspecting the new container of job {job!r}"):
            return self.api.inspect_container(container_id)

    def _check_still_running(self, job: str, attrs: dict[str, Any]) -> None:
        state = attrs["State"]
        if state["Status"] not in _EXITED_AT_START_STATES:
            return
        restarting = " and Docker is restarting it" if state["Restarting"] else ""
        raise AgentError(
            "docker_error",
            f"container of job {job!r} exited with code {state['ExitCode']} right "
            f"after it started{restarting}; last log lines: "
            f"{self._last_log_lines(attrs['Id'])!r}; fix the job's command or "
            "image and submit it again",
        )

    def _last_log_lines(self, container_id: str) -> str:
        with translated(f"reading the logs of container {container_id[:12]}"):
            output = self.api.logs(
                container_id, stdout=True, stderr=True, tail=EXIT_LOG_LINES
            )

        return output.decode("utf-8", errors="replace").strip()

    def _remove_failed(self, job: str, container_id: str) -> None:
        with translated(f"removing the failed container of job {job!r}"):
            self.api.remove_container(container_id, force=True)
        logger.warning(
            "node %s removed container %s of job %s after its start failed",
            self.node,
            container_id[:12],
            job,
        )

    def _ensure_image(self, image: str, pull: bool) -> None:
        with translated(f"looking up image {image!r} on node {self.node!r}"):
            try:
                self.api.inspect_image(image)
                return
            except docker.errors.ImageNotFound:
                pass
        if not pull:
            raise AgentError(
                "not_found",
                f"image {image!r} is not present on node {self.node!r} and pulling "
                "is off; load the image on the node or send the command with pull",
            )
        self._pull(image)

    def _pull(self, image: str) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        logger.info("node %s pulling image %s", self.node, image)
        try:
            self.api.pull(repository, tag=tag or "latest")
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            explanation = getattr(exc, "explanation", None) or exc
            raise AgentError(
                "not_found",
                f"image {image!r} is not present on node {self.node!r} and could "
                f"not be pulled: {explanation}",
            ) from exc

    # State changes

    def start(self, job: str) -> ContainerInfo:
        """Start the job's container; a running one is left as it is."""
        attrs = self.find(job)
        state = attrs["State"]["Status"]
        if state == "paused":
            raise self._wrong_state(job, "is paused", "unpause it instead")
        if state != "running":
            with translated(f"starting job {job!r} on node {self.node!r}"):
                self.api.start(attrs["Id"])

        return self.inspect(job)

    def stop(self, job: str, grace_s: float | None = None) -> ContainerInfo:
        """Stop the job's container, killing it after `grace_s` seconds.

        Without `grace_s` the container's own stop timeout applies. The
        grace is passed to Docker explicitly, because the SDK adds it to the
        HTTP timeout only then. If the HTTP call still times out, the
        container's state decides the outcome.
        """
        return self._stop_found(
            job, self.find(job), grace_s, "send the stop again or remove the job"
        )

    def _stop_found(
        self, job: str, attrs: dict[str, Any], grace_s: float | None, fix: str
    ) -> ContainerInfo:
        """Stop the container of `attrs` and return its new record.

        `fix` ends the error of a stop that timed out with the container
        still running.
        """
        if attrs["State"]["Status"] not in _ACTIVE_STATES:
            return inventory.from_inspect(attrs)
        grace = self._stop_grace_s(attrs, grace_s)
        try:
            with translated(f"stopping job {job!r} on node {self.node!r}"):
                self.api.stop(attrs["Id"], timeout=grace)
        except AgentError as exc:
            if exc.code != "timeout":
                raise
            return self._settle_timed_out_stop(job, grace, exc, fix)

        return self.inspect(job)

    def _stop_grace_s(self, attrs: dict[str, Any], grace_s: float | None) -> int:
        if grace_s is not None:
            return math.ceil(grace_s)
        configured = attrs["Config"].get("StopTimeout")

        return DEFAULT_STOP_GRACE_S if configured is None else configured

    def _settle_timed_out_stop(
        self, job: str, grace_s: int, error: AgentError, fix: str
    ) -> ContainerInfo:
        info = self.inspect(job)
        if info.state not in _ACTIVE_STATES:
            logger.warning(
                "node %s: stop of job %s timed out in the client but the "
                "container stopped (%s)",
                self.node,
                job,
                info.status,
            )
            return info
        raise AgentError(
            "timeout",
            f"stopping job {job!r} on node {self.node!r} timed out after the "
            f"{grace_s} s grace plus the {self.client_timeout_s} s client timeout, "
            f"and the container is still {info.state}; {fix}",
        ) from error

    def pause(self, job: str) -> ContainerInfo:
        """Pause the job's container; a paused one is left as it is."""
        return self._switch_pause(
            job, "paused", "running", self.api.pause, "pausing", "start it first"
        )

    def unpause(self, job: str) -> ContainerInfo:
        """Unpause the job's container; a running one is left as it is."""
        return self._switch_pause(
            job, "running", "paused", self.api.unpause, "unpausing", "start it instead"
        )

    def _switch_pause(
        self, job: str, target: str, required: str, call, verb: str, fix: str
    ) -> ContainerInfo:
        attrs = self.find(job)
        state = attrs["State"]["Status"]
        if state == target:
            return inventory.from_inspect(attrs)
        if state != required:
            raise self._wrong_state(job, f"is not {required} (state {state})", fix)
        with translated(f"{verb} job {job!r} on node {self.node!r}"):
            call(attrs["Id"])

        # Pause and unpause change only the state, so the record before the
        # call with the new state saves a second inspect.
        return msgspec.structs.replace(
            inventory.from_inspect(attrs), state=target, status=target
        )

    def remove(self, job: str, force: bool = True) -> ContainerInfo:
        """Stop the job's container as `stop` does, then remove it.

        The stop sends the container's stop signal and kills it after its
        stop grace, so the job can shut down cleanly before it is removed.
        Returns the record of the stopped container.
        """
        attrs = self.find(job)
        info = self._stop_found(job, attrs, None, "send the remove again")
        with translated(f"removing the container of job {job!r} on node {self.node!r}"):
            self.api.remove_container(attrs["Id"], force=force)
        logger.info(
            "node %s removed container %s of job %s", self.node, attrs["Id"][:12], job
        )

        return info

    def _wrong_state(self, job: str, problem: str, fix: str) -> AgentError:
        return AgentError(
            "conflict",
            f"container of job {job!r} on node {self.node!r} {problem}; {fix}",
        )

    # Events

    def events(self, since_s: int | None = None):
        """Open Docker's event stream for this node's containers.

        The stream starts at `since_s` (Unix seconds) when given, else now.
        Iterating it blocks while it waits; its `close()` ends it from any
        thread.
        """
        filters = {"type": ["container"], "label": [f"{NODE_LABEL}={self.node}"]}
        with translated(f"opening the Docker event stream of node {self.node!r}"):
            return self.api.events(since=since_s, decode=True, filters=filters)
