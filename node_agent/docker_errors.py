"""Translation of docker SDK and requests errors into AgentError.

The driver wraps every Engine call in `translated(...)`, so this is the one
place where a library error becomes an error code of the wire contract.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import requests.exceptions

from node_agent.errors import AgentError
from schemas.messages import ErrorCode

SETUP_HINT = "start the Docker Engine (run scripts/setup)"

_STATUS_CODES: dict[int, ErrorCode] = {
    400: "invalid",
    404: "not_found",
    409: "conflict",
}
_PORT_IN_USE_MARKERS = ("port is already allocated", "address already in use")
_MISSING_DEVICE_RE = re.compile(r'adding custom device "(?P<path>[^"]+)"')


@contextmanager
def translated(attempt: str) -> Iterator[None]:
    """Raise AgentError for any docker or requests error, naming `attempt`.

    `attempt` describes what was tried, e.g. "starting job 'web' on node 'n1'".
    """
    try:
        yield
    except AgentError:
        raise
    except Exception as exc:
        error = translate(exc, attempt)
        if error is None:
            raise
        raise error from exc


def translate(exc: BaseException, attempt: str) -> AgentError | None:
    """Return the AgentError for a library error, or None for any other error."""
    if isinstance(exc, docker.errors.APIError):
        return _from_api_error(exc, attempt)
    if isinstance(exc, requests.exceptions.Timeout):
        return AgentError(
            "timeout", f"{attempt} timed out waiting for the Docker Engine"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return AgentError(
            "docker_error",
            f"{attempt} failed: cannot reach the Docker Engine ({exc}); {SETUP_HINT}",
        )
    if isinstance(exc, docker.errors.DockerException | requests.RequestException):
        return AgentError("docker_error", f"{attempt} failed: {exc}")
    return None


def _from_api_error(exc: docker.errors.APIError, attempt: str) -> AgentError:
    explanation = str(exc.explanation or exc)
    message = f"{attempt} failed: {explanation}"
    if any(marker in explanation for marker in _PORT_IN_USE_MARKERS):
        return AgentError(
            "conflict",
            f"{message}; a host port the job publishes is already in use, "
            "free it or publish another host port",
        )
    device = _MISSING_DEVICE_RE.search(explanation)
    if device is not None:
        return AgentError(
            "not_found",
            f"{attempt} failed: device {device['path']!r} does not exist on the "
            "node; fix the job's devices or place it on a node that has it",
        )
    if isinstance(exc, docker.errors.NotFound):
        return AgentError("not_found", message)
    code = _STATUS_CODES.get(exc.status_code or 0, "docker_error")

    return AgentError(code, message)
