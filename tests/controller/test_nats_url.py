import pytest
from click.testing import CliRunner

from controller.cli import ExitCode, cli
from controller.connection import check_nats_url
from tests.controller.fleet import free_port


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222",
        "nats://localhost",
        "tls://broker.example:4443",
        "ws://127.0.0.1:8080",
        "wss://broker.example/nats",
        "nats://[::1]:4222",
        "nats://127.0.0.1:4222, nats://127.0.0.1:4223",
        "nats://alice:secret@127.0.0.1:4222",
    ],
)
def test_valid_nats_url_accepted(url):
    assert check_nats_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "garbage",
        "127.0.0.1:4222",
        "http://127.0.0.1:4222",
        "nats://",
        "nats://127.0.0.1:port",
        "nats://127.0.0.1:4222,",
        "nats://127.0.0.1:4222,ws://127.0.0.1:8080",
    ],
)
def test_invalid_nats_url_rejected(url):
    with pytest.raises(ValueError) as caught:
        check_nats_url(url)

    assert repr(url) in str(caught.value)


def test_garbage_nats_option_is_usage_error():
    result = CliRunner().invoke(cli, ["--nats", "garbage", "jobs"])

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--nats': " in result.stderr
    assert "'garbage'" in result.stderr
    assert "NATS_URL" not in result.stderr


def test_garbage_nats_url_variable_rejected():
    result = CliRunner().invoke(cli, ["jobs"], env={"NATS_URL": "garbage"})

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--nats' (env var: 'NATS_URL'): " in result.stderr
    assert "'garbage'" in result.stderr


def test_url_list_reaches_second_server(nats_server):
    url = f"nats://127.0.0.1:{free_port()},{nats_server.url}"

    result = CliRunner().invoke(cli, ["--nats", url, "jobs"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: no controller responds on {url}")
