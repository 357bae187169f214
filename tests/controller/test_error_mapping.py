import msgspec
import nats.errors
import nats.js.errors
import pytest

from controller.codec import decode
from controller.connection import nats_errors
from controller.errors import (
    CommandTimeoutError,
    ConflictError,
    ControllerError,
    InvalidRequestError,
    NodeOfflineError,
    NotFoundError,
    RemoteError,
    UnavailableError,
    error_from_info,
)
from schemas.messages import ErrorInfo, JobRequest


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (nats.errors.NoRespondersError(), UnavailableError),
        (nats.errors.TimeoutError(), CommandTimeoutError),
        (TimeoutError(), CommandTimeoutError),
        (nats.errors.ConnectionClosedError(), UnavailableError),
        (nats.errors.NoServersError(), UnavailableError),
        (nats.errors.AuthorizationError(), UnavailableError),
        (nats.js.errors.ServiceUnavailableError(), UnavailableError),
        (nats.js.errors.NotFoundError(), UnavailableError),
        (ConnectionRefusedError(), UnavailableError),
    ],
)
def test_nats_error_becomes_controller_error(raised, expected):
    with pytest.raises(expected) as caught, nats_errors("send request"):
        raise raised

    assert caught.value.__cause__ is raised
    assert str(caught.value).startswith("send request")


def test_caller_names_no_responders_error():
    offline = NodeOfflineError("node 'n1' is offline")
    no_responders = nats_errors("send request", no_responders=offline)

    with pytest.raises(NodeOfflineError) as caught, no_responders:
        raise nats.errors.NoRespondersError()

    assert caught.value is offline


def test_controller_error_passes_through():
    with pytest.raises(ConflictError), nats_errors("store job"):
        raise ConflictError("taken")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b'{"job": 1}', "$.job"),
        (b'{"job": "a", "extra": 1}', "extra"),
        (b"[]", "Expected `object`"),
    ],
)
def test_decode_error_becomes_invalid_request(data, fragment):
    decoder = msgspec.json.Decoder(JobRequest)

    with pytest.raises(InvalidRequestError) as caught:
        decode(decoder, data, "stop request")

    assert str(caught.value).startswith("invalid stop request: ")
    assert fragment in str(caught.value)
    assert isinstance(caught.value.__cause__, msgspec.MsgspecError)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("invalid", InvalidRequestError),
        ("not_found", NotFoundError),
        ("conflict", ConflictError),
        ("offline", NodeOfflineError),
        ("timeout", CommandTimeoutError),
        ("unavailable", UnavailableError),
        ("docker_error", RemoteError),
        ("forbidden", RemoteError),
        ("internal", RemoteError),
    ],
)
def test_reply_error_keeps_code(code, expected):
    error = error_from_info(ErrorInfo(code=code, message="text"))

    assert type(error) is expected
    assert error.code == code
    assert str(error) == "text"
    assert isinstance(error, ControllerError)
