"""Mapping of docker SDK and requests errors to the agent's error codes."""

import docker.errors
import pytest
import requests
import requests.exceptions

from node_agent.docker_errors import translate, translated
from node_agent.errors import AgentError

ATTEMPT = "starting job 'web' on node 'n1'"


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("server said no", response, explanation)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (docker.errors.NotFound("gone"), "not_found"),
        (docker.errors.ImageNotFound("no image"), "not_found"),
        (api_error(404, "No such container: x"), "not_found"),
        (api_error(409, "name in use"), "conflict"),
        (api_error(400, "bad parameter"), "invalid"),
        (api_error(500, "something broke"), "docker_error"),
        (docker.errors.DockerException("client side"), "docker_error"),
        (docker.errors.InvalidArgument("bad argument"), "docker_error"),
        (requests.exceptions.ReadTimeout("slow"), "timeout"),
        (requests.exceptions.ConnectTimeout("slow"), "timeout"),
        (requests.exceptions.ConnectionError("refused"), "docker_error"),
        (requests.exceptions.ChunkedEncodingError("cut"), "docker_error"),
        (requests.exceptions.RequestException("other"), "docker_error"),
    ],
)
def test_library_error_mapped_to_code(exc, code):
    error = translate(exc, ATTEMPT)

    assert error is not None
    assert error.code == code
    assert error.message.startswith(ATTEMPT)


def test_port_in_use_is_conflict():
    exc = api_error(
        500,
        "driver failed programming external connectivity on endpoint web: "
        "Bind for 127.0.0.1:8080 failed: port is already allocated",
    )

    error = translate(exc, ATTEMPT)

    assert error.code == "conflict"
    assert "already in use" in error.message


def test_missing_device_names_path():
    exc = api_error(
        500,
        'error gathering device information while adding custom device "/dev/npu9": '
        "no such file or directory",
    )

    error = translate(exc, ATTEMPT)

    assert error.code == "not_found"
    assert "'/dev/npu9'" in error.message


def test_other_errors_pass_through():
    with pytest.raises(KeyError), translated(ATTEMPT):
        raise KeyError("not a library error")


def test_translated_chains_cause():
    with pytest.raises(AgentError) as info, translated(ATTEMPT):
        raise docker.errors.NotFound("gone")

    assert isinstance(info.value.__cause__, docker.errors.NotFound)
