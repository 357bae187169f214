from click.testing import CliRunner

from controller.cli import ExitCode, cli

USER_BLOCK = "user: alice\npassword: s3cret"


def test_user_and_password_from_environment(auth_nats_server):
    server = auth_nats_server(USER_BLOCK)
    env = {"NATS_USER": "alice", "NATS_PASSWORD": "s3cret"}

    result = CliRunner().invoke(cli, ["--nats", server.url, "jobs"], env=env)

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: no controller responds on {server.url}")


def test_token_from_environment(auth_nats_server):
    server = auth_nats_server("token: t0ken")

    result = CliRunner().invoke(
        cli, ["--nats", server.url, "jobs"], env={"NATS_TOKEN": "t0ken"}
    )

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: no controller responds on {server.url}")


def test_creds_file_from_environment(tmp_path):
    missing = tmp_path / "absent.creds"

    result = CliRunner().invoke(cli, ["jobs"], env={"NATS_CREDS": str(missing)})

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--creds'" in result.stderr
    assert "absent.creds" in result.stderr


def test_wrong_password_named_in_error(auth_nats_server):
    server = auth_nats_server(USER_BLOCK)
    args = ["--nats", server.url, "--user", "alice", "--password", "wrong", "jobs"]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr == (
        f"Error: NATS at {server.url} rejected the credentials; check "
        "--user/--password, --token or --creds\n"
    )


def test_missing_credentials_named_in_error(auth_nats_server):
    server = auth_nats_server(USER_BLOCK)

    result = CliRunner().invoke(cli, ["--nats", server.url, "nodes"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "rejected the credentials" in result.stderr
    assert "start the broker" not in result.stderr


def test_help_names_credential_variables():
    result = CliRunner().invoke(cli, ["--help"])

    for variable in ("NATS_CREDS", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN"):
        assert variable in result.stdout, variable
