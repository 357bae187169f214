from click.testing import CliRunner

from controller.cli import ExitCode, cli
from tests.controller.fleet import free_port


def test_nats_down_named_in_error():
    url = f"nats://127.0.0.1:{free_port()}"

    result = CliRunner().invoke(cli, ["--nats", url, "jobs"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: cannot connect to NATS at {url}")
    assert result.stderr.count("\n") == 1


def test_missing_controller_named_in_error(nats_server):
    result = CliRunner().invoke(cli, ["--nats", nats_server.url, "nodes"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr == (
        f"Error: no controller answers on {nats_server.url}; start it with "
        "`controller serve`\n"
    )


def test_nats_url_from_environment(nats_server):
    result = CliRunner().invoke(cli, ["jobs"], env={"NATS_URL": nats_server.url})

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert nats_server.url in result.stderr


def test_invalid_prefix_is_usage_error():
    result = CliRunner().invoke(cli, ["--prefix", "a.*", "jobs"])

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--prefix'" in result.stderr
